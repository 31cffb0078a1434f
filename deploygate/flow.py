"""Deploy and rollback as sequences of small named stages around a blue-green swap.

deploy:   lock -> converge -> predeploy -> backup -> green -> migrate -> green healthy ->
          post checks on green -> switch -> monitoring window -> post checks via proxy -> finish
rollback: export the window's rows -> blue up -> traffic to blue -> reverse the migrations
          (or restore the backup and re-apply the rows) -> verify -> remove green

Any failing stage after production was touched rolls back by itself. State is never
held only in memory: the proxy's config says which colour serves, Docker labels say
which release each container runs, and the ledger (in production's database) says
whether a deploy is unfinished, so a rerun after a crash (even SIGKILL) converges.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import docker
import requests

from deploygate import images, ledger, monitor, proxy, rehearsal, stack, window
from deploygate.backup import Backup, apply_retention, check_integrity, restore_into, take_backup
from deploygate.config import OPTIONS, Settings
from deploygate.containers import RELEASE_LABEL, get_or_none
from deploygate.database import DatabaseAddress, db_password, production_identity
from deploygate.errors import DeployGateError
from deploygate.lock import DeployLock
from deploygate.log import DeployLog

ROOT = Path(__file__).resolve().parent.parent
OTHER = {"blue": "green", "green": "blue"}
# A passed predeploy of the same image digest is reused this long: production moves on.
PREDEPLOY_REUSE_MIN = 60
COMPAT_CHECKS = ("test_production_release_works_on_the_new_schema", "test_candidate_works_on_the_old_schema")


class StageFailed(DeployGateError):
    """A deploy stage failed; production is rolled back when it was touched."""


class RollbackRefused(DeployGateError):
    """A forced rollback was refused (e.g. past the forward-fix threshold without --force)."""


@dataclass
class Stage:
    name: str
    started: float
    finished: float | None = None
    outcome: str = "running"
    detail: str = ""


@dataclass
class Deploy:
    """Everything one deploy knows; also what its report is made from."""

    client: docker.DockerClient
    settings: Settings
    log: DeployLog
    stamp: str
    candidate_ref: str
    db: DatabaseAddress
    candidate: images.Image | None = None
    live: proxy.Upstream | None = None
    new_color: str = "green"
    plan: list[dict] = field(default_factory=list)
    reversal_targets: dict[str, str | None] = field(default_factory=dict)
    reversible: bool = True
    hold: str | None = None  # the accepted-incompatibility reason: deploy behind a maintenance hold
    exceptions: dict[str, str] = field(default_factory=dict)  # gates overridden or skipped, with the reasons given
    stages: list[Stage] = field(default_factory=list)
    backup: Backup | None = None
    started_ids: dict[str, int] = field(default_factory=dict)
    switched_at: float | None = None
    gates: list[dict] = field(default_factory=list)
    rehearsal: dict = field(default_factory=dict)
    monitoring: dict | None = None
    rollback: dict | None = None
    notes: list[str] = field(default_factory=list)
    outcome: str = "running"

    @property
    def names(self) -> stack.StackNames:
        return stack.StackNames(self.settings.project)

    def stage(self, name: str) -> "_StageTimer":
        return _StageTimer(self, name)


class _StageTimer:
    def __init__(self, deploy: Deploy, name: str) -> None:
        self.deploy, self.name = deploy, name

    def __enter__(self) -> Stage:
        stage = Stage(self.name, time.time())
        self.deploy.stages.append(stage)
        self.deploy.log(f"== {self.name}")
        return stage

    def __exit__(self, exc_type, exc, tb) -> None:
        stage = self.deploy.stages[-1]
        stage.finished = time.time()
        stage.outcome = "failed" if exc else "ok"
        if exc:
            stage.detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.deploy.log(f"   {self.name} FAILED: {stage.detail}")
        else:
            self.deploy.log(f"   {self.name} ok ({stage.finished - stage.started:.1f}s)")


# --- helpers ---------------------------------------------------------------------------------------


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d_%H%M%S")


def _web(deploy: Deploy, color: str):
    return get_or_none(deploy.client, deploy.names.web(color))


def _run_gate(deploy: Deploy, suite: str, args: list[str]) -> subprocess.CompletedProcess:
    """A gate suite in its own process (pytest is never imported by the library)."""
    argv = [sys.executable, "-m", "pytest", suite, "-q", "-p", "no:cacheprovider", *args]
    # The gate sees exactly this deploy's settings (the password travels by env or the secret file, never argv).
    for option in OPTIONS:
        if not option.secret:
            argv += ["--dg-set", f"{option.name}={deploy.settings.values[option.name]}"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith(("FAILED", "ERROR", "│ test_", "override:", "note:", "gate result:")):
            deploy.log(f"   {line}")
    return done


def _predeploy_result(deploy: Deploy) -> dict | None:
    path = deploy.settings.path(deploy.settings.reports_dir) / "predeploy" / f"{deploy.candidate.id.replace('sha256:', '')[:32]}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _probe_production(deploy: Deploy, image: images.Image, command: str, argument: Any = None) -> tuple[dict, int]:
    return rehearsal.probe(
        deploy.client, deploy.settings, image, command, argument,
        network=deploy.names.network,
        environment=stack.app_environment(deploy.settings, deploy.db.password),
        say=deploy.log,
    )  # fmt: skip


# --- the deploy stages -------------------------------------------------------------------------------


def stage_predeploy(deploy: Deploy, *, accept_incompatible: str | None, gate_args: list[str]) -> None:
    """Reuse a passed predeploy result for this image digest, else run the gate now."""
    result = _predeploy_result(deploy)
    fresh = result is not None and (
        dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(result["finished"])
    ) < dt.timedelta(minutes=PREDEPLOY_REUSE_MIN)
    same_production = result is not None and result.get("production") == production_identity(deploy.db)
    if result and result["passed"] and result.get("complete") and fresh and same_production and not gate_args:
        deploy.log(f"   predeploy already passed for {deploy.candidate.id[:19]} on this production at {result['finished']}: not repeated")
    else:
        _run_gate(deploy, "tests_pre", ["--gate", "predeploy", "--candidate", deploy.candidate_ref, *gate_args])
        result = _predeploy_result(deploy)
        if result is None:
            raise StageFailed("the predeploy gate wrote no result")
    deploy.exceptions.update({f"override {k}": v for k, v in result.get("overrides", {}).items()})
    deploy.gates = [
        {"name": c["name"], "threshold": "", "value": c["duration_s"], "verdict": c["outcome"], "message": c["message"].splitlines()[0] if c["message"] else ""}
        for c in result["checks"]
    ]
    failed = [c for c in result["checks"] if c["outcome"] != "passed"]
    deploy.reversible = not any(c["name"] == "test_migrations_are_reversible" for c in failed)
    if failed and accept_incompatible and all(c["name"] in COMPAT_CHECKS for c in failed):
        deploy.hold = accept_incompatible
        deploy.exceptions["accept incompatible"] = accept_incompatible
        deploy.notes.append(f"incompatibility accepted ({accept_incompatible}): deploying behind a maintenance hold")
        deploy.log("   incompatible, accepted: the proxy will answer 503 + Retry-After during migrate-and-switch")
        return
    if failed:
        raise StageFailed(f"predeploy failed: {', '.join(c['name'] for c in failed)}")


def stage_plan(deploy: Deploy) -> None:
    """What the candidate would apply to production now (read-only), and where reversal would go."""
    payload, _ = _probe_production(deploy, deploy.candidate, "plan")
    deploy.plan = [{"label": f"{s['app']}.{s['name']}", "operations": s["operations"], "sql": s["sql"]} for s in payload["plan"]]
    apps = {s["app"] for s in payload["plan"]}
    deploy.reversal_targets = {app: payload["applied_leaves"].get(app) for app in sorted(apps)}
    deploy.reversible = deploy.reversible and all(s["reversible"] for s in payload["plan"])
    deploy.log(f"   plan: {[p['label'] for p in deploy.plan] or 'no migrations'}; reversal targets {deploy.reversal_targets}")


def stage_backup(deploy: Deploy) -> None:
    deploy.backup = take_backup(deploy.client, deploy.settings, deploy.db, say=deploy.log)
    check_integrity(deploy.backup)


def stage_green(deploy: Deploy) -> None:
    stale = _web(deploy, deploy.new_color)
    if stale is not None:
        deploy.log(f"   removing the previous {stale.name} ({stale.labels.get(RELEASE_LABEL)})")
        stale.remove(force=True)
    stack.start_web(deploy.client, deploy.settings, deploy.candidate, deploy.new_color, deploy.db.password)


def stage_migrate(deploy: Deploy) -> None:
    payload, code = _probe_production(deploy, deploy.candidate, "migrate")
    for migration in payload.get("migrations", []):
        exclusive = {t: round(l["held_s"] * 1000) for t, l in migration["locks"].items() if l["mode"] == "AccessExclusiveLock"}
        deploy.log(f"   {migration['app']}.{migration['name']}: {migration['duration_s']:.3f}s, ACCESS EXCLUSIVE ms {exclusive}")
    deploy.rehearsal["production_migrate"] = payload
    if code != 0 or payload.get("error"):
        raise StageFailed(f"migrate failed on production: {payload.get('error')}")


def stage_green_healthy(deploy: Deploy) -> None:
    stack.wait_healthy(_web(deploy, deploy.new_color), deploy.settings.health_timeout)


def stage_post(deploy: Deploy, target: str, since: float | None = None) -> None:
    args = ["--target", target, "--deploy-color", deploy.new_color]
    if since:
        args += ["--since", str(since)]
    done = _run_gate(deploy, "tests_post", args)
    if done.returncode != 0:
        raise StageFailed(f"post-deploy checks ({target}) failed")


def _proxy_container(deploy: Deploy):
    container = get_or_none(deploy.client, deploy.names.proxy)
    if container is None:
        raise StageFailed(f"the proxy {deploy.names.proxy} does not exist")
    return container


def route_to(deploy: Deploy, color: str, *, hold: bool = False) -> None:
    """Point the proxy at ``color`` (or at a maintenance hold) with a graceful reload."""
    container = _web(deploy, color)
    release = container.labels.get(RELEASE_LABEL, "") if container else ""
    upstream = proxy.Upstream(color=color, host=deploy.names.web(color), port=deploy.settings.app_port, release=release)
    proxy.switch(_proxy_container(deploy), stack.proxy_paths(deploy.settings), upstream, hold_s=10 if hold else None)
    deploy.log(f"   proxy -> {'maintenance hold' if hold else color} ({release})")


def stage_switch(deploy: Deploy) -> None:
    route_to(deploy, deploy.new_color)
    deploy.switched_at = time.time()


def stage_monitor(deploy: Deploy) -> None:
    last = [0.0]

    def tick(state: monitor.MonitorState) -> None:
        if time.time() - last[0] >= 5 or state.decision:
            last[0] = time.time()
            deploy.log("   " + state.line())

    state = monitor.watch(
        stack.proxy_paths(deploy.settings).access_log,
        f"{stack.proxy_url(deploy.settings)}{deploy.settings.health_path}",
        deploy.new_color,
        window_s=deploy.settings.monitor_window_s,
        threshold=deploy.settings.monitor_max_errors,
        on_tick=tick,
    )
    deploy.monitoring = {
        "window_s": deploy.settings.monitor_window_s, "threshold": deploy.settings.monitor_max_errors,
        "errors_by_color": dict(state.errors_by_color), "requests_by_color": dict(state.requests_by_color),
        "health_failures": state.health_failures, "decision": state.decision,
    }  # fmt: skip
    if state.decision != "ok":
        raise StageFailed(state.decision)


def _recent_digests(deploy: Deploy) -> set[str]:
    """Image ids of the last ``keep_releases`` successful deploys, this one included, and of every container."""
    deployed = [e.image_digest for e in ledger.entries(deploy.db, "deploy") if e.outcome == "succeeded" and e.image_digest]
    keep = set(deployed[-(deploy.settings.keep_releases - 1) :]) if deploy.settings.keep_releases > 1 else set()
    keep.add(deploy.candidate.id)
    keep |= {c.image.id for c in deploy.client.containers.list(all=True)}
    return keep


def stage_finish(deploy: Deploy) -> None:
    ledger.record(deploy.db, deploy.settings.path(deploy.settings.logs_dir), "deploy", "succeeded",
                  release=deploy.candidate.tag, image_digest=deploy.candidate.id,
                  detail={"stamp": deploy.stamp, "color": deploy.new_color, "switched_at": deploy.switched_at})  # fmt: skip
    old = _web(deploy, deploy.live.color) if deploy.live else None
    if old is not None:
        old.stop(timeout=30)  # kept, stopped: a forced rollback starts it again
        deploy.log(f"   stopped {old.name} (kept for rollback)")
    for path in apply_retention(deploy.settings):
        deploy.log(f"   retention: removed {path.name}")
    for tag in images.prune_releases(deploy.client, deploy.settings, keep=_recent_digests(deploy)):
        deploy.log(f"   retention: removed image {tag}")


# --- rollback ---------------------------------------------------------------------------------------


def _reverse_migrations(deploy: Deploy) -> str:
    """Undo the plan on production: reverse it with the candidate's image, or restore the backup when it cannot be."""
    if not deploy.reversal_targets:
        return "nothing to reverse (the plan was empty)"
    # The truth is in django_migrations, not in what this process believes it did.
    state, _ = _probe_production(deploy, deploy.candidate, "plan")
    applied = [step["label"] for step in deploy.plan if step["label"] in state["applied"]]
    if not applied:
        return "nothing to reverse: none of the plan's migrations is applied"
    if deploy.reversible:
        payload, code = _probe_production(deploy, deploy.candidate, "migrate-to", deploy.reversal_targets)
        if code == 0 and not payload.get("error"):
            return f"reversed to {deploy.reversal_targets}"
        deploy.log(f"   reversal failed ({payload.get('error')}): restoring the backup instead")
    return _restore_backup(deploy)


