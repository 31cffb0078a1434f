"""The deploy, as one table of named steps (``DEPLOY``), and the functions behind them.

Read-only steps first (the candidate, an unfinished deploy to converge, the predeploy gate,
the plan, the backup); from ``green`` on, production is touched and any failure rolls back
(``undo.ROLLBACK``). A dry run runs the read-only steps and ``dry_run``, nothing else.

A step here is an adapter: it builds the narrow context its core may use (``predeploy``,
``schema``, ``safekeeping``, ``colors``, ``monitoring``), calls it, and writes the typed
result back into the run, so the cores are tested without a run and only adapters change it.
"""

from __future__ import annotations

from deploygate import cache, replicas, scope
from deploygate.deploy import colors, gates, predeploy, safekeeping, schema, undo
from deploygate.deploy.monitoring import MonitorWindow, watch_window
from deploygate.deploy.runner import StageFailed, Step
from deploygate.deploy.state import DeployRun, unfinished
from deploygate.errors import DeployGateError, one_line
from deploygate.platform import OTHER_COLOR
from deploygate.production import app_environment
from deploygate.record import ImageRecord, RouteRecord


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
    """The predeploy gate (``predeploy.judge_predeploy``) into the record; a refusal fails the step."""
    verdict = predeploy.judge_predeploy(predeploy.PredeployGate.of(run))
    run.record.exceptions.update(verdict.exceptions)
    run.record.gates += verdict.rows
    run.record.notes += verdict.notes
    if verdict.reversible is not None:
        run.reversible = verdict.reversible
    if verdict.hold:
        run.hold = verdict.hold
    if verdict.refusal:
        raise StageFailed(verdict.refusal)


def plan_migrations(run: DeployRun) -> None:
    """What the candidate would apply (``schema.plan_schema``), and where reversal would go, into the run."""
    planned = schema.plan_schema(schema.SchemaPlanning.of(run))
    run.plan, run.plan_labels = planned.plan, planned.plan.labels
    run.reversal_targets = planned.reversal_targets
    run.reversible = planned.reversible
    run.record.plan = list(planned.records)
    if cache.configured(run.settings):  # the settings say it: no need to ask the engine where the cache is
        run.cache_namespaces = cache.Namespaces.of(planned.plan)
        run.record.notes.append(cache_note(run.cache_namespaces))


def cache_note(namespaces: cache.Namespaces) -> str:
    """The report's line on the app's cache: the namespace each schema caches under."""
    if namespaces.shared:
        return f"cache: both releases cache under {namespaces.before} (the plan leaves the migration state as it is)"
    return f"cache: the serving release caches under {namespaces.before}, the candidate under {namespaces.after} (its schema's)"


def describe_dry_run(run: DeployRun) -> None:
    """Print what the deploy would do, and prove production unchanged while we looked."""
    before = run.services.data.content_checksum(run.db)
    s, where = run.settings, run.platform
    run.log("dry run: the deploy would")
    run.log(f"   take a backup into {s.path(s.backup_dir)}")
    run.log(f"   start {where.color_name(run.new_color)} from {run.candidate.tag} ({run.candidate.id[:19]}) on {where.network_name}")
    if run.cache_namespaces:
        run.log(
            f"   give {run.new_color} the cache namespace {run.cache_namespaces.after} ({run.previous.color} has {run.cache_namespaces.before})"
        )
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
    """A checked dump of production (``safekeeping.take_backup``), kept for a rollback's restore."""
    taken = safekeeping.take_backup(safekeeping.BackupTaking.of(run))
    run.backup, run.record.backup = taken.backup, taken.record


def open_window(run: DeployRun) -> None:
    """Note where each table's ids stand (rows above are the window's), then start steady traffic and, with
    replicas, the sampling of their lag (the report's timeline, the monitoring window)."""
    run.started_ids = run.services.data.max_ids(run.db)
    if run.settings.traffic_rate > 0 and run.traffic is None:
        run.traffic = run.services.traffic(run.settings, run.proxy.url).start()
    if run.replica_lag is None:
        try:
            expected = expected_replicas(run)
        except DeployGateError as exc:  # only the timeline loses it: the replicas step is the gate, and asks again
            run.log(f"   replica lag not sampled: {one_line(exc)}")
            return
        if expected:
            run.replica_lag = replicas.LagSampler(run.db, expected).start()


