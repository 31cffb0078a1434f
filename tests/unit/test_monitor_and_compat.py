"""The compatibility verdict's rules (pure logic); the monitoring window's are in test_window_judge."""

from __future__ import annotations

from deploygate import advice, compat
from deploygate.lock import lock_key
from deploygate.migrations import announced_changes
from deploygate.platform.images import Image
from deploygate.probe import (
    AppliedMigration,
    ExerciseCheck,
    MigrationFailure,
    MigrationPlan,
    ModelExercise,
    PlanStep,
)
from deploygate.rehearsal import Rehearsal


def test_errors_on_what_the_plan_creates_are_discounted() -> None:
    announced = announced_changes(['ALTER TABLE "t" ADD COLUMN "c" int NULL;', 'CREATE TABLE "n" ("id" int);'])
    assert compat.explained_by_plan("ProgrammingError: column t.c does not exist", announced)
    assert compat.explained_by_plan('ProgrammingError: relation "n" does not exist', announced)
    assert not compat.explained_by_plan("ProgrammingError: column t.other does not exist", announced)
    assert not compat.explained_by_plan('IntegrityError: null value in column "x"', announced)


def test_incompatibilities_group_by_model_then_field() -> None:
    whole = ModelExercise(
        "a.Gone",
        "a_gone",
        [
            ExerciseCheck(op="select", ok=False, error='relation "a_gone" does not exist', sqlstate="42P01"),
            ExerciseCheck(op="filter", field="x", ok=False, error='relation "a_gone" does not exist', sqlstate="42P01"),
        ],
    )
    partial = ModelExercise(
        "a.Link",
        "a_link",
        [
            ExerciseCheck(op="select", ok=True),
            ExerciseCheck(op="filter", field="member", ok=False, error="column a_link.member_id does not exist", sqlstate="42703"),
            ExerciseCheck(op="insert", ok=False, error="column a_link.member_id does not exist", sqlstate="42703"),
        ],
    )
    # No run on its own schema to compare with: the schema errors count.
    items = compat.incompatibilities([whole, partial], compat.PRODUCTION_ON_NEW)
    assert [(i.model, i.field, i.operations) for i in items] == [
        ("a.Gone", None, ("filter", "select")),
        ("a.Link", None, ("insert",)),
        ("a.Link", "member", ("filter",)),
    ]


def _item(*checks: ExerciseCheck) -> list[ModelExercise]:
    return [ModelExercise("shop.Item", "shop_item", [ExerciseCheck(op="select", ok=True), *checks])]


def test_boundary_values_are_judged_against_the_release_on_its_own_schema() -> None:
    too_long = ExerciseCheck(
        op="insert",
        field="name",
        value="max_length=100",
        ok=False,
        error="DataError: value too long for type character varying(80)",
        sqlstate="22001",
    )
    (item,) = compat.incompatibilities(_item(too_long), compat.PRODUCTION_ON_NEW, _item())
    assert item.describe() == "shop.Item.name: insert with max_length=100 fail: DataError: value too long for type character varying(80)"
    # The same value refused on the release's own schema too is the release's own limit.
    refused_anyway = ExerciseCheck(op="insert", field="q", value="min=-2147483648", ok=False, error="check", sqlstate="23514")
    assert compat.incompatibilities(_item(refused_anyway), compat.PRODUCTION_ON_NEW, _item(refused_anyway)) == []
    # On its own schema, a CHECK or unique constraint of its own is its limit; a column shorter than the model says is not.
    assert compat.incompatibilities(_item(refused_anyway), compat.CANDIDATE_ON_NEW, own_schema=True) == []
    assert compat.incompatibilities(_item(too_long), compat.CANDIDATE_ON_NEW, own_schema=True)
    # A fresh row refused by a NOT NULL the model does not declare, on its own schema too: still counted.
    fresh = ExerciseCheck(op="insert", value="fresh", ok=False, error="null value in column", sqlstate="23502")
    assert compat.incompatibilities(_item(fresh), compat.PRODUCTION_ON_NEW, _item(fresh))


