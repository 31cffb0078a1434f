"""The polling helper and the step runner: what counts as "not yet", and what a failure turns into (pure logic)."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import docker.errors
import pytest

from deploygate.deploy import runner
from deploygate.deploy.abort import Aborted
from deploygate.deploy.runner import Refused, RollbackFailed, Step
from deploygate.deploy.state import Request
from deploygate.errors import StackError, WaitTimeout
from deploygate.record import DeployRecord, Outcome, StageRecord
from deploygate.waiting import wait_until


def test_transient_errors_are_retried_until_the_probe_answers() -> None:
    calls = []

    def probe() -> str | None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not listening yet")
        return "up"

    assert wait_until(probe, timeout=5, interval=0.01, what="x") == "up"
    assert len(calls) == 3


def test_a_real_failure_ends_the_wait_at_once() -> None:
    calls = []

    def probe() -> None:
        calls.append(1)
        raise StackError("web_green exited: Traceback | ImportError")

    with pytest.raises(StackError, match="exited"):
        wait_until(probe, timeout=60, interval=0.01, what="web_green to become healthy")
    assert len(calls) == 1


def test_timeout_names_what_was_awaited_and_last_seen() -> None:
    with pytest.raises(WaitTimeout, match=r"waiting for db to accept connections; last seen: ConnectionRefusedError: no"):
        wait_until(
            lambda: (_ for _ in ()).throw(ConnectionRefusedError("no")), timeout=0.05, interval=0.01, what="db to accept connections"
        )


@dataclass
class FakeRun:
    """Just what the runner touches of a DeployRun: request, record, ledger checkpoints and stages."""

    request: Request = field(default_factory=lambda: Request(candidate_ref="c"))
    record: DeployRecord = field(default_factory=lambda: DeployRecord(kind="deploy", outcome=Outcome.RUNNING))
    touched: bool = False
    ledger: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def record_in_ledger(self, outcome: str, **_extra: object) -> None:
        self.ledger.append(outcome)

    def log(self, line: str) -> None:
        self.lines.append(line)

    @property
    def stages(self) -> list[str]:
        return [stage.name for stage in self.record.stages]

    @contextmanager
    def stage(self, name: str):
        self.record.stages.append(StageRecord(name=name, started=0.0))
        yield


def _docker_error(_run) -> None:
    raise docker.errors.APIError("409 Client Error: Conflict (container is paused)")


def _ok(_run) -> None:
    pass


def test_any_exception_after_production_was_touched_rolls_back() -> None:
    rolled_back = []
    steps = (Step("backup", _ok), Step("migrate", _ok, touches_production=True, checkpoint="migrated"), Step("switch", _docker_error))
    run = FakeRun()
    outcome = runner.execute(steps, run, lambda r, cause: rolled_back.append(cause))
    assert outcome is Outcome.ROLLED_BACK and run.record.outcome is Outcome.ROLLED_BACK
    assert rolled_back == ["APIError: 409 Client Error: Conflict (container is paused)"]
    assert run.ledger == ["started", "migrated"]


def test_a_failure_before_production_was_touched_is_a_refusal() -> None:
    steps = (Step("predeploy", _docker_error), Step("migrate", _ok, touches_production=True))
    run = FakeRun()
    with pytest.raises(Refused, match="APIError"):
        runner.execute(steps, run, lambda r, cause: pytest.fail("nothing to roll back"))
    assert run.record.outcome is Outcome.REFUSED and run.ledger == [] and run.stages == ["predeploy"]


def test_the_first_error_stays_the_one_reported_when_the_rollback_fails_too() -> None:
    def failing_rollback(_run, _cause) -> None:
        raise StackError("the proxy is gone")

    steps = (Step("green", _ok, touches_production=True), Step("green_healthy", _docker_error))
    run = FakeRun()
    with pytest.raises(RollbackFailed) as caught:
        runner.execute(steps, run, failing_rollback)
    assert caught.value.first.startswith("APIError") and caught.value.second == "the proxy is gone"
    assert str(caught.value).startswith("APIError: 409") and run.record.outcome is Outcome.FAILED
    assert run.record.rollback.error == "the proxy is gone"


def test_dry_run_runs_only_the_steps_marked_for_it() -> None:
    seen = []
    steps = (
        Step("plan", lambda r: seen.append("plan"), dry_run=True),
        Step("dry_run", lambda r: seen.append("describe"), deploy=False, dry_run=True),
        Step("migrate", lambda r: seen.append("migrate"), touches_production=True),
    )
    run = FakeRun(request=Request(candidate_ref="c", dry_run=True))
    assert runner.execute(steps, run, lambda r, c: None) is Outcome.DRY_RUN
    assert seen == ["plan", "describe"] and run.ledger == []
    seen.clear()
    assert runner.execute(steps, FakeRun(), lambda r, c: None) is Outcome.SUCCEEDED
    assert seen == ["plan", "migrate"]


def test_a_step_runs_only_when_its_condition_holds() -> None:
    seen = []
    steps = (Step("hold", lambda r: seen.append("hold"), when=lambda r: False), Step("switch", lambda r: seen.append("switch")))
    runner.execute(steps, FakeRun(), lambda r, c: None)
    assert seen == ["switch"]


def _signal_self(signum: int):
    def step(_run) -> None:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler interrupts this at once
        pytest.fail("the signal did not abort the step")

    return step


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_step_rolls_back_and_says_where(signum: int) -> None:
    rolled_back = []
    steps = (Step("green", _ok, touches_production=True), Step("monitor", _signal_self(signum)), Step("finish", _ok))
    run = FakeRun()
    with pytest.raises(Aborted, match=rf"aborted by {signal.Signals(signum).name} during monitor; rolled back"):
        runner.execute(steps, run, lambda r, cause: rolled_back.append(cause))
    assert rolled_back == [f"aborted by {signal.Signals(signum).name} during monitor"]
    assert run.record.outcome is Outcome.ABORTED and run.stages == ["green", "monitor"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back


def test_a_second_signal_does_not_stop_the_rollback() -> None:
    finished = []

    def rollback_interrupted(_run, _cause) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        finished.append(True)

    steps = (Step("green", _ok, touches_production=True), Step("migrate", _signal_self(signal.SIGINT)))
    run = FakeRun()
    with pytest.raises(Aborted):
        runner.execute(steps, run, rollback_interrupted)
    assert finished == [True]
    assert any("received during the rollback: it finishes first" in line for line in run.lines)


def test_a_signal_before_production_was_touched_changes_nothing() -> None:
    steps = (Step("predeploy", _signal_self(signal.SIGTERM)), Step("green", _ok, touches_production=True))
    run = FakeRun()
    with pytest.raises(Aborted, match="during predeploy; production untouched"):
        runner.execute(steps, run, lambda r, c: pytest.fail("nothing to roll back"))
    assert run.ledger == []
