"""Every ROLLBACK path and every abort point, on the in-memory production of tests/unit/fakes.py.

A rollback step that fails leaves the deploy open in the ledger (``rolling_back``, naming how
far it got); the next ``rollback`` (or the next deploy) finishes it. A stop signal before or
inside any step, or in the monitoring window, rolls back exactly as a failure does.
"""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path

import pytest

from deploygate.deploy import Request, RollbackRefused, deploy, rollback, steps, undo
from deploygate.deploy.abort import Aborted
from deploygate.deploy.runner import RollbackFailed
from deploygate.deploy.state import OPEN_OUTCOMES, ROLLING_BACK
from deploygate.errors import StackError
from deploygate.ledger import Entry
from deploygate.proxy import AccessRecord
from deploygate.record import Outcome
from tests.unit.fakes import RELEASES, Production, stop_signal


@pytest.fixture
def production(tmp_path: Path) -> Production:
    return Production(tmp_path)


def _deploy(production: Production, request: Request | None = None):
    return deploy(production.platform, production.settings, request or Request("v2"), echo=False, services=production.services)


def _rollback(production: Production, **options):
    return rollback(production.platform, production.settings, echo=False, services=production.services, **options)


def _fail_after_the_switch(production: Production) -> None:
    production.world.access.extend(AccessRecord(2e9, "green", "GET", "/", 500, 0.1) for _ in range(11))


def _assert_back_on_v1(production: Production) -> None:
    world = production.world
    assert world.serving == "blue" and world.colors["blue"].running and "green" not in world.colors
    assert world.applied == RELEASES["v1"] and world.deploy_outcomes()[-1] == "rolled_back"


# rollback step -> how to make it fail (once traffic moved: the monitoring window failed).
ROLLBACK_FAILURES = {
    "rollback_traffic": lambda p: p.world.fail("proxy.route blue", StackError("the runtime API refused")),
    "rollback_production": lambda p: p.world.fail("data.wait_connectable", StackError("production's database does not answer")),
    "rollback_export": lambda p: p.world.fail("data.export_rows", StackError("disk full")),
    "rollback_schema": lambda p: p.world.fail("probe.migrate_to", StackError("the probe could not run")),
    "rollback_verify": lambda p: p.world.fail("proxy.verify blue", StackError("answered by green")),
    "rollback_cleanup": lambda p: p.world.fail("platform.remove_color green", StackError("the engine went away")),
    "rollback_record": lambda p: p.world.fail("ledger.record rolled_back", StackError("production's database does not answer")),
}


def test_every_rollback_step_has_a_failure_test() -> None:
    assert set(ROLLBACK_FAILURES) == {step.name for step in undo.ROLLBACK}


@pytest.mark.parametrize("step", ROLLBACK_FAILURES)
def test_a_failing_rollback_step_keeps_the_deploy_open_and_the_next_rollback_finishes_it(production: Production, step: str) -> None:
    _fail_after_the_switch(production)
    ROLLBACK_FAILURES[step](production)
    with pytest.raises(RollbackFailed) as failed:
        _deploy(production)
    world = production.world
    assert failed.value.first.startswith("rollback: 11 errors on green")  # the first error stays the one reported
    assert world.reports[-1].outcome is Outcome.FAILED and world.reports[-1].stages[-1].name == step
    assert world.deploy_outcomes()[-1] in OPEN_OUTCOMES
    checkpoints = [e.detail.get("step") for e in world.ledger if e.outcome == ROLLING_BACK]
    done = [s.name for s in undo.ROLLBACK]
    assert checkpoints == [s for s in done[: done.index(step)] if s not in ("rollback_traffic", "rollback_record")]

    world.faults.clear()
    result = _rollback(production)
    assert result.outcome is Outcome.ROLLED_BACK and result.detail == undo.UNFINISHED_REASON
    _assert_back_on_v1(production)


def test_a_reversal_that_fails_restores_the_backup_and_puts_the_windows_rows_back(production: Production) -> None:
    _fail_after_the_switch(production)
    # A reversal that answers but fails is the backup's case; a probe that cannot run at all is a failed step.
    production.services = dataclasses.replace(production.services, probe=_probe_whose_reversal_fails(production))
    result = _deploy(production)
    assert result.outcome is Outcome.ROLLED_BACK
    _assert_back_on_v1(production)
    calls = production.world.calls
    assert calls.index("data.export_rows") < calls.index("backups.restore_production") < calls.index("data.reapply_rows")
    assert production.world.reports[-1].rollback.method == "restored backup_fake.dump and re-applied 3 rows written during the window"


def _probe_whose_reversal_fails(production: Production):
    from deploygate.probe import parse_migrate
    from tests.unit.fakes import FakeProbe

    class ReversalFails(FakeProbe):
        def migrate_to(self, targets):
            self.world.touch("probe.migrate_to (fails)")
            return parse_migrate({"migrations": [], "error": "IrreversibleError"}, exit_code=1)

    return lambda platform, settings, image, say: ReversalFails(production.world, image)


def test_an_unfinished_deploy_is_rolled_back_by_the_next_deploy_before_it_starts(production: Production) -> None:
    _fail_after_the_switch(production)
    production.world.fail("platform.remove_color green", StackError("the engine went away"))
    with pytest.raises(RollbackFailed):
        _deploy(production)
    production.world.faults.clear()
    production.world.access.clear()
    result = _deploy(production, Request("v3"))
    world = production.world
    assert result.outcome is Outcome.SUCCEEDED and world.serving == "green" and world.applied == RELEASES["v3"]
    assert world.deploy_outcomes()[-5:] == ["rolled_back", "started", "migrated", "switched", "succeeded"]