def _rehearsal(
    *, failure: MigrationFailure | None, candidate_on_new: list[ModelExercise], candidate_on_old: list[ModelExercise] | None = None
) -> Rehearsal:
    sql = ['ALTER TABLE "shop_item" ADD COLUMN "stock" integer NULL;']
    plan = MigrationPlan(
        steps=[PlanStep("s", "0002_x", ["Alter field price on item"], ["AlterField"], True, True, sql)],
        applied_leaves={"s": "0001_initial"},
    )
    applied = [AppliedMigration("s", "0002_x", "forwards", 0.1, 1, {}, failure.message if failure else None)]
    return Rehearsal(
        candidate=Image(tag="t", id="sha256:0", built=False),
        plan=plan,
        before={},
        candidate_on_old_schema=candidate_on_old or _item(),
        applied=applied,
        migrate_error=failure.message if failure else None,
        after={},
        candidate_on_new_schema=candidate_on_new,
        production_on_new_schema=_item(),
        production_on_old_schema=_item(),
        migrate_failure=failure,
    )


def test_a_migration_failing_on_rows_is_the_verdict_not_the_candidate() -> None:
    failure = MigrationFailure(
        "s.0002_x",
        'IntegrityError: column "price" of relation "shop_item" contains null values',
        statement='ALTER TABLE "shop_item" ALTER COLUMN "price" SET NOT NULL',
        sqlstate="23502",
        table="shop_item",
        column="price",
        offending_rows=6,
    )
    # The candidate "fails" on a schema that never migrated: not its models' fault.
    missing = ExerciseCheck(op="insert", value="fresh", ok=False, error="null value in column", sqlstate="23502")
    verdict = compat.judge(_rehearsal(failure=failure, candidate_on_new=_item(missing)))
    assert not verdict.compatible and not verdict.candidate_on_new
    (line,) = verdict.explain(MigrationPlan(steps=[], applied_leaves={})).splitlines()
    assert line == (
        "the migration cannot run on production's data: s.0002_x failed at "
        '`ALTER TABLE "shop_item" ALTER COLUMN "price" SET NOT NULL`: on shop_item.price; 6 rows violate it '
        f'(IntegrityError: column "price" of relation "shop_item" contains null values); fix: {advice.KIND_ADVICE["set_not_null"]}'
    )
    # Migrated, the same failure is the candidate's models disagreeing with its migrations.
    verdict = compat.judge(_rehearsal(failure=None, candidate_on_new=_item(missing)))
    assert verdict.candidate_on_new and advice.MODELS_DISAGREE_ADVICE in verdict.advice


def test_unchecked_fields_are_listed_never_failed() -> None:
    unfillable = ExerciseCheck(op="fill", field="location", ok=True, unchecked="location: no value for a PointField (column type point)")
    rehearsed = _rehearsal(failure=None, candidate_on_new=_item(unfillable))
    verdict = compat.judge(rehearsed)
    assert verdict.compatible and verdict.unchecked == ["shop.Item: location: no value for a PointField (column type point)"]
    assert "shop.Item: location: no value" in verdict.explain(rehearsed.plan)
    # Before migrating, a row to point at may be unreadable only for a column the plan adds: not worth a line.
    waiting = ExerciseCheck(
        op="insert",
        value="fresh",
        ok=True,
        unchecked="item: nothing to point at: shop.Item cannot be read (column shop_item.stock does not exist)",
    )
    assert compat.judge(_rehearsal(failure=None, candidate_on_new=_item(), candidate_on_old=_item(waiting))).unchecked == []


def test_lock_key_is_stable_and_per_project() -> None:
    assert lock_key("a") == lock_key("a") != lock_key("b")
    assert -(2**63) <= lock_key("a") < 2**63
