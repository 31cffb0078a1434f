"""The deploy, as one table of named steps (``DEPLOY``), and the functions behind them.

Read-only steps first (the candidate, an unfinished deploy to converge, the predeploy gate,
the plan, the backup); from ``green`` on, production is touched and any failure rolls back
(``undo.ROLLBACK``). A dry run runs the read-only steps and ``dry_run``, nothing else.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from deploygate import monitor, scope, window
from deploygate.deploy import gates, undo
from deploygate.deploy.runner import StageFailed, Step
from deploygate.deploy.services import Switch
from deploygate.deploy.state import DeployRun, unfinished
from deploygate.gate_result import load_or_none, path_for
from deploygate.health import HealthSample
from deploygate.log import Say
from deploygate.platform import OTHER_COLOR
from deploygate.production import app_environment
from deploygate.record import BackupRecord, ImageRecord, LockRecord, MigrationRecord, MonitoringRecord, PlanRecord, RouteRecord

# A passed predeploy of the same image digest is reused this long: production moves on.
PREDEPLOY_REUSE_MIN = 60


def validate_request(run: DeployRun) -> None:
    """Every argument is checked before anything happens: checks to skip must exist."""
    if run.request.skip_checks:
        known = set().union(*(run.services.gates.check_names(gate) for gate in gates.SUITES))
        unknown = sorted(set(run.request.skip_checks) - known)
        if unknown:
            raise StageFailed(f"--skip-check: no gate or post check named {', '.join(unknown)}")
        for name, reason in run.request.skip_checks.items():
            run.record.exceptions[f"skip check {name}"] = reason


def resolve_candidate(run: DeployRun) -> None:
    """The candidate exists (a demo release is built): checked before anything else happens."""
    run.candidate = run.platform.resolve_image(run.request.candidate_ref, run.log)
    run.record.candidate = ImageRecord(ref=run.request.candidate_ref, tag=run.candidate.tag, image_id=run.candidate.id)
    run.previous = run.proxy.current()
    if run.previous is None:
        raise StageFailed("the proxy routes nowhere: run `nox -s up` first")
    if run.previous.hold:
        raise StageFailed(f"the proxy holds traffic in front of {run.previous.color}: an unfinished deploy; run `nox -s rollback`")
    run.new_color = OTHER_COLOR[run.previous.color]
    run.record.previous = RouteRecord(run.previous.color, run.previous.release)
    run.record.new_color = run.new_color


def rollback_unfinished_first(run: DeployRun) -> None:
    """An earlier deploy that died after touching production is rolled back first (said before it starts)."""
    leftover = unfinished(run.db, run.services.ledger)
    if leftover is None:
        return
    stamp = leftover.detail.get("stamp")
    if run.request.dry_run:
        raise StageFailed(f"the deploy of {stamp} never finished; a deploy would roll it back first (`nox -s rollback` does)")
    run.log(f"   the deploy of {stamp} never finished: rolling it back before this one starts")
    undo.rollback_unfinished(run.platform, run.settings, leftover, run.log, run.services)
    # Production is back on the other color now: read it again.
    resolve_candidate(run)


def run_predeploy(run: DeployRun) -> None:
    """Reuse a passed predeploy of this image digest on this production, else run the gate now."""
    if run.request.skip_predeploy:
        # An explicit, recorded escape hatch (and how the tests reach failures the gate would stop).
        run.record.notes.append(f"predeploy skipped: {run.request.skip_predeploy}")
        run.record.exceptions["skip predeploy"] = run.request.skip_predeploy
        run.log(f"   predeploy SKIPPED on request: {run.request.skip_predeploy}")
        return
    path = path_for(run.settings.path(run.settings.reports_dir), "predeploy", run.candidate.id)
    result = load_or_none(path)
    reusable = (
        result is not None
        and result.passed
        and result.complete
        and not run.request.gate_args
        and not run.request.skip_checks
        and dt.datetime.now(dt.UTC) - result.finished_at() < dt.timedelta(minutes=PREDEPLOY_REUSE_MIN)
        and result.production == run.services.data.identity(run.db)
    )
    if reusable:
        run.log(f"   predeploy already passed for {run.candidate.id[:19]} on this production at {result.finished}: not repeated")
        gates.log_checks(result, run.log)
    else:
        skips = gates.skip_args("predeploy", run.request.skip_checks, run.services.gates.check_names)
        args = ["--candidate", run.request.candidate_ref, *skips, *run.request.gate_args]
        result = run.services.gates.run_gate(run.settings, "predeploy", args, result_path=path, log=run.log)
    run.record.exceptions.update({f"override {k}": v for k, v in result.overrides.items()})
    run.record.gates += gates.rows(result)
    run.record.notes += gates.notes(result)
    failed = result.failed()
    run.reversible = not any(c.category == "reversal" for c in failed)
    if failed and run.request.accept_incompatible and all(c.category == "compat" for c in failed):
        run.hold = run.request.accept_incompatible
        run.record.exceptions["accept incompatible"] = run.hold
        run.record.notes.append(f"incompatibility accepted ({run.hold}): deploying behind a maintenance hold")
        run.log("   incompatible, accepted: the proxy will answer 503 + Retry-After during migrate-and-switch")
        return
    if failed:
        raise StageFailed(f"predeploy failed: {', '.join(c.name for c in failed)}")


def plan_migrations(run: DeployRun) -> None:
    """What the candidate would apply to production now (read-only), and where reversal would go."""
    plan = run.prober(run.candidate).plan()
    run.plan, run.plan_labels = plan, plan.labels
    run.reversal_targets = plan.reversal_targets()
    run.reversible = run.reversible and plan.reversible
    run.record.plan = [PlanRecord(label=s.label, operations=s.operations, sql=s.sql) for s in plan.steps]
    run.log(f"   plan: {plan.labels or 'no migrations'}; reversal targets {run.reversal_targets}")


def describe_dry_run(run: DeployRun) -> None:
    """Print what the deploy would do, and prove production unchanged while we looked."""
    before = run.services.data.content_checksum(run.db)
    s, where = run.settings, run.platform
    run.log("dry run: the deploy would")
    run.log(f"   take a backup into {s.path(s.backup_dir)}")
    run.log(f"   start {where.color_name(run.new_color)} from {run.candidate.tag} ({run.candidate.id[:19]}) on {where.network_name}")
    run.log(f"   migrate with lock_timeout={s.lock_timeout_ms}ms: {run.plan_labels or 'nothing'}")
    for step in run.plan.steps if run.plan else []:
        for statement in step.sql:
            run.log(f"      {statement}")
    run.log(
        f"   switch {where.proxy_name} from {run.previous.color} ({run.previous.release}) to {run.new_color}, watch {s.monitor_window_s}s"
    )
    unchanged = run.services.data.content_checksum(run.db) == before
    run.log(f"   production content checksum {before[:16]}... {'unchanged' if unchanged else 'CHANGED'}")
    if not unchanged:
        raise StageFailed("production changed during the dry run")


def take_backup(run: DeployRun) -> None:
    """A fresh dump of production, checked against its manifest (read-only: a failure here changes nothing)."""
    run.backup = run.services.backups.take_backup(run.platform, run.settings, run.db, say=run.log)
    run.services.backups.check_integrity(run.backup)
    run.record.backup = BackupRecord(
        path=str(run.backup.path),
        size=run.backup.size,
        sha256=run.backup.sha256,
        restore_verified="by the predeploy gate's restore of the same server's dump",
    )


def open_window(run: DeployRun) -> None:
    """Note where each table's ids stand (rows above are the window's), then start steady traffic."""
    run.started_ids = run.services.data.max_ids(run.db)
    if run.settings.traffic_rate > 0 and run.traffic is None:
        run.traffic = run.services.traffic(run.settings, run.proxy.url).start()


def start_new_color(run: DeployRun) -> None:
    """The candidate on the new color, not yet routed to (a stale one from an earlier deploy goes first).

    Its processes (workers) start with it when old and new code run on either schema;
    behind a hold they wait for the migration (``start_new_processes``).
    """
    stale = run.platform.color(run.new_color)
    if stale is not None:
        run.log(f"   removing the previous {run.new_color} ({stale.release})")
        run.platform.remove_color(run.new_color)
    processes = {} if run.hold else run.settings.app_processes
    run.platform.start_color(run.new_color, run.candidate, app_environment(run.platform, run.settings), processes)


def holding(run: DeployRun) -> bool:
    return bool(run.hold)


def holding_with_processes(run: DeployRun) -> bool:
    return bool(run.hold and run.settings.app_processes)


def hold_traffic(run: DeployRun) -> None:
    """The accepted incompatibility: the proxy answers 503 + Retry-After while the schema changes.

    The serving release's processes stop too: incompatible means they cannot work on the new schema.
    """
    run.proxy.hold(run.old_color)
    run.platform.stop_processes(run.old_color)
    run.log("   proxy -> maintenance hold; the serving release's processes stopped")


def start_new_processes(run: DeployRun) -> None:
    """Behind a hold, the candidate's processes start once the schema is theirs."""
    env = app_environment(run.platform, run.settings)
    run.platform.start_processes(run.new_color, run.candidate, env, run.settings.app_processes)