def test_a_dry_run_refuses_while_a_deploy_is_unfinished(production: Production) -> None:
    _fail_after_the_switch(production)
    production.world.fail("ledger.record rolled_back", StackError("no database"))
    with pytest.raises(RollbackFailed):
        _deploy(production)
    production.world.faults.clear()
    with pytest.raises(Exception, match="never finished; a deploy would roll it back first"):
        _deploy(production, Request("v2", dry_run=True))


def test_if_unfinished_does_nothing_without_an_open_deploy_and_leaves_a_finished_one(production: Production) -> None:
    assert _rollback(production, only_unfinished=True) is None
    assert _deploy(production).outcome is Outcome.SUCCEEDED
    assert _rollback(production, only_unfinished=True) is None
    assert production.world.serving == "green" and production.world.deploy_outcomes()[-1] == "succeeded"


def test_if_unfinished_rolls_back_an_open_deploy(production: Production) -> None:
    production.world.on("platform.wait_healthy green", _die)
    with pytest.raises(_Killed):
        _deploy(production)  # the process "dies" mid-deploy: nothing rolled back, the ledger says started/migrated
    assert production.world.deploy_outcomes() == ["started", "migrated"]
    result = _rollback(production, only_unfinished=True)
    assert result.outcome is Outcome.ROLLED_BACK and result.detail == undo.UNFINISHED_REASON
    _assert_back_on_v1(production)


class _Killed(BaseException):
    """What SIGKILL does to a deploy, as far as the ledger can tell: it stops between two lines, nothing runs after."""


def _die() -> None:
    raise _Killed()


def test_a_finished_deploy_is_rolled_back_on_request_within_the_forward_fix_limit(production: Production) -> None:
    _deploy(production)
    result = _rollback(production)
    assert result.outcome is Outcome.ROLLED_BACK and result.detail.startswith("rollback on request")
    _assert_back_on_v1(production)
    with pytest.raises(RollbackRefused, match="already rolled back"):
        _rollback(production)


def test_past_the_forward_fix_limit_a_rollback_needs_force(production: Production) -> None:
    _deploy(production)
    world = production.world
    last = world.ledger[-1]
    world.ledger[-1] = Entry(last.at, last.kind, last.outcome, last.release, last.image_digest, {**last.detail, "switched_at": 1.0})
    with pytest.raises(RollbackRefused, match="past the forward-fix threshold"):
        _rollback(production)
    assert world.serving == "green"
    result = _rollback(production, force=True)
    assert result.detail.startswith("forced rollback (--force)")
    _assert_back_on_v1(production)


# --- abort points -------------------------------------------------------------------------------

TOUCHES_PRODUCTION = [s.name for s in steps.DEPLOY if s.deploy][[s.name for s in steps.DEPLOY if s.deploy].index("green") :]


def _signalling(production: Production, monkeypatch: pytest.MonkeyPatch, step: str, *, before: bool) -> None:
    """Send SIGTERM as ``step`` starts (before) or once its work is done (inside: the step has not returned)."""

    def wrap(original):
        def run(run_):
            if before:
                stop_signal()()
            original(run_)
            if not before:
                stop_signal()()

        return run

    monkeypatch.setattr(steps, "DEPLOY", tuple(dataclasses.replace(s, run=wrap(s.run)) if s.name == step else s for s in steps.DEPLOY))


@pytest.mark.parametrize("before", [True, False], ids=["before", "inside"])
@pytest.mark.parametrize("step", [s.name for s in steps.DEPLOY if s.deploy and s.name not in ("hold", "processes")])
def test_a_stop_signal_at_any_step_rolls_back_or_leaves_production_untouched(
    production: Production, monkeypatch: pytest.MonkeyPatch, step: str, before: bool
) -> None:
    _signalling(production, monkeypatch, step, before=before)
    with pytest.raises(Aborted, match=f"aborted by SIGTERM during {step}"):
        _deploy(production)
    world = production.world
    assert world.reports[-1].outcome is Outcome.ABORTED and world.serving == "blue" and world.applied == RELEASES["v1"]
    touched = step in TOUCHES_PRODUCTION
    assert world.deploy_outcomes()[-1:] == (["rolled_back"] if touched else [])
    assert ("green" in world.colors) is False


def test_a_stop_signal_in_the_monitoring_window_rolls_back_at_once(production: Production) -> None:
    production.configure(monitor_window_s=30)
    # The first health sample passes; the second, a second into the window, comes with a Ctrl-C.
    production.world.on("health.sample", lambda: production.world.on("health.sample", stop_signal(signal.SIGINT)))
    with pytest.raises(Aborted, match="aborted by SIGINT during monitor; rolled back"):
        _deploy(production)
    _assert_back_on_v1(production)
    assert production.world.reports[-1].stages[-1].finished - production.world.reports[-1].stages[0].started < 10


def test_an_abort_requested_through_the_ledger_rolls_back_in_the_monitoring_window(production: Production) -> None:
    production.configure(monitor_window_s=30)
    world = production.world
    production.world.on(
        "proxy.route green",
        lambda: world.ledger.append(Entry(world.ledger[-1].at, "abort", "requested", None, None, {"by": "ci", "reason": "cancelled"})),
    )
    with pytest.raises(Aborted, match="during monitor"):
        _deploy(production)
    _assert_back_on_v1(production)


def test_a_second_signal_during_the_rollback_is_ignored(production: Production) -> None:
    _fail_after_the_switch(production)
    production.world.on("probe.migrate_to", stop_signal())
    result = _deploy(production)
    assert result.outcome is Outcome.ROLLED_BACK
    _assert_back_on_v1(production)