def _restore_backup(deploy: Deploy) -> str:
    """The pre-deploy backup restored into production, then the window's rows put back."""
    if deploy.backup is None:
        raise StageFailed("the plan cannot be reversed and there is no backup to restore")
    restore_into(get_or_none(deploy.client, deploy.names.db), deploy.backup)
    export = deploy.rollback.get("export_path") if deploy.rollback else None
    reapplied = window.reapply_rows(deploy.db, Path(export)) if export else 0
    return f"restored {deploy.backup.path.name} and re-applied {reapplied} rows written during the window"


def roll_back(deploy: Deploy, reason: str) -> None:
    """Keep the window's rows, put traffic back on the previous colour, undo the plan, verify, remove the new colour."""
    trigger = time.time()
    deploy.rollback = {"reason": reason, "trigger_ts": trigger}
    deploy.log(f"!! rolling back: {reason}")
    old_color = deploy.live.color if deploy.live else OTHER[deploy.new_color]
    with deploy.stage("rollback_export"):
        export = deploy.settings.path(deploy.settings.backup_dir) / f"rollback_data_{deploy.stamp}.csv"
        rows = window.export_rows(deploy.db, deploy.started_ids, export)
        deploy.rollback.update(export_path=str(export), rows_exported=rows)
        deploy.log(f"   exported {rows} rows written during the window to {export}")
    with deploy.stage("rollback_traffic"):
        old = _web(deploy, old_color)
        if old is None:
            raise StageFailed(f"cannot roll back: {deploy.names.web(old_color)} no longer exists")
        if old.status != "running":
            old.start()
        hold = bool(deploy.hold)
        if not hold:
            try:
                stack.wait_healthy(old, deploy.settings.health_timeout)
            except DeployGateError as exc:
                # The old release cannot serve the schema as it is now: hold traffic while it goes back.
                deploy.log(f"   {old.name} is not healthy on the current schema ({exc}): holding traffic")
                hold = True
        current = stack.proxy_paths(deploy.settings).current()
        if hold:
            route_to(deploy, old_color, hold=True)
        else:
            if current is None or current.color != old_color:
                route_to(deploy, old_color)
            deploy.rollback["traffic_on_blue_ts"] = time.time()
    with deploy.stage("rollback_schema"):
        deploy.rollback["method"] = _reverse_migrations(deploy)
        deploy.log(f"   {deploy.rollback['method']}")
        if hold:
            stack.wait_healthy(old, deploy.settings.health_timeout)
            route_to(deploy, old_color)
            deploy.rollback["traffic_on_blue_ts"] = time.time()
    with deploy.stage("rollback_verify"):
        old_image = images.Image(tag=old.labels.get(RELEASE_LABEL, ""), id=old.image.id, built=False)
        state, _ = _probe_production(deploy, old_image, "plan")
        if state["plan"] or state["unknown_applied"]:
            raise StageFailed(f"schema does not match {old_color}: pending {len(state['plan'])}, unknown {state['unknown_applied']}")
        response = requests.get(f"{stack.proxy_url(deploy.settings)}{deploy.settings.health_path}", timeout=10)
        if response.status_code != 200 or response.headers.get("X-Deploygate-Color") != old_color:
            raise StageFailed(f"after rollback the proxy answers {response.status_code} from {response.headers.get('X-Deploygate-Color')}")
        new = _web(deploy, deploy.new_color)
        if new is not None:
            new.remove(force=True)
    deploy.log(f"   traffic back on {old_color} {deploy.rollback['traffic_on_blue_ts'] - trigger:.1f}s after the trigger")
    ledger.record(deploy.db, deploy.settings.path(deploy.settings.logs_dir), "deploy", "rolled_back",
                  release=deploy.candidate.tag if deploy.candidate else None,
                  image_digest=deploy.candidate.id if deploy.candidate else None,
                  detail={"stamp": deploy.stamp, "reason": reason, "method": deploy.rollback["method"]})  # fmt: skip