def migrate_production(run: DeployRun) -> None:
    """The candidate's migrations on production, by the candidate's image, with the rehearsed lock_timeout.

    The rows migrate itself inserts (post_migrate's content types and permissions, a data
    migration's rows) are found and recorded: bookkeeping, not the window's writes.
    """
    before = run.services.data.max_ids(run.db)
    done = run.prober(run.candidate).migrate()
    for migration in done.migrations:
        run.log(f"   {migration.label}: {migration.duration_s:.3f}s, {migration.strongest_locks()}")
    run.record.migrations = [
        MigrationRecord(
            label=m.label,
            duration_s=m.duration_s,
            error=m.error,
            locks=[LockRecord(table=t, mode=lock.mode, held_s=lock.held_s) for t, lock in sorted(m.locks.items())],
        )
        for m in done.migrations
    ]
    if not done.ok:
        raise StageFailed(f"migrate failed on production: {done.error}")
    run.migrate_writes = window.MigrateWrites.taken(before, done.inserted_xids)
    own = window.describe_counts(run.services.data.migrate_rows(run.db, run.migrate_writes))
    run.log(f"   migrate itself wrote {own}: bookkeeping, not the window's writes")
    run.record.notes.append(f"migrate itself wrote {own}: bookkeeping, left out of the rows written during the window")


