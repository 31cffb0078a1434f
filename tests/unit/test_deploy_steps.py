"""Every DEPLOY step, on the in-memory production of tests/unit/fakes.py: the happy path, and each step failing.

A failure before production is touched is a refusal (nothing changed, nothing in the ledger);
from the green step on it is a rollback: traffic back on blue, the schema back to v1, green
removed, the ledger's deploy closed as rolled_back.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from deploygate.deploy import Request, deploy, steps
from deploygate.deploy.runner import Refused
from deploygate.errors import StackError
from deploygate.health import HealthSample
from deploygate.proxy import AccessRecord
from deploygate.record import Outcome
from deploygate.window_judge import Limits
from tests.unit.fakes import RELEASES, Production


@pytest.fixture
def production(tmp_path: Path) -> Production:
    return Production(tmp_path)


def _deploy(production: Production, request: Request):
    return deploy(production.platform, production.settings, request, echo=False, services=production.services)


def _stages(production: Production) -> list[str]:
    return [stage.name for stage in production.world.reports[-1].stages]


def test_a_deploy_runs_its_steps_in_order_and_leaves_the_candidate_serving(production: Production) -> None:
    result = _deploy(production, Request("v2"))
    world = production.world
    assert result.outcome is Outcome.SUCCEEDED
    assert _stages(production) == [
        "request",
        "candidate",
        "converge",
        "predeploy",
        "plan",
        "backup",
        "window",
        "green",
        "migrate",
        "green_healthy",
        "post_green",
        "replicas",
        "switch",
        "monitor",
        "post_proxy",
        "finish",
    ]
    assert world.serving == "green" and world.applied == RELEASES["v2"]
    assert world.deploy_outcomes() == ["started", "migrated", "switched", "succeeded"]
    assert world.colors["blue"].running is False  # kept, stopped, for a rollback
    # The backup is taken before anything is started; traffic moves only after green's post checks.
    assert world.calls.index("backups.take_backup") < world.calls.index("platform.start_color green")
    assert world.calls.index("gates.run_gate post_green") < world.calls.index("proxy.route green")


def test_a_dry_run_changes_nothing(production: Production) -> None:
    result = _deploy(production, Request("v2", dry_run=True))
    assert result.outcome is Outcome.DRY_RUN and _stages(production)[-1] == "dry_run"
    assert production.world.ledger == [] and production.world.serving == "blue" and production.world.applied == RELEASES["v1"]
    assert "platform.start_color green" not in production.world.calls


def test_a_dry_run_that_sees_production_change_fails(production: Production) -> None:
    production.world.checksum_moves = True
    with pytest.raises(Refused, match="production changed during the dry run"):
        _deploy(production, Request("v2", dry_run=True))


def _raise(error: Exception):
    def action() -> None:
        raise error

    return action


def _break_predeploy(p: Production) -> None:
    p.world.gate_failures["predeploy"] = [("test_compat", "compat")]


def _unknown_skip(p: Production) -> Request:
    return Request("v2", skip_checks={"test_nonexistent": "why not"})


# step -> how to make it fail. Steps before "green" refuse; the others roll back.
BEFORE_PRODUCTION = {
    "candidate": lambda p: p.world.fail("platform.resolve_image", StackError("no image v2")),
    "predeploy": _break_predeploy,
    "plan": lambda p: p.world.fail("probe.plan", StackError("the probe could not run")),
    "backup": lambda p: p.world.fail("backups.take_backup", StackError("pg_dump exited 1")),
    "window": lambda p: p.world.fail("data.max_ids", StackError("production does not answer")),
}
AFTER_PRODUCTION = {
    "green": lambda p: p.world.fail("platform.start_color green", StackError("port taken")),
    "migrate": lambda p: setattr(p.world, "migrate_fails_at", "catalog.0002_price"),
    "green_healthy": lambda p: p.world.unhealthy.add("green"),
    "post_green": lambda p: p.world.gate_failures.update(post_green=[("test_ok", "health")]),
    "switch": lambda p: p.world.fail("proxy.route green", StackError("the runtime API refused")),
    "monitor": lambda p: p.world.access.extend(AccessRecord(2e9, "green", "GET", "/", 500, 0.1) for _ in range(11)),
    "post_proxy": lambda p: p.world.gate_failures.update(post_proxy=[("test_ok", "health")]),
    "replicas": lambda p: p.world.fail("platform.standbys", StackError("the replica's container went away")),
    "finish": lambda p: p.world.fail("platform.stop_color blue", StackError("the engine went away")),
}


def test_every_deploy_step_has_a_failure_test() -> None:
    tested = {"request", "converge", "dry_run", "hold", "processes", *BEFORE_PRODUCTION, *AFTER_PRODUCTION}
    assert tested == {step.name for step in steps.DEPLOY}  # the others are tested below, on their own


def test_an_unknown_check_to_skip_is_refused_before_anything_happens(production: Production) -> None:
    with pytest.raises(Refused, match="no gate or post check named test_nonexistent"):
        _deploy(production, _unknown_skip(production))
    assert production.world.calls == ["platform.database"] and _stages(production) == ["request"]


@pytest.mark.parametrize("step", BEFORE_PRODUCTION)
def test_a_step_failing_before_production_was_touched_is_a_refusal(production: Production, step: str) -> None:
    BEFORE_PRODUCTION[step](production)
    with pytest.raises(Refused):
        _deploy(production, Request("v2"))
    world = production.world
    assert _stages(production)[-1] == step and production.world.reports[-1].outcome is Outcome.REFUSED
    assert world.ledger == [] and world.serving == "blue" and world.applied == RELEASES["v1"] and "green" not in world.colors


@pytest.mark.parametrize("step", AFTER_PRODUCTION)
def test_a_step_failing_after_production_was_touched_rolls_back_to_the_previous_release(production: Production, step: str) -> None:
    AFTER_PRODUCTION[step](production)
    result = _deploy(production, Request("v2"))
    world = production.world
    assert result.outcome is Outcome.ROLLED_BACK
    stages = _stages(production)
    assert stages[stages.index(step) + 1 :] == [
        "rollback_traffic",
        "rollback_production",
        "rollback_export",
        "rollback_schema",
        "rollback_verify",
        "rollback_cleanup",
        "rollback_record",
    ]
    assert world.serving == "blue" and world.colors["blue"].running and "green" not in world.colors
    assert world.applied == RELEASES["v1"]  # the schema is v1's again
    assert world.deploy_outcomes()[0] == "started" and world.deploy_outcomes()[-1] == "rolled_back"
    assert world.ledger[-1].detail["reason"] == result.detail


def test_after_traffic_moved_it_goes_back_first_then_the_applied_migration_is_reversed(production: Production) -> None:
    AFTER_PRODUCTION["monitor"](production)  # green served users (and 0002 is applied) when the window fails
    _deploy(production, Request("v2"))
    world = production.world
    assert "probe.migrate_to" in world.calls and world.applied == RELEASES["v1"]
    assert world.reports[-1].rollback.method == "reversed to {'catalog': '0001_initial'}"
    assert world.calls.index("proxy.route blue") < world.calls.index("probe.migrate_to")  # traffic first


def test_a_migration_that_failed_half_way_reverses_what_it_applied(production: Production) -> None:
    production.world.migrate_fails_at = "catalog.0003_stock"  # 0002 applied, 0003 not
    result = _deploy(production, Request("v3"))
    assert result.outcome is Outcome.ROLLED_BACK and production.world.applied == RELEASES["v1"]
    assert result.detail == "migrate failed on production: catalog.0003_stock: lock timeout"


def test_nothing_is_reversed_when_no_migration_was_applied(production: Production) -> None:
    production.world.fail("platform.start_color green", StackError("port taken"))
    _deploy(production, Request("v2"))
    assert "probe.migrate_to" not in production.world.calls
    assert production.world.reports[-1].rollback.method == "nothing to reverse: none of the plan's migrations is applied"


def test_an_accepted_incompatibility_holds_traffic_while_migrating_then_switches(production: Production) -> None:
    _break_predeploy(production)
    production.configure(app_processes={"worker": "python worker.py"})
    result = _deploy(production, Request("v2", accept_incompatible="a 2-minute hold is fine"))
    world = production.world
    assert result.outcome is Outcome.SUCCEEDED and world.serving == "green"
    assert "hold" in _stages(production) and "processes" in _stages(production)
    order = [world.calls.index(c) for c in ("proxy.hold blue", "probe.migrate", "platform.start_processes green", "proxy.route green")]
    assert order == sorted(order)


@pytest.mark.parametrize("step, call", [("hold", "proxy.hold blue"), ("processes", "platform.start_processes green")])
def test_a_failure_behind_the_hold_rolls_back_and_ends_the_hold(production: Production, step: str, call: str) -> None:
    _break_predeploy(production)
    production.configure(app_processes={"worker": "python worker.py"})
    production.world.on(call, _raise(StackError("refused")))  # once: the rollback holds traffic again
    result = _deploy(production, Request("v2", accept_incompatible="a 2-minute hold is fine"))
    world = production.world
    assert result.outcome is Outcome.ROLLED_BACK and _stages(production)[_stages(production).index(step) + 1] == "rollback_traffic"
    assert world.serving == "blue" and world.applied == RELEASES["v1"] and world.deploy_outcomes()[-1] == "rolled_back"


def test_the_monitoring_window_needs_only_its_narrow_context_and_says_when_a_proxy_was_down() -> None:
    from tests.unit.fakes import FakeProxy, World

    world, lines = World(), []
    errors = [AccessRecord(2e9, "green", "GET", "/", 500, 0.1), AccessRecord(2e9, "blue", "GET", "/", 500, 0.1)]
    world.access.extend(errors)
    window = steps.MonitorWindow(
        switch=FakeProxy(world, None),
        health=lambda url: HealthSample(url, 200, 1.0, None),
        proxy_running=lambda name: False,
        color_output=lambda color, since, until: "",
        color="green",
        switched_at=time.time(),
        window_s=0,
        baseline_s=60,
        limits=Limits(max_errors=1, min_requests=1),
        on_inconclusive="accept",
        health_path="/health/",
        say=lines.append,
    )
    verdict = steps.watch_window(window)
    assert verdict.ok and verdict.monitoring.errors_by_color == {"green": 1, "blue": 1}
    # Blue's one request came after the switch: no baseline to judge against, which is said, not passed silently.
    assert verdict.monitoring.verdict == "inconclusive" and "the baseline had 0 requests" in verdict.monitoring.reason
    assert verdict.notes[0].startswith("monitoring: inconclusive (the baseline had 0 requests")
    assert verdict.notes[-1] == "monitoring: the proxy on  did not run at the end of the window; ok through the others"
    assert verdict.notes[-1] in lines[-1]


def test_a_report_that_cannot_be_written_never_replaces_the_deploys_outcome(production: Production) -> None:
    def no_matplotlib(*_args: object) -> Path:
        raise ModuleNotFoundError("No module named 'matplotlib'")

    production.services = dataclasses.replace(production.services, report=no_matplotlib)
    result = _deploy(production, Request("v2"))
    assert result.outcome is Outcome.SUCCEEDED and result.report is None
    log = next((production.root / "logs").glob("deployment_*.log")).read_text()
    assert "report not written: ModuleNotFoundError: No module named 'matplotlib'" in log