# --- state that survives the process: the ledger's "started" entry ----------------------------------


def _started_detail(deploy: Deploy) -> dict:
    return {
        "stamp": deploy.stamp,
        "candidate": {"ref": deploy.candidate_ref, "tag": deploy.candidate.tag, "id": deploy.candidate.id},
        "live": deploy.live.__dict__ if deploy.live else None,
        "new_color": deploy.new_color,
        "reversal_targets": deploy.reversal_targets,
        "plan": [{"label": step["label"]} for step in deploy.plan],
        "reversible": deploy.reversible,
        "hold": deploy.hold,
        # Recorded with the deploy they allowed: who may skip a gate must say why, durably.
        "exceptions": deploy.exceptions,
        "started_ids": deploy.started_ids,
        "backup_manifest": str(deploy.backup.manifest_path) if deploy.backup else None,
    }


def _resume(deploy: Deploy, detail: dict) -> None:
    """Fill ``deploy`` from a ledger entry written by another (maybe dead) process."""
    from deploygate.backup import load_backup

    # deploy.stamp stays this run's own: its log, export and report must not overwrite the original's.
    deploy.notes.append(f"resumes the deploy of {detail['stamp']}")
    deploy.candidate_ref = detail["candidate"]["ref"]
    deploy.candidate = images.Image(tag=detail["candidate"]["tag"], id=detail["candidate"]["id"], built=False)
    deploy.live = proxy.Upstream(**detail["live"]) if detail.get("live") else None
    deploy.new_color = detail["new_color"]
    deploy.reversal_targets = detail["reversal_targets"]
    deploy.plan = detail.get("plan", [])
    deploy.reversible = detail["reversible"]
    deploy.hold = detail.get("hold")
    deploy.started_ids = detail["started_ids"]
    if detail.get("backup_manifest") and Path(detail["backup_manifest"]).exists():
        deploy.backup = load_backup(Path(detail["backup_manifest"]))