def wait_new_color_healthy(run: DeployRun) -> None:
    run.platform.wait_healthy(run.new_color, run.settings.health_timeout)


def _post_checks(run: DeployRun, target: str, since: float | None = None) -> None:
    gate = f"post_{target}"
    args = ["--target", target, "--deploy-color", run.new_color] + (["--since", str(since)] if since else [])
    args += scope.post_check_args(run.plan, run.settings.compat_scope)
    args += gates.skip_args(gate, run.request.skip_checks, run.services.gates.check_names)
    path = run.settings.path(run.settings.reports_dir) / gate / f"{run.stamp}.json"
    result = run.services.gates.run_gate(run.settings, gate, args, result_path=path, log=run.log)
    run.record.gates += gates.rows(result)
    run.record.notes += gates.notes(result)
    if not result.passed:
        raise StageFailed(f"post-deploy checks ({target}) failed: {', '.join(c.name for c in result.failed()) or 'see the log'}")


def post_checks_on_new_color(run: DeployRun) -> None:
    _post_checks(run, "green")


def switch_traffic(run: DeployRun) -> None:
    """Every new request to the new color; in-flight ones finish where they started."""
    run.proxy.route(run.new_color)
    run.switched_at = time.time()
    run.log(f"   proxy -> {run.new_color}")


@dataclass(frozen=True)
class MonitorWindow:
    """All the monitoring window may use (as nox's Session is all a session may use of its runner): the proxy's
    access records and health URL, whether each proxy runs, the color watched, the limits, the log."""

    switch: Switch
    health: Callable[[str], HealthSample]
    proxy_running: Callable[[str], bool]
    color: str
    window_s: int
    threshold: int
    health_path: str
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> MonitorWindow:
        s = run.settings
        return cls(
            switch=run.proxy,
            health=run.services.health,
            proxy_running=run.platform.proxy_running,
            color=run.new_color,
            window_s=s.monitor_window_s,
            threshold=s.monitor_max_errors,
            health_path=s.health_path,
            say=run.log,
        )


