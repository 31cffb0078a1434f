"""Steps and the one runner that executes a table of them.

A deploy is a module-level table of named ``Step``s (``steps.DEPLOY``), a rollback another
(``undo.ROLLBACK``); Kamal's deploy and boot read the same way. The runner times each
step as a stage of the record, writes the ledger at the marked checkpoints, and decides
what a failure means: before production was touched it is a refusal (nothing to undo);
after, ANY exception (a failed gate, a docker or HTTP error, a bug) rolls back. As in
Django's test runner, the first error stays the one reported; if the rollback fails too,
its error is attached to the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deploygate.deploy import abort
from deploygate.deploy.state import DeployRun
from deploygate.errors import DeployGateError, one_line
from deploygate.record import Outcome, RollbackRecord


class StageFailed(DeployGateError):
    """A step found a reason not to go on (a gate failed, a color never became healthy...)."""


class Refused(DeployGateError):
    """The deploy stopped before it touched production: nothing to undo."""


class RollbackFailed(DeployGateError):
    """A step failed and the rollback that followed failed too; the ledger keeps the deploy open."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first}; the rollback failed too: {second} (the deploy stays open: `nox -s rollback` converges)")
        self.first, self.second = first, second


def always(_run: DeployRun) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One named step of a table.

    ``touches_production``: from this step on, a failure rolls back (the ledger gets its
    "started" checkpoint just before it runs). ``checkpoint``: the ledger outcome written
    once the step passed, so another run knows how far it got. ``deploy`` / ``dry_run``:
    whether the step runs in a real deploy, in a dry run, or both. ``when``: a condition
    read at run time (e.g. a maintenance hold only when one was accepted).
    """

    name: str
    run: Callable[[DeployRun], None]
    touches_production: bool = False
    checkpoint: str | None = None
    deploy: bool = True
    dry_run: bool = False
    when: Callable[[DeployRun], bool] = always


def run_steps(steps: Sequence[Step], run: DeployRun) -> None:
    """Run the steps in order, each as a stage; raises the first failure unchanged."""
    for step in steps:
        if not (step.dry_run if run.request.dry_run else step.deploy) or not step.when(run):
            continue
        if step.touches_production and not run.touched:
            run.record_in_ledger("started")
            run.touched = True
        with run.stage(step.name):
            step.run(run)
        if step.checkpoint:
            run.record_in_ledger(step.checkpoint, step=step.name)


def execute(
    steps: Sequence[Step],
    run: DeployRun,
    rollback: Callable[[DeployRun, str], None],
) -> Outcome:
    """Run a deploy table; on failure refuse (untouched) or roll back (touched). Returns the outcome.

    SIGINT / SIGTERM during the steps abort it the same way (``abort.Aborted`` is re-raised,
    naming the step, once the rollback is done); during the rollback they are noted and
    ignored. Raises ``Refused`` when a step failed before production was touched, and
    ``RollbackFailed`` when the rollback after a failure failed as well.
    """
    with abort.deferred(run.log):
        try:
            with abort.raising(run.log):
                run_steps(steps, run)
        except (Exception, abort.Aborted) as exc:  # every failure after production was touched must roll back
            aborted = isinstance(exc, abort.Aborted)
            step = run.record.stages[-1].name if run.record.stages else "start"
            cause = f"aborted by {exc.why} during {step}" if aborted else one_line(exc)
            if run.touched:
                _rollback_keeping_the_first_error(run, rollback, cause, exc)
            if aborted:
                run.record.outcome = Outcome.ABORTED
                done = "rolled back" if run.touched else "production untouched"
                raise abort.Aborted(f"{cause}; {done}") from exc
            if not run.touched:
                run.record.outcome = Outcome.REFUSED
                raise Refused(cause) from exc
            run.record.outcome = Outcome.ROLLED_BACK
            return run.record.outcome
    run.record.outcome = Outcome.DRY_RUN if run.request.dry_run else Outcome.SUCCEEDED
    return run.record.outcome


def _rollback_keeping_the_first_error(run: DeployRun, rollback: Callable[[DeployRun, str], None], cause: str, first: BaseException) -> None:
    try:
        rollback(run, cause)
    except Exception as second:  # noqa: BLE001 - reported attached to the first, never instead of it
        run.record.outcome = Outcome.FAILED
        if run.record.rollback is None:
            run.record.rollback = RollbackRecord(reason=cause, trigger_ts=0.0)
        run.record.rollback.error = one_line(second)
        raise RollbackFailed(cause, one_line(second)) from first
