"""The fix an incompatible plan gets, per operation: only where SQL changes, and only what is missing (pure logic)."""

from __future__ import annotations

from deploygate import advice
from deploygate.probe import FieldFacts, MigrationPlan, OperationChange, PlanStep

NOTE_TEXT = FieldFacts("text", null=False, unique=False)
# Django's collected SQL (sqlmigrate): a header per operation, then its statements or "-- (no-op)".
ADD_UNIT_SQL = [
    "--",
    "-- Add field unit to item",
    "--",
    'ALTER TABLE "shop_item" ADD COLUMN "unit" varchar(10) DEFAULT \'pcs\' NOT NULL;',
    'ALTER TABLE "shop_item" ALTER COLUMN "unit" DROP DEFAULT;',
]
CHOICES_SQL = ["--", "-- Alter field note on item", "--", "-- (no-op)"]
RUN_PYTHON_SQL = ["--", "-- Raw Python operation", "--", "-- THIS OPERATION CANNOT BE WRITTEN AS SQL"]


def _plan(*steps: PlanStep) -> MigrationPlan:
    return MigrationPlan(steps=list(steps), applied_leaves={})


def _alter(before: FieldFacts, after: FieldFacts) -> OperationChange:
    return OperationChange("AlterField", before=before, after=after)


def test_advice_names_the_fix_per_operation() -> None:
    (line,) = advice.advice_for(_plan(PlanStep("u", "0023_rename", ["Rename field a on x to b"], ["RenameField"], True, True, [])))
    assert "db_column" in line and "SeparateDatabaseAndState" in line


def test_change_kinds_read_the_field_before_and_after() -> None:
    text = FieldFacts("varchar(100)", null=False, unique=False)
    assert advice.change_kinds(_alter(text, FieldFacts("varchar(100)", null=True, unique=False))) == ["drop_not_null"]
    assert advice.change_kinds(_alter(FieldFacts("numeric(8, 2)", True, False), FieldFacts("numeric(8, 2)", False, False))) == [
        "set_not_null"
    ]
    assert advice.change_kinds(_alter(text, FieldFacts("varchar(100)", False, True))) == ["add_unique"]
    assert advice.change_kinds(_alter(FieldFacts("varchar(32)", False, True), FieldFacts("varchar(32)", False, False))) == ["drop_unique"]
    assert advice.change_kinds(_alter(text, FieldFacts("varchar(120)", False, False))) == ["widen"]
    assert advice.change_kinds(_alter(text, FieldFacts("varchar(80)", False, False))) == ["shrink"]
    assert advice.change_kinds(_alter(FieldFacts("integer", False, False), FieldFacts("varchar(20)", False, False))) == ["type_change"]
    assert advice.change_kinds(_alter(text, FieldFacts("varchar(100)", False, False))) == []  # e.g. db_index only
    assert advice.change_kinds(OperationChange("AlterUniqueTogether", unique_added=1)) == ["add_unique"]
    assert advice.change_kinds(OperationChange("RemoveConstraint", unique_removed=1)) == ["drop_unique"]


def test_advice_fits_the_kind_of_change() -> None:
    drop_not_null = _alter(NOTE_TEXT, FieldFacts("text", True, False))
    step = PlanStep("s", "0002_x", ["Alter field note on item"], ["AlterField"], True, True, [], [drop_not_null])
    (line,) = advice.advice_for(_plan(step))
    assert advice.KIND_ADVICE["drop_not_null"] in line and "backfill" not in line
    # Without facts (an older probe, a third-party operation) the operation type decides.
    bare = PlanStep("s", "0002_x", ["Alter field note on item"], ["AlterField"], True, True, [])
    assert advice.advice_for(_plan(bare)) == [f"s.0002_x (Alter field note on item): {advice.ADVICE['AlterField']}"]


def test_the_sql_splits_by_operation_or_not_at_all() -> None:
    operations = ["Add field unit to item", "Alter field note on item", "Raw Python operation"]
    sql = ADD_UNIT_SQL + CHOICES_SQL + RUN_PYTHON_SQL
    step = PlanStep("s", "0002_x", operations, ["AddField", "AlterField", "RunPython"], True, True, sql)
    assert advice.operation_sql(step) == [ADD_UNIT_SQL[3:], [], []]
    # An older Django writes nothing at all for an operation without SQL: still one part per operation.
    older = PlanStep("s", "0002_x", ["Alter field note on item"], ["AlterField"], True, True, CHOICES_SQL[:3])
    assert advice.operation_sql(older) == [[]]
    # SQL the probe could not render, or no SQL recorded: nothing is known about any operation.
    unrendered = PlanStep("s", "0002_x", ["Alter field note on item"], ["AlterField"], True, True, ["-- SQL not renderable: boom"])
    assert advice.operation_sql(unrendered) is None
    assert advice.operation_sql(PlanStep("s", "0002_x", ["a", "b"], ["AddField", "AlterField"], True, True, ADD_UNIT_SQL)) is None