def unfinished(db: DatabaseAddress) -> ledger.Entry | None:
    """The last deploy that started and never ended (its process died), if any."""
    deploys = ledger.entries(db, "deploy")
    if deploys and deploys[-1].outcome in ("started", "backed_up", "migrating", "switched"):
        return deploys[-1]
    return None


# --- entry points ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    outcome: str  # succeeded | rolled_back | refused | failed | dry_run
    report: Path | None
    detail: str


def _new_deploy(client: docker.DockerClient, settings: Settings, candidate_ref: str, echo: bool) -> Deploy:
    stamp = _stamp()
    db = stack.production_db(client, settings)
    log = DeployLog(settings.path(settings.logs_dir) / f"deployment_{stamp}.log", [db.password, db_password(settings)], echo=echo)
    return Deploy(client=client, settings=settings, log=log, stamp=stamp, candidate_ref=candidate_ref, db=db)


def _write_report(deploy: Deploy, responses: list) -> Path | None:
    try:
        from deploygate.report import write_report
    except ImportError:  # the report needs matplotlib; the deploy itself must not depend on it
        deploy.log("   report skipped: matplotlib is not installed")
        return None
    record = {
        "kind": "deploy",
        "outcome": deploy.outcome,
        "candidate": {"ref": deploy.candidate_ref, "tag": deploy.candidate.tag if deploy.candidate else None,
                      "image_id": deploy.candidate.id if deploy.candidate else None},
        "previous": deploy.live.__dict__ if deploy.live else None,
        "gates": deploy.gates,
        "stages": [s.__dict__ for s in deploy.stages],
        "backup": {"path": str(deploy.backup.path), "size": deploy.backup.size, "sha256": deploy.backup.sha256,
                   "restore_verified": "by the predeploy gate's restore of the same server's dump"} if deploy.backup else None,
        "plan": deploy.plan,
        "rehearsal": deploy.rehearsal,
        "monitoring": deploy.monitoring,
        "rollback": deploy.rollback,
        "notes": deploy.notes,
        # What the traffic probe wrote during the deploy: every one must survive a rollback.
        "traffic_created_ids": [r.created_id for r in responses if r.created_id is not None],
    }  # fmt: skip
    paths = write_report(record, responses, deploy.settings.path(deploy.settings.logs_dir), stamp=deploy.stamp)
    deploy.log(f"report: {paths.markdown}")
    return paths.markdown


