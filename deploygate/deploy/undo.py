"""The rollback, as one table of named steps (``ROLLBACK``), and the functions behind them.

Traffic goes back on the previous color first (behind a hold while the old release cannot
serve the schema as it is): a deploy stopped by a CI runner or ``docker stop`` has seconds
before SIGKILL, and users must be on the previous release by then. Then: keep what users
wrote during the window (export it), undo the plan (reverse it with the candidate's image,
or restore the backup and put the window's rows back), verify the previous release serves
on its own schema, remove the new color. After each step the ledger says how far the
rollback got (``rolling_back``), so whatever kills it, the next command finishes it.
"""

from __future__ import annotations

import time
from pathlib import Path

from deploygate import ledger, window
from deploygate.config import Settings
from deploygate.deploy.runner import StageFailed, Step, run_steps
from deploygate.deploy.services import Services
from deploygate.deploy.state import ROLLING_BACK, Checkpoint, DeployRun, Request, undo_after_traffic
from deploygate.errors import DeployGateError, StackError
from deploygate.log import DeployLog
from deploygate.platform import Platform
from deploygate.platform.images import Image
from deploygate.proxy import Route
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
    """Every row written since the deploy started, to a 0600 CSV, before anything is undone;
    the rows the release's own migrate inserted are not the window's (a restore removes them, and
    putting them back would give the previous release rows of models it does not have)."""
    export = run.settings.path(run.settings.backup_dir) / f"rollback_data_{run.stamp}.csv"
    rows = run.services.data.export_rows(run.db, run.started_ids, export, run.migrate_writes)
    run.record.rollback.export_path, run.record.rollback.rows_exported = str(export), rows
    run.log(f"   exported {rows} rows written during the window to {export}")
    if run.migrate_writes.floors:
        own = window.describe_counts(run.services.data.migrate_rows(run.db, run.migrate_writes))
        run.log(f"   left out {own} the release's migrate wrote (bookkeeping)")
        run.record.notes.append(f"rollback export: left out {own} the release's migrate wrote (bookkeeping)")


def _release(run: DeployRun) -> str:
    state = run.platform.color(run.old_color)
    return state.release if state else (run.previous.release if run.previous else "")


def traffic_to_previous(run: DeployRun) -> None:
    """The previous color serves again, or a hold answers while it cannot serve the current schema.

    The candidate's processes stop first (their release is going); the previous release's
    wait behind a hold until the schema is theirs again.
    """
    run.platform.wait_ready(timeout=run.settings.health_timeout)  # the engine may be restarting
    state = run.platform.color(run.old_color)
    if state is None:
        raise StageFailed(f"cannot roll back: {run.platform.color_name(run.old_color)} no longer exists")
    if run.platform.color(run.new_color) is not None:
        run.platform.stop_processes(run.new_color)
    run.platform.resume_color(run.old_color, processes=not run.hold)
    run.holding = bool(run.hold)
    if not run.holding:
        try:
            run.platform.wait_healthy(run.old_color, run.settings.health_timeout)
        except DeployGateError as exc:
            # The old release cannot serve the schema as it is now: hold traffic while it goes back.
            run.log(f"   {run.old_color} is not healthy on the current schema ({exc}): holding traffic")
            run.holding = True
            run.platform.stop_processes(run.old_color)
    if run.holding:
        run.proxy.hold(run.old_color)
        run.log("   proxy -> maintenance hold")
        return
    if run.proxy.current() != Route(run.old_color, state.release):
        run.proxy.route(run.old_color, fresh=True)
        run.log(f"   proxy -> {run.old_color} ({state.release})")
    run.record.rollback.traffic_on_previous_ts = time.time()


def _restore_backup(run: DeployRun) -> str:
    """The pre-deploy backup restored into production, then the window's rows put back."""
    if run.backup is None:
        raise StageFailed("the plan cannot be reversed and there is no backup to restore")
    run.services.backups.restore_production(run.platform, run.db, run.backup)
    export = run.record.rollback.export_path
    reapplied = run.services.data.reapply_rows(run.db, Path(export)) if export else 0
    return f"restored {run.backup.path.name} and re-applied {reapplied} rows written during the window"


def undo_plan(run: DeployRun) -> None:
    """Undo the plan on production; then, behind a hold, the previous color serves again."""
    method = _undo(run)
    run.record.rollback.method = method
    run.log(f"   {method}")
    if run.holding:
        run.platform.resume_color(run.old_color)  # its processes too, now that the schema is theirs
        state = run.platform.wait_healthy(run.old_color, run.settings.health_timeout)
        run.proxy.route(run.old_color, fresh=True)
        run.log(f"   proxy -> {run.old_color} ({state.release})")
        run.record.rollback.traffic_on_previous_ts = time.time()


def _undo(run: DeployRun) -> str:
    if not run.reversal_targets:
        return "nothing to reverse (the plan was empty)"
    prober = run.prober(run.candidate)
    # The truth is in django_migrations, not in what this process believes it did.
    applied = [label for label in run.plan_labels if label in prober.plan().applied]
    if not applied:
        return "nothing to reverse: none of the plan's migrations is applied"
    if run.reversible:
        done = prober.migrate_to(run.reversal_targets)
        if done.ok:
            return f"reversed to {run.reversal_targets}"
        run.log(f"   reversal failed ({done.error}): restoring the backup instead")
    return _restore_backup(run)


def verify_previous(run: DeployRun) -> None:
    """The schema is exactly the previous release's, and the proxy's answers come from its color."""
    state = run.platform.color(run.old_color)
    image = Image(tag=state.release, id=state.image_id, built=False)
    plan = run.prober(image).plan()
    if plan.unknown_applied and run.candidate is not None:
        # The candidate's migrate may have recorded its squash over migrations the previous release has.
        plan = plan.judged_with(run.prober(run.candidate).plan().squash_replaces)
    outside = plan.outside
    if outside.replaced_by_squash or outside.of_removed_apps or outside.squashes_of_its_own:
        # History, not a mismatch: said in the log and the report, so nobody wonders where they went.
        run.log(f"   applied migrations {run.old_color}'s graph explains: {outside.explained()}")
        run.record.notes.append(
            f"rollback verify: applied migrations outside {run.old_color}'s graph, not a mismatch: {outside.explained()}"
        )
    if not plan.at_release:
        mismatch = f"schema does not match {run.old_color}: {plan.mismatch()}"
        accepted = run.request.accept_schema_mismatch
        if not accepted:
            # Re-running cannot change what django_migrations records: without a way out the deploy stays open for good.
            raise StageFailed(
                f'{mismatch}; if that is expected, `nox -s rollback -- --accept-schema-mismatch --reason "why"` '
                "closes the deploy (recorded)"
            )
        run.log(f"   {mismatch}: ACCEPTED ({accepted})")
        run.record.notes.append(f"rollback verify: {mismatch}; accepted: {accepted}")
        # The exceptions go to the ledger with the rolled_back entry: what was accepted, beside why.
        run.record.exceptions["accept schema mismatch"] = f"{accepted} (accepted: {mismatch})"
    run.proxy.verify(run.old_color)


def remove_new_color(run: DeployRun) -> None:
    run.platform.remove_color(run.new_color)


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
