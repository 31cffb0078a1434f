"""The probe's result line and its answers parsed into records (pure logic: canned payloads, no engine)."""

from __future__ import annotations

import json

import pytest

from deploygate.probe import ProbeError, result_of
from deploygate.probe_results import (
    ExerciseCheck,
    FieldFacts,
    ModelExercise,
    TableLock,
    exercise_failures,
    lock_words,
    parse_exercise,
    parse_migrate,
    parse_plan,
    unchecked_fields,
)
from deploygate.probes import RESULT_MARKER


def _line(payload: dict) -> str:
    return RESULT_MARKER + json.dumps(payload)


def test_the_last_result_line_is_the_result() -> None:
    output = "\n".join(["Operations to perform:", _line({"n": 1}), "  Applying shop.0002... OK", _line({"n": 2}), ""])
    assert result_of(output, command="plan", image="shop:2", exit_code=0) == {"n": 2}


def test_a_probe_that_printed_no_result_names_its_last_line() -> None:
    with pytest.raises(ProbeError, match=r"the probe `plan` in shop:2 gave no result \(exit 1\): ModuleNotFoundError: django"):
        result_of("Traceback (most recent call last):\nModuleNotFoundError: django\n\n", command="plan", image="shop:2", exit_code=1)


def test_a_fatal_result_is_an_error_not_an_answer() -> None:
    with pytest.raises(ProbeError, match="the probe `migrate` in shop:2 failed: the database went away"):
        result_of(_line({"fatal": "the database went away"}), command="migrate", image="shop:2", exit_code=1)


PLAN = {
    "plan": [
        {
            "app": "shop",
            "name": "0002_sku",
            "operations": ["AddField item.sku", "AlterField item.name"],
            "operation_types": ["AddField", "AlterField"],
            "reversible": True,
            "atomic": True,
            "sql": ['ALTER TABLE "shop_item" ADD COLUMN "sku" varchar(20) NULL;'],
            "changes": [
                {"type": "AddField", "after": {"db_type": "varchar(20)", "null": True, "unique": False}},
                {
                    "type": "AlterField",
                    "before": {"db_type": "varchar(50)", "null": False, "unique": False},
                    "after": {"db_type": "varchar(100)", "null": False, "unique": False, "collation": "C"},
                    "unique_added": 1,
                },
            ],
            "seconds": 0.2,  # a key the host does not read
        }
    ],
    "applied_leaves": {"shop": "0001_initial"},
    "applied": ["shop.0001_initial"],
}


def test_a_plan_keeps_what_the_host_reads_and_drops_the_rest() -> None:
    plan = parse_plan(PLAN)
    (step,) = plan.steps
    assert (step.label, plan.labels, plan.apps, plan.reversible) == ("shop.0002_sku", ["shop.0002_sku"], ["shop"], True)
    assert step.changes[0].before is None and step.changes[0].after == FieldFacts("varchar(20)", True, False)
    assert step.changes[1].before == FieldFacts("varchar(50)", False, False) and step.changes[1].unique_added == 1
    assert plan.reversal_targets() == {"shop": "0001_initial"}
    assert not plan.at_release and plan.mismatch().startswith("pending ['shop.0002_sku'], unknown []")


MIGRATE = {
    "migrations": [
        {
            "app": "shop",
            "name": "0002_sku",
            "direction": "forwards",
            "duration_s": 0.4,
            "statements": 2,
            "error": None,
            "locks": {
                "shop_item": {"mode": "AccessExclusiveLock", "held_s": 0.0123},
                "shop_tag": {"mode": "RowExclusiveLock", "held_s": 0.002},
            },
        },
        {
            "app": "shop",
            "name": "0003_unique",
            "direction": "forwards",
            "duration_s": 0.1,
            "statements": 1,
            "locks": None,
            "error": "duplicate key value violates unique constraint",
        },
    ],
    "error": "duplicate key value violates unique constraint",
    "failure": {"migration": "shop.0003_unique", "message": "duplicate key", "sqlstate": "23505", "table": "shop_item", "hint": "x"},
    "bookkeeping": {"post_migrate": ["django_content_type"], "content_type_rename": []},
}


def test_a_failed_migrate_says_where_and_what_each_migration_locked() -> None:
    result = parse_migrate(MIGRATE, exit_code=1)
    assert not result.ok and result.error == "duplicate key value violates unique constraint"
    first, second = result.migrations
    assert first.locks["shop_item"] == TableLock("AccessExclusiveLock", 0.0123)
    assert first.exclusive_locks_ms() == {"shop_item": 12}
    assert first.strongest_locks() == "shop_item ACCESS EXCLUSIVE 12 ms, shop_tag ROW EXCLUSIVE 2 ms"
    assert second.locks == {} and second.strongest_locks() == "no table locks"
    assert result.failure is not None and (result.failure.migration, result.failure.sqlstate) == ("shop.0003_unique", "23505")
    assert result.failure.offending_rows is None  # counted by the host, never by the probe
    assert result.post_migrate_tables == ["django_content_type"] and result.inserted_xids == {}


def test_a_migrate_is_ok_only_without_error_and_with_exit_0() -> None:
    assert parse_migrate({"migrations": [], "error": None}).ok
    assert not parse_migrate({"migrations": [], "error": None}, exit_code=1).ok


@pytest.mark.parametrize(
    ("mode", "words"),
    [("AccessExclusiveLock", "ACCESS EXCLUSIVE"), ("ShareRowExclusiveLock", "SHARE ROW EXCLUSIVE"), ("ShareLock", "SHARE")],
)
def test_lock_modes_read_as_postgres_documents_them(mode: str, words: str) -> None:
    assert lock_words(mode) == words


def test_exercise_failures_leave_boundaries_to_the_gates_and_unchecked_fields_are_named_once() -> None:
    checks = [
        {"op": "insert", "ok": False, "field": "sku", "error": "null value in column", "value": "fresh"},
        {"op": "insert", "ok": False, "field": "name", "error": "value too long", "value": "max_length=100"},
        {"op": "insert", "ok": True, "field": "geo", "unchecked": "geo: PointField cannot be filled"},
        {"op": "update", "ok": True, "field": "geo", "unchecked": "geo: PointField cannot be filled"},
        {"op": "select", "ok": True, "elapsed_ms": 3},
    ]
    payload = {"models": [{"model": "shop.Item", "table": "shop_item", "checks": checks}]}
    exercises = parse_exercise(payload)
    assert exercises == [ModelExercise("shop.Item", "shop_item", exercises[0].checks)]
    assert [c.op for c in exercises[0].failures] == ["insert", "insert"]
    assert exercise_failures(exercises) == ["shop.Item: insert sku -> null value in column"]
    assert unchecked_fields(exercises) == ["shop.Item: geo: PointField cannot be filled"]


def test_a_duplicate_rows_check_is_found_again_whatever_field_the_database_named() -> None:
    refused = ExerciseCheck("insert", False, field="sku", error="duplicate key", value="duplicate")
    tried = ExerciseCheck("insert", True, value="duplicate")
    assert refused.key == tried.key == ("insert", None, "duplicate") and refused.boundary
    assert ExerciseCheck("insert", True, field="sku", value="fresh").key == ("insert", "sku", "fresh")