def _traffic(deploy: Deploy):
    if deploy.settings.traffic_rate <= 0:
        return None
    from deploygate.traffic import TrafficProbe

    reads = [p.strip() for p in deploy.settings.traffic_read_paths.split(",") if p.strip()]
    return TrafficProbe(
        stack.proxy_url(deploy.settings),
        rate_per_s=float(deploy.settings.traffic_rate),
        read_paths=reads,
        write_path=deploy.settings.traffic_write_path or None,
    ).start()


def deploy(
    client: docker.DockerClient,
    settings: Settings,
    candidate_ref: str,
    *,
    dry_run: bool = False,
    accept_incompatible: str | None = None,
    skip_predeploy: str | None = None,
    gate_args: list[str] | None = None,
    echo: bool = True,
    after_stage: Callable[[str], None] | None = None,
) -> Outcome:
    """Deploy ``candidate_ref`` blue-green; roll back by itself on any failing stage after production was touched.

    ``after_stage`` is called with each stage's name once it has passed (the crash tests kill the process there).
    """
    d = _new_deploy(client, settings, candidate_ref, echo)
    responses: list = []
    with DeployLock(d.db, settings.project):
        d.log(f"deploy of {candidate_ref} to {settings.project}; lock held")
        leftover = unfinished(d.db)
        if leftover is not None:
            d.log(f"an earlier deploy ({leftover.detail.get('stamp')}) never finished: rolling it back first")
            _converge(client, settings, leftover, d.log)
        d.candidate = images.resolve_candidate(client, settings, candidate_ref, say=d.log)
        d.live = stack.proxy_paths(settings).current()
        if d.live is None:
            raise StageFailed("the proxy routes nowhere: run `nox -s up` first")
        d.new_color = OTHER[d.live.color]
        with d.stage("predeploy"):
            if skip_predeploy:
                # An explicit, recorded escape hatch (and how the tests reach failures the gate would stop).
                d.notes.append(f"predeploy skipped: {skip_predeploy}")
                d.exceptions["skip predeploy"] = skip_predeploy
                d.log(f"   predeploy SKIPPED on request: {skip_predeploy}")
            else:
                stage_predeploy(d, accept_incompatible=accept_incompatible, gate_args=gate_args or [])
        with d.stage("plan"):
            stage_plan(d)
        if dry_run:
            before = _content_checksum(d.db)
            d.log("dry run: the deploy would")
            d.log(f"   take a backup into {settings.path(settings.backup_dir)}")
            d.log(f"   start {d.names.web(d.new_color)} from {d.candidate.tag} ({d.candidate.id[:19]}) on {d.names.network}")
            d.log(f"   migrate with lock_timeout={settings.lock_timeout_ms}ms: {[p['label'] for p in d.plan] or 'nothing'}")
            for step in d.plan:
                for statement in step["sql"]:
                    d.log(f"      {statement}")
            d.log(f"   switch {d.names.proxy} from {d.live.color} ({d.live.release}) to {d.new_color}, watch {settings.monitor_window_s}s")
            unchanged = _content_checksum(d.db) == before
            d.log(f"   production content checksum {before[:16]}... {'unchanged' if unchanged else 'CHANGED'}")
            return Outcome("dry_run", None, "production untouched" if unchanged else "production changed during the dry run")
        d.started_ids = window.max_ids(d.db)
        probe = _traffic(d)
        try:
            ledger.record(d.db, settings.path(settings.logs_dir), "deploy", "started",
                          release=d.candidate.tag, image_digest=d.candidate.id, detail=_started_detail(d))  # fmt: skip
            steps: list[tuple[str, Callable[[], None]]] = [
                ("backup", lambda: stage_backup(d)),
                ("green", lambda: stage_green(d)),
                ("hold", lambda: route_to(d, d.live.color, hold=True) if d.hold else None),
                ("migrate", lambda: stage_migrate(d)),
                ("green_healthy", lambda: stage_green_healthy(d)),
                ("post_green", lambda: stage_post(d, "green")),
                ("switch", lambda: stage_switch(d)),
                ("monitor", lambda: stage_monitor(d)),
                ("post_proxy", lambda: stage_post(d, "proxy", since=d.switched_at)),
                ("finish", lambda: stage_finish(d)),
            ]
            try:
                for name, step in steps:
                    with d.stage(name):
                        step()
                    if name == "backup":  # the rollback needs the backup's manifest path
                        ledger.record(d.db, None, "deploy", "backed_up", release=d.candidate.tag,
                                      image_digest=d.candidate.id, detail=_started_detail(d))  # fmt: skip
                    if after_stage:
                        after_stage(name)
                d.outcome = "succeeded"
                d.log(f"DEPLOYMENT SUCCESSFUL: {d.candidate.tag} serves on {d.new_color}")
            except DeployGateError as exc:
                try:
                    roll_back(d, str(exc))
                except BaseException:
                    d.outcome = "failed"  # the ledger still says "started": rerunning converges
                    raise
                d.outcome = "rolled_back"
        finally:
            if probe is not None:
                responses = probe.stop()
                failed = sum(1 for r in responses if not r.ok)
                d.log(f"traffic probe: {len(responses)} requests, {failed} failed")
            report = _write_report(d, responses)
    return Outcome(d.outcome, report, d.rollback["reason"] if d.rollback else "")