def test_a_choices_only_alter_field_runs_no_sql_and_gets_no_advice() -> None:
    choices_only = _alter(NOTE_TEXT, NOTE_TEXT)
    step = PlanStep("s", "0002_x", ["Alter field note on item"], ["AlterField"], True, True, CHOICES_SQL, [choices_only])
    assert advice.advice_for(_plan(step)) == []
    # The same operation with SQL (a type change) is advised.
    typed = _alter(FieldFacts("integer", False, False), FieldFacts("varchar(20)", False, False))
    sql = ["--", "-- Alter field note on item", "--", 'ALTER TABLE "shop_item" ALTER COLUMN "note" TYPE varchar(20);']
    (line,) = advice.advice_for(_plan(PlanStep("s", "0002_x", ["Alter field note on item"], ["AlterField"], True, True, sql, [typed])))
    assert advice.KIND_ADVICE["type_change"] in line


def test_run_python_is_told_to_get_a_reverse_only_without_one() -> None:
    def step(reversible: bool | None, step_reversible: bool) -> PlanStep:
        changes = [] if reversible is None else [OperationChange("RunPython", reversible=reversible)]
        return PlanStep("s", "0003_fill", ["Raw Python operation"], ["RunPython"], step_reversible, True, RUN_PYTHON_SQL, changes)

    # reverse_code=migrations.RunPython.noop (or any function): reversible, nothing missing.
    assert advice.advice_for(_plan(step(True, True))) == []
    (line,) = advice.advice_for(_plan(step(False, False)))
    assert line == f"s.0003_fill (Raw Python operation): {advice.ADVICE['RunPython']}"
    # Facts from an older probe: the migration's own reversibility decides.
    assert advice.advice_for(_plan(step(None, True))) == []
    assert advice.advice_for(_plan(step(None, False))) == [line]


def test_a_column_added_nullable_is_already_the_safe_form() -> None:
    nullable = OperationChange("AddField", after=FieldFacts("varchar(30)", null=True, unique=False))
    not_null = OperationChange("AddField", after=FieldFacts("varchar(10)", null=False, unique=False))
    sql = ["--", "-- Add field color to item", "--", 'ALTER TABLE "shop_item" ADD COLUMN "color" varchar(30) NULL;']
    assert advice.advice_for(_plan(PlanStep("s", "0002_x", ["Add field color to item"], ["AddField"], True, True, sql, [nullable]))) == []
    (line,) = advice.advice_for(
        _plan(PlanStep("s", "0002_x", ["Add field unit to item"], ["AddField"], True, True, ADD_UNIT_SQL, [not_null]))
    )
    assert advice.ADVICE["AddField"] in line


def test_a_state_only_operation_is_advised_though_it_runs_no_sql() -> None:
    sql = ["--", "-- Custom state/database change combination", "--", "-- (no-op)"]
    changes = [OperationChange("SeparateDatabaseAndState", reversible=True)]
    step = PlanStep("s", "0002_x", ["Custom state/database change combination"], ["SeparateDatabaseAndState"], True, True, sql, changes)
    (line,) = advice.advice_for(_plan(step))
    assert advice.ADVICE["SeparateDatabaseAndState"] in line


def test_one_missing_default_beside_sql_free_changes_gets_one_line() -> None:
    """The new user's release: a NOT NULL column without a database default, two choices-only changes and a
    data migration whose reverse is RunPython.noop: only the column is advised."""
    operations = ["Add field unit to item", "Alter field note on item", "Alter field code on item", "Raw Python operation"]
    code = FieldFacts("varchar(20)", False, False)
    changes = [
        OperationChange("AddField", after=FieldFacts("varchar(10)", null=False, unique=False), reversible=True),
        OperationChange("AlterField", before=NOTE_TEXT, after=NOTE_TEXT, reversible=True),
        OperationChange("AlterField", before=code, after=code, reversible=True),
        OperationChange("RunPython", reversible=True),
    ]
    sql = ADD_UNIT_SQL + CHOICES_SQL + ["--", "-- Alter field code on item", "--", "-- (no-op)"] + RUN_PYTHON_SQL
    step = PlanStep("s", "0002_x", operations, ["AddField", "AlterField", "AlterField", "RunPython"], True, True, sql, changes)
    assert advice.advice_for(_plan(step)) == [f"s.0002_x (Add field unit to item): {advice.ADVICE['AddField']}"]