@dataclass(frozen=True)
class MonitorVerdict:
    """What the window saw, for the record, and the notes that go with it."""

    monitoring: MonitoringRecord
    notes: list[str]

    @property
    def ok(self) -> bool:
        return self.monitoring.decision == "ok"


def watch_window(window: MonitorWindow) -> MonitorVerdict:
    """Errors per color from the proxy's log (what users saw), and health, for the configured window."""
    last = [0.0]

    def tick(state: monitor.MonitorState) -> None:
        if time.time() - last[0] >= 5 or state.decision:
            last[0] = time.time()
            window.say("   " + state.line())

    state = monitor.watch(
        lambda since: window.switch.records(since=since),
        lambda: window.health(f"{window.switch.url}{window.health_path}"),
        window.color,
        window_s=window.window_s,
        threshold=window.threshold,
        on_tick=tick,
    )
    notes = []
    # A node lost in the window takes its proxy with it: the verdict is the other proxies'. Said, not hidden.
    down = [name for name in window.switch.instances if not window.proxy_running(name)]
    if down:
        notes.append(
            f"monitoring: the proxy on {', '.join(down)} did not run at the end of the window; {state.decision} through the others"
        )
        window.say(f"   {notes[-1]}")
    monitoring = MonitoringRecord(
        window_s=window.window_s,
        threshold=window.threshold,
        requests_by_color=dict(state.requests_by_color),
        errors_by_color=dict(state.errors_by_color),
        health_failures=state.health_failures,
        decision=state.decision or "",
    )
    return MonitorVerdict(monitoring, notes)


def monitor_window(run: DeployRun) -> None:
    """The monitoring window (``watch_window``) into the record; a verdict other than ok fails the step."""
    verdict = watch_window(MonitorWindow.of(run))
    run.record.notes += verdict.notes
    run.record.monitoring = verdict.monitoring
    if not verdict.ok:
        raise StageFailed(verdict.monitoring.decision)


def post_checks_through_proxy(run: DeployRun) -> None:
    _post_checks(run, "proxy", since=run.switched_at)


def _recent_digests(run: DeployRun) -> set[str]:
    """Image ids of the last ``keep_releases`` successful deploys (this one included) and of what runs."""
    deployed = [e.image_digest for e in run.services.ledger.entries(run.db, "deploy") if e.outcome == "succeeded" and e.image_digest]
    keep = set(deployed[-(run.settings.keep_releases - 1) :]) if run.settings.keep_releases > 1 else set()
    keep.add(run.candidate.id)
    for color in (run.new_color, run.old_color):
        state = run.platform.color(color)
        if state is not None:
            keep.add(state.image_id)
    return keep


def finish(run: DeployRun) -> None:
    """The ledger says succeeded; the old color is stopped (kept for a rollback); retention runs."""
    run.record_in_ledger("succeeded")
    if run.platform.color(run.old_color) is not None:
        run.platform.stop_color(run.old_color)
        run.log(f"   stopped {run.old_color} (kept for rollback)")
    for path in run.services.backups.apply_retention(run.settings):
        run.log(f"   retention: removed {path.name}")
    for tag in run.platform.prune_releases(keep=_recent_digests(run)):
        run.log(f"   retention: removed image {tag}")


DEPLOY: tuple[Step, ...] = (
    Step("request", validate_request, dry_run=True),
    Step("candidate", resolve_candidate, dry_run=True),
    Step("converge", rollback_unfinished_first, dry_run=True),
    Step("predeploy", run_predeploy, dry_run=True),
    Step("plan", plan_migrations, dry_run=True),
    Step("dry_run", describe_dry_run, deploy=False, dry_run=True),
    Step("backup", take_backup),
    Step("window", open_window),
    Step("green", start_new_color, touches_production=True),
    Step("hold", hold_traffic, touches_production=True, when=holding),
    Step("migrate", migrate_production, touches_production=True, checkpoint="migrated"),
    Step("processes", start_new_processes, when=holding_with_processes),
    Step("green_healthy", wait_new_color_healthy),
    Step("post_green", post_checks_on_new_color),
    Step("switch", switch_traffic, checkpoint="switched"),
    Step("monitor", monitor_window),
    Step("post_proxy", post_checks_through_proxy),
    Step("finish", finish),
)