def _content_checksum(db: DatabaseAddress) -> str:
    import hashlib

    from deploygate.fingerprint import fingerprint

    prints = fingerprint(db)
    text = json.dumps(sorted((t.name, t.rows, t.row_hash) for t in prints.values()))
    return hashlib.sha256(text.encode()).hexdigest()


def _converge(client: docker.DockerClient, settings: Settings, entry: ledger.Entry, log: DeployLog) -> Deploy:
    d = Deploy(client=client, settings=settings, log=log, stamp=_stamp(), candidate_ref="",
               db=stack.production_db(client, settings))  # fmt: skip
    _resume(d, entry.detail)
    roll_back(d, "converging after a deploy that never finished")
    d.outcome = "rolled_back"
    return d


def rollback(client: docker.DockerClient, settings: Settings, *, force: bool = False, echo: bool = True) -> Outcome:
    """Forced rollback: of an unfinished deploy (crash), or of the last successful one within the forward-fix threshold."""
    d = _new_deploy(client, settings, "", echo)
    with DeployLock(d.db, settings.project):
        leftover = unfinished(d.db)
        if leftover is not None:
            d.log(f"rolling back the unfinished deploy {leftover.detail.get('stamp')}")
            done = _converge(client, settings, leftover, d.log)
            return Outcome("rolled_back", _write_report(done, []), "unfinished deploy rolled back")
        deploys = [e for e in ledger.entries(d.db, "deploy") if e.outcome in ("started", "backed_up", "succeeded", "rolled_back")]
        last_success = next((e for e in reversed(deploys) if e.outcome == "succeeded"), None)
        if last_success is None or deploys[-1].outcome == "rolled_back":
            raise RollbackRefused("nothing to roll back: the last deploy was already rolled back (or there was none)")
        started = next(e for e in reversed(deploys) if e.outcome == "backed_up" and e.detail["stamp"] == last_success.detail["stamp"])
        minutes = (time.time() - (last_success.detail.get("switched_at") or last_success.at.timestamp())) / 60
        if minutes > settings.forward_fix_after_min and not force:
            raise RollbackRefused(
                f"the switch was {minutes:.0f} min ago, past the forward-fix threshold of {settings.forward_fix_after_min} min: "
                "rows written since depend on the new schema; fix forward, or pass --force to roll back anyway"
            )
        _resume(d, started.detail)
        probe = _traffic(d)
        try:
            roll_back(d, f"forced rollback {minutes:.1f} min after the switch")
        finally:
            responses = probe.stop() if probe else []
        d.outcome = "rolled_back"
        return Outcome("rolled_back", _write_report(d, responses), d.rollback["reason"])