def expected_replicas(run: DeployRun) -> list[replicas.Standby]:
    """The replicas deploygate runs (``database.standbys``) and the team's own (``[[database.replicas]]``)."""
    return run.platform.standbys() + replicas.configured(run.db, run.settings)


def start_new_color(run: DeployRun) -> None:
    """The candidate on the new color, not yet routed to (``colors.start_color``); nothing of the run changes.

    Behind a hold its processes wait for the migration (``start_new_processes``).
    """
    colors.start_color(colors.NewColor.of(run))


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
    env = app_environment(run.platform, run.settings, run.candidate_cache_namespace)
    run.platform.start_processes(run.new_color, run.candidate, env, run.settings.app_processes)


def migrate_production(run: DeployRun) -> None:
    """The candidate's migrations on production (``schema.migrate_schema``) into the record and the run.

    The rows migrate itself inserts are kept in the run before they are counted: should counting
    them fail, the rollback that follows must still leave them out of the window's rows.
    """
    migration = schema.Migration.of(run)
    migrated = schema.migrate_schema(migration)
    run.record.migrations = list(migrated.migrations)
    if migrated.failure:
        raise StageFailed(migrated.failure)
    run.migrate_writes = migrated.writes
    run.record.notes.append(schema.migrate_bookkeeping(migration, migrated.writes))


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


# The predeploy's two compatibility directions: what a replica read meets while the replica lags.
_BOTH_DIRECTIONS = ("test_production_release_works_on_the_new_schema", "test_candidate_works_on_the_old_schema")


def replica_reads_note(run: DeployRun) -> str:
    """Whether reads from a lagging replica were covered: a release reading there meets the other schema."""
    verdicts = {row.name: row.verdict for row in run.record.gates if row.name in _BOTH_DIRECTIONS}
    if all(verdicts.get(name) == "passed" for name in _BOTH_DIRECTIONS):
        return "reads from a replica while it lags meet the other schema: covered, both releases were proven on both schemas"
    if run.hold:
        return "reads from a replica while it lags may fail: the releases are incompatible (deployed behind a hold)"
    return "reads from a replica while it lags: not proven by this deploy (the predeploy's compatibility checks did not run here)"


def wait_replicas_replayed(run: DeployRun) -> None:
    """Every expected replica has replayed the migration before anyone is switched (``replicas.wait_replayed``):
    a release reading from one behind would meet the schema before. One missing or behind fails the step."""
    expected = expected_replicas(run)
    if not expected:
        return
    limit = run.settings.replica_lag_max_s
    run.log(f"   waiting for {len(expected)} replica(s) to replay the primary's position (at most {limit}s)")
    report = replicas.wait_replayed(run.db, expected, timeout_s=limit, say=run.log)
    run.record.notes.append(f"replicas at {report.target_lsn}: " + "; ".join(r.describe() for r in report.replays))
    run.record.notes.append(replica_reads_note(run))
    if not report.ok:
        raise StageFailed(f"replicas behind the migration after {limit}s: " + "; ".join(r.describe() for r in report.lagging))


def switch_traffic(run: DeployRun) -> None:
    """Every new request to the new color (``colors.switch_to``); the run keeps when."""
    run.switched_at = colors.switch_to(colors.TrafficSwitch.of(run)).at


def monitor_window(run: DeployRun) -> None:
    """The monitoring window (``watch_window``) into the record; a verdict other than ok fails the step."""
    verdict = watch_window(MonitorWindow.of(run))
    run.record.notes += verdict.notes
    run.record.monitoring = verdict.monitoring
    if not verdict.ok:
        raise StageFailed(verdict.monitoring.decision)


def post_checks_through_proxy(run: DeployRun) -> None:
    _post_checks(run, "proxy", since=run.switched_at)


def finish(run: DeployRun) -> None:
    """The ledger says succeeded, the old color stops (kept for a rollback), retention runs (``colors.finish_deploy``)."""
    colors.finish_deploy(colors.Finish.of(run))


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
    Step("replicas", wait_replicas_replayed),
    Step("switch", switch_traffic, checkpoint="switched"),
    Step("monitor", monitor_window),
    Step("post_proxy", post_checks_through_proxy),
    Step("finish", finish),
)
