"""The rollback, as one table of named steps (``ROLLBACK``), and the functions behind them.

Traffic goes back on the previous color first (behind a hold while the old release cannot
serve the schema as it is): a deploy stopped by a CI runner or ``docker stop`` has seconds
before SIGKILL, and users must be on the previous release by then. Then: keep what users
wrote during the window (export it), undo the plan (reverse it with the candidate's image,
or restore the backup and put the window's rows back), verify the previous release serves
on its own schema, remove the new color. After each step the ledger says how far the
rollback got (``rolling_back``), so whatever kills it, the next command finishes it.

As in ``steps``, the main steps are adapters over cores that never see the run
(``colors.traffic_back``, ``safekeeping.export_window``, ``schema.undo_schema``, ``schema.check_schema``).
"""

from __future__ import annotations

import time

from deploygate import cache, ledger
from deploygate.config import Settings
from deploygate.deploy import colors, safekeeping, schema
from deploygate.deploy.runner import StageFailed, Step, run_steps
from deploygate.deploy.services import Services
from deploygate.deploy.state import ROLLING_BACK, Checkpoint, DeployRun, Request, undo_after_traffic
from deploygate.errors import StackError
from deploygate.log import DeployLog
from deploygate.platform import Platform
from deploygate.record import RollbackRecord
from deploygate.waiting import wait_until


def production_answers(run: DeployRun) -> None:
    """Production's database answers (it may be restarting: that may be why we roll back).

    The database's address is read again: a restarted engine may have given it another.
    """
    wait_until(
        lambda: run.platform.database(),
        timeout=run.settings.health_timeout,
        interval=1.0,
        what="production's database to run again",
        transient=(OSError, StackError),
    )
    run.db = run.platform.database()
    run.services.data.wait_connectable(run.db, timeout=run.settings.health_timeout)


def export_window_rows(run: DeployRun) -> None:
    """The window's rows to a CSV before anything is undone (``safekeeping.export_window``).

    Where the export is goes into the record before migrate's own rows are counted: a restore
    later puts the export back, even when counting them failed.
    """
    export = safekeeping.WindowExport.of(run)
    exported = safekeeping.export_window(export)
    run.record.rollback.export_path, run.record.rollback.rows_exported = str(exported.path), exported.rows
    note = safekeeping.left_out_bookkeeping(export)
    if note:
        run.record.notes.append(note)


def traffic_to_previous(run: DeployRun) -> None:
    """The previous color serves again, or a hold answers (``colors.traffic_back``); the run keeps which."""
    returned = colors.traffic_back(colors.TrafficBack.of(run))
    if returned.failure:
        raise StageFailed(returned.failure)
    run.holding = returned.holding
    if returned.on_previous_at is not None:
        run.record.rollback.traffic_on_previous_ts = returned.on_previous_at


def undo_plan(run: DeployRun) -> None:
    """Undo the plan on production (``schema.undo_schema``); then, behind a hold, the previous color serves again.

    The method is recorded before the previous color is resumed: a report of a rollback that
    fails there still says what was done to the schema.
    """
    undone = schema.undo_schema(schema.SchemaUndo.of(run))
    if undone.failure:
        raise StageFailed(undone.failure)
    run.record.rollback.method = undone.method
    if run.holding:
        serving = colors.serve_previous_again(colors.TrafficBack.of(run))
        run.record.rollback.traffic_on_previous_ts = serving.at


def verify_previous(run: DeployRun) -> None:
    """The schema is exactly the previous release's (``schema.check_schema``), and the proxy's answers come from its color.

    The verdict is recorded before the proxy is asked: what verify found stays in the report
    even when the proxy's answer fails the step.
    """
    verdict = schema.check_schema(schema.SchemaCheck.of(run))
    run.record.notes += verdict.notes
    run.record.exceptions.update(verdict.exceptions)
    if verdict.failure:
        raise StageFailed(verdict.failure)
    run.proxy.verify(run.old_color)


def remove_new_color(run: DeployRun) -> None:
    """The candidate's color goes, and with it what it cached (``drop_candidate_cache``)."""
    run.platform.remove_color(run.new_color)
    drop_candidate_cache(run)


def drop_candidate_cache(run: DeployRun) -> None:
    """The candidate's cache namespace emptied: nothing it cached on its schema is read again.

    After a switch, the previous release's own entries go too: they missed what the candidate
    wrote while it served, and would be served stale (a cold cache is slower, never wrong).
    A cache that does not answer is noted, not a failed rollback: nobody reads the candidate's
    namespace, and the previous release's entries expire by themselves.
    """
    namespaces = run.cache_namespaces
    urls = run.platform.cache_urls() if namespaces else None
    if namespaces is None or urls is None or namespaces.shared:
        return
    dropped = [namespaces.after] + ([namespaces.before] if run.switched_at is not None else [])
    try:
        counts = {name: cache.drop_namespace(urls.host, name) for name in dropped}
    except cache.CacheError as exc:
        run.record.notes.append(f"cache: {', '.join(dropped)} not dropped: {exc}")
        run.log(f"   cache: {exc}")
        return
    line = "cache: dropped " + ", ".join(f"{counts[name]} keys of {name}" for name in dropped)
    run.record.notes.append(line)
    run.log(f"   {line}")


def record_rolled_back(run: DeployRun) -> None:
    rollback = run.record.rollback
    run.record_in_ledger("rolled_back", reason=rollback.reason, method=rollback.method)
    if rollback.traffic_on_previous_ts is not None:
        run.log(f"   traffic back on {run.old_color} {rollback.traffic_on_previous_ts - rollback.trigger_ts:.1f}s after the trigger")


# Why a deploy that never finished is rolled back: said by the log, the report and the ledger.
UNFINISHED_REASON = "converging after a deploy that never finished"

ROLLBACK: tuple[Step, ...] = (
    Step("rollback_traffic", traffic_to_previous),
    Step("rollback_production", production_answers, checkpoint=ROLLING_BACK),
    Step("rollback_export", export_window_rows, checkpoint=ROLLING_BACK),
    Step("rollback_schema", undo_plan, checkpoint=ROLLING_BACK),
    Step("rollback_verify", verify_previous, checkpoint=ROLLING_BACK),
    Step("rollback_cleanup", remove_new_color, checkpoint=ROLLING_BACK),
    Step("rollback_record", record_rolled_back),
)


def run_rollback(run: DeployRun, reason: str) -> None:
    """Run ``ROLLBACK`` for ``run`` (which touched production); raises what a step raised."""
    run.record.rollback = RollbackRecord(reason=reason, trigger_ts=time.time())
    run.log(f"!! rolling back: {reason}")
    then = ["export the window's rows", *undo_after_traffic(run.plan_labels, run.reversible, run.new_color)]
    run.log(
        f"   traffic goes back to {run.old_color} first; then: {', '.join(then)} "
        "(if this process is killed before the end, the next deploygate command finishes it)"
    )
    run_steps(ROLLBACK, run)


def rollback_unfinished(platform: Platform, settings: Settings, entry: ledger.Entry, log: DeployLog, services: Services) -> DeployRun:
    """Roll back a deploy another process left open (its ledger entry), logging into ``log`` ("converging", the log says)."""
    run = DeployRun.create(platform, settings, Request(candidate_ref=""), kind="rollback", echo=False, services=services)
    run.log, run.stamp = log, f"{run.stamp}_converge"  # its export must not collide with the deploy that converges
    run.resume(Checkpoint.from_json(entry.detail))
    run_rollback(run, UNFINISHED_REASON)
    return run
