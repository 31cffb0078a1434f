"""Rollback decisions of the monitoring window and the compatibility verdict's rules (pure logic)."""

from __future__ import annotations

import time

from deploygate import compat, monitor
from deploygate.lock import lock_key
from deploygate.migrations import announced_changes
from deploygate.probe import ExerciseCheck, MigrationPlan, ModelExercise, PlanStep


def test_monitor_rolls_back_over_the_threshold_or_on_health() -> None:
    state = monitor.MonitorState(color="green", started=time.time(), window_s=300, threshold=10)
    state.errors_by_color.update({"blue": 50, "green": 10})
    assert monitor.judge(state, consecutive_health_failures=0, max_health_failures=3) is None
    state.errors_by_color["green"] = 11
    assert "11 errors on green exceed the limit of 10" in monitor.judge(state, consecutive_health_failures=0, max_health_failures=3)
    state.errors_by_color["green"] = 0
    assert "health check failed 3 times" in monitor.judge(state, consecutive_health_failures=3, max_health_failures=3)


def test_errors_on_what_the_plan_creates_are_discounted() -> None:
    announced = announced_changes(['ALTER TABLE "t" ADD COLUMN "c" int NULL;', 'CREATE TABLE "n" ("id" int);'])
    assert compat.explained_by_plan("ProgrammingError: column t.c does not exist", announced)
    assert compat.explained_by_plan('ProgrammingError: relation "n" does not exist', announced)
    assert not compat.explained_by_plan("ProgrammingError: column t.other does not exist", announced)
    assert not compat.explained_by_plan("IntegrityError: null value in column \"x\"", announced)


def test_incompatibilities_group_by_model_then_field() -> None:
    whole = ModelExercise("a.Gone", "a_gone", [
        ExerciseCheck(op="select", ok=False, error='relation "a_gone" does not exist'),
        ExerciseCheck(op="filter", field="x", ok=False, error='relation "a_gone" does not exist'),
    ])  # fmt: skip
    partial = ModelExercise("a.Link", "a_link", [
        ExerciseCheck(op="select", ok=True),
        ExerciseCheck(op="filter", field="member", ok=False, error="column a_link.member_id does not exist"),
        ExerciseCheck(op="insert", ok=False, error="column a_link.member_id does not exist"),
    ])  # fmt: skip
    items = compat.incompatibilities([whole, partial], compat.PRODUCTION_ON_NEW)
    assert [(i.model, i.field, i.operations) for i in items] == [
        ("a.Gone", None, ("filter", "select")),
        ("a.Link", None, ("insert",)),
        ("a.Link", "member", ("filter",)),
    ]


def test_advice_names_the_fix_per_operation() -> None:
    plan = MigrationPlan(
        steps=[PlanStep("u", "0023_rename", ["Rename field a on x to b"], ["RenameField"], True, True, [])], applied_leaves={}
    )
    (advice,) = compat.advice_for(plan)
    assert "db_column" in advice and "SeparateDatabaseAndState" in advice


def test_lock_key_is_stable_and_per_project() -> None:
    assert lock_key("a") == lock_key("a") != lock_key("b")
    assert -(2**63) <= lock_key("a") < 2**63
