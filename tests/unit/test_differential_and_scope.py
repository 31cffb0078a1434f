"""Differential verdicts (what counts, what is a coverage gap) and the exercise's scope from a plan (pure logic)."""

from __future__ import annotations

from deploygate import compat, differential, scope
from deploygate.platform.images import Image
from deploygate.probe import AppliedMigration, ExerciseCheck, MigrationPlan, ModelExercise, OperationChange, PlanStep
from deploygate.rehearsal import Rehearsal

OK_SELECT = ExerciseCheck(op="select", ok=True)


def _model(*checks: ExerciseCheck, model: str = "shop.Item", table: str = "shop_item") -> ModelExercise:
    return ModelExercise(model, table, [OK_SELECT, *checks])


def _ok(check: ExerciseCheck) -> ExerciseCheck:
    return ExerciseCheck(op=check.op, field=check.field, value=check.value, ok=True)


# What a large app's own model code does to the probe's rows, whatever the schema.
APP_CODE_ERRORS = [
    ExerciseCheck(op="insert", value="fresh", ok=False, error="AttributeError: 'NoneType' object has no attribute '_base_manager'"),
    ExerciseCheck(op="update", ok=False, error="RecursionError: maximum recursion depth exceeded"),
    ExerciseCheck(op="filter", field="data", ok=False, error="ProgrammingError: cannot adapt type 'dict' using placeholder '%t'"),
    ExerciseCheck(
        op="insert", value="duplicate", ok=False, error="IntegrityError: duplicate key value", sqlstate="23505", table="shop_profile"
    ),
    ExerciseCheck(op="insert", field="level", value="max=32767", ok=False, error="ValueError: SITE_URL is not set"),
    ExerciseCheck(op="insert", field="q", value="min=0", ok=False, error="IntegrityError: check", sqlstate="23514", table="shop_item"),
    ExerciseCheck(op="delete", ok=False, error="IntegrityError: null value in column", sqlstate="23502", table="shop_audit"),
]
RENAMED_AWAY = ExerciseCheck(op="filter", field="code", ok=False, error="column shop_item.code does not exist", sqlstate="42703")


def test_what_fails_on_its_own_schema_too_is_a_gap_never_a_failure() -> None:
    other = _model(*APP_CODE_ERRORS)
    found = differential.on_other_schema([other], [_model(*APP_CODE_ERRORS)])
    assert found.failures == [] and len(found.gaps) == len(APP_CODE_ERRORS)
    assert all(line.startswith("not exercisable: shop.Item: ") for line in found.gaps)
    assert "not exercisable: shop.Item: update: RecursionError: maximum recursion depth exceeded" in found.gaps
    # The same on its own schema: none of them says the schema lacks what the model names.
    own = differential.on_own_schema([other])
    assert own.failures == [] and own.gaps == found.gaps


def test_what_works_on_its_own_schema_and_fails_on_the_other_counts() -> None:
    own = _model(*(_ok(check) for check in APP_CODE_ERRORS), _ok(RENAMED_AWAY))
    found = differential.on_other_schema([_model(*APP_CODE_ERRORS, RENAMED_AWAY)], [own])
    ((model, counted),) = found.failures
    assert model.model == "shop.Item" and len(counted) == len(APP_CODE_ERRORS) + 1 and found.gaps == []


def test_a_schema_error_on_its_own_schema_fails_there_and_still_counts_on_the_other() -> None:
    # ignored_migration: the model names a column no migration creates; it breaks on both schemas.
    missing = ExerciseCheck(op="select", ok=False, error="column shop_item.color does not exist", sqlstate="42703")
    broken = ModelExercise("shop.Item", "shop_item", [missing])
    assert differential.on_own_schema([broken]).failed == ["shop.Item: select -> column shop_item.color does not exist"]
    assert differential.on_other_schema([broken], [broken]).failed
    # A NOT NULL on another table (a row a signal wrote) is the app's code; on the model's own table, a disagreement.
    signal_row = ExerciseCheck(op="insert", value="fresh", ok=False, error="null value", sqlstate="23502", table="shop_audit")
    own_row = ExerciseCheck(op="insert", value="fresh", ok=False, error="null value", sqlstate="23502", table="shop_item")
    assert not differential.schema_error(signal_row, "shop_item") and differential.schema_error(own_row, "public.shop_item")


def test_without_a_run_on_its_own_schema_only_schema_errors_count() -> None:
    # The plan failed: the candidate's own schema never existed.
    found = differential.on_other_schema([_model(*APP_CODE_ERRORS, RENAMED_AWAY)], None)
    assert found.failed == ["shop.Item: filter code -> column shop_item.code does not exist"]
    assert len(found.gaps) == len(APP_CODE_ERRORS) and all("(not tried on its own schema)" in g for g in found.gaps)
    # An operation its own run could not even try (unchecked) is no proof that it works there.
    unchecked = ExerciseCheck(op="insert", value="fresh", ok=True, unchecked="member: nothing to point at")
    app_error = APP_CODE_ERRORS[0]
    assert differential.on_other_schema([_model(app_error)], [_model(unchecked)]).failures == []


def _rehearsal(plan: MigrationPlan, **exercises: list[ModelExercise]) -> Rehearsal:
    applied = [AppliedMigration(step.app, step.name, "forwards", 0.1, 1, {}, None) for step in plan.steps]
    return Rehearsal(
        candidate=Image(tag="t", id="sha256:0", built=False),
        plan=plan,
        before={},
        applied=applied,
        migrate_error=None,
        after={},
        candidate_on_old_schema=exercises.get("candidate_on_old", []),
        candidate_on_new_schema=exercises.get("candidate_on_new", []),
        production_on_new_schema=exercises.get("production_on_new", []),
        production_on_old_schema=exercises.get("production_on_old", []),
    )


def test_the_verdict_lists_gaps_and_stays_compatible() -> None:
    plan = MigrationPlan(steps=[PlanStep("shop", "0002_x", ["Add index"], ["AddIndex"], True, True, [])], applied_leaves={})
    same = _model(*APP_CODE_ERRORS)
    verdict = compat.judge(
        _rehearsal(plan, candidate_on_old=[same], candidate_on_new=[same], production_on_old=[same], production_on_new=[same])
    )
    assert verdict.compatible and len(verdict.gaps) == len(APP_CODE_ERRORS)
    explained = verdict.explain(plan)
    assert f"{len(APP_CODE_ERRORS)} operations not exercisable" in explained and "RecursionError" in explained
    # A plain rename still stops the deploy: the release serving now selects the old column name.
    renamed = compat.judge(_rehearsal(plan, production_on_old=[_model(_ok(RENAMED_AWAY))], production_on_new=[_model(RENAMED_AWAY)]))
    assert not renamed.compatible and [i.field for i in renamed.production_on_new] == ["code"]


def _step(sql: list[str], types: list[str] | None = None, app: str = "shop", **extra) -> PlanStep:
    return PlanStep(app, "0002_x", ["op"] * len(types or ["X"]), types or ["X"], True, True, sql, **extra)


def _scope(*steps: PlanStep, unmigrated: list[str] | None = None) -> scope.Scope:
    return scope.changed_by(MigrationPlan(steps=list(steps), applied_leaves={}, unmigrated_tables=unmigrated or []))


def test_an_index_only_or_choices_only_plan_changes_no_table() -> None:
    rebuilt = _step(
        ['DROP INDEX IF EXISTS "shop_item_name_idx";', 'CREATE INDEX "shop_item_name_idx" ON "shop_item" ("name", "code");'],
        ["RemoveIndex", "AddIndex"],
    )
    like = _step(['CREATE INDEX "x_like" ON "shop_item" ("name" varchar_pattern_ops);', 'ALTER INDEX "a" RENAME TO "b";'])
    choices = _step([], ["AlterField"])
    found = _scope(rebuilt, like, choices)
    assert found.empty and scope.probe_scope(MigrationPlan([rebuilt], {}), scope.CHANGED) == {"tables": [], "apps": []}
    assert found.describe() == "nothing (no table or column changes)"
    assert scope.probe_scope(MigrationPlan([rebuilt], {}), scope.ALL) is None


def test_tables_come_from_schema_and_data_changes() -> None:
    renames = _step(
        [
            'ALTER TABLE "unified_db_personlink" RENAME COLUMN "fahanie_cares_member_id" TO "bm_parliament_member_id";',
            'ALTER TABLE "members_fahaniecaresmember" RENAME TO "members_bmparliamentmember";',
        ]
    )
    backfill = _step(
        ['UPDATE "shop_item" SET "price" = 0 WHERE "price" IS NULL; ALTER TABLE "shop_item" ALTER COLUMN "price" SET NOT NULL;']
    )
    unique = _step(['CREATE UNIQUE INDEX "u" ON "shop_tag" ("name") WHERE "active";'])
    raw = _step(["update shop_note set body = '' where body is null"], ["RunSQL"])
    found = _scope(renames, backfill, unique, raw, unmigrated=["public.shop_color"])
    assert (
        found.tables
        == {
            "unified_db_personlink",
            "members_fahaniecaresmember",
            "members_bmparliamentmember",
            "shop_item",
            "shop_tag",
            "shop_note",
            "shop_color",
        }
        and found.apps == frozenset()
    )


def test_what_sql_does_not_show_brings_in_the_app_or_the_state_only_models() -> None:
    python = _step(
        ["-- MIGRATION NOW PERFORMS OPERATION THAT CANNOT BE WRITTEN AS SQL:", "-- Raw Python operation"], ["RunPython"], app="members"
    )
    unreadable = _step(["SELECT backfill_everything();"], ["RunSQL"], app="ledger")
    state_only = _step([], ["SeparateDatabaseAndState"], state_only_tables=["shop_item"])
    dropped_unique = _step(
        ['DROP INDEX IF EXISTS "u";'], ["RemoveConstraint"], app="tags", changes=[OperationChange("RemoveConstraint", unique_removed=1)]
    )
    found = _scope(python, unreadable, state_only, dropped_unique)
    assert found.apps == {"members", "ledger", "tags"} and found.tables == {"shop_item"}
    assert found.as_spec() == {"tables": ["shop_item"], "apps": ["ledger", "members", "tags"]}


def test_a_duplicate_row_is_the_same_operation_whichever_unique_set_refused_it() -> None:
    # The probe names the field of a refused duplicate from the database's message: only on the side that refused.
    refused = ExerciseCheck(
        op="insert", field="code", value="duplicate", ok=False, error="duplicate key", sqlstate="23505", table="shop_item"
    )
    accepted = ExerciseCheck(op="insert", value="duplicate", ok=True)
    assert differential.on_other_schema([_model(refused)], [_model(accepted)]).failed == [
        "shop.Item: insert code (duplicate) -> duplicate key"
    ]


class _Item:
    """What ``exercises_to_run`` reads of a collected check: its markers."""

    def __init__(self, *marks) -> None:
        self.marks = [mark.mark for mark in marks]

    def iter_markers(self, name: str | None = None):
        return (mark for mark in self.marks if name is None or mark.name == name)


def test_only_the_exercises_of_checks_that_run_are_run() -> None:
    import pytest

    from fixtures.copy_db import exercises_to_run

    compat_check = _Item(pytest.mark.compat, pytest.mark.exercises("candidate_on_old", "production_on_new"))
    orm_check = _Item(pytest.mark.exercises("candidate_on_new"))
    skipped = _Item(pytest.mark.exercises("production_on_old"), pytest.mark.skip(reason="skipped on request: false positive"))
    assert exercises_to_run([compat_check, orm_check, skipped, _Item()]) == {"candidate_on_old", "production_on_new", "candidate_on_new"}
    assert exercises_to_run([skipped, _Item(pytest.mark.rehearsal)]) == frozenset()
    with pytest.raises(pytest.UsageError, match="unknown exercises"):
        exercises_to_run([_Item(pytest.mark.exercises("everything"))])


def test_the_deploy_tells_the_post_checks_what_its_plan_changed() -> None:
    plan = MigrationPlan(steps=[_step(['ALTER TABLE "shop_item" ADD COLUMN "stock" integer NULL;'])], applied_leaves={})
    assert scope.post_check_args(plan, scope.CHANGED) == ["--plan-scope", '{"tables": ["shop_item"], "apps": []}']
    assert scope.post_check_args(plan, scope.ALL) == [] and scope.post_check_args(None, scope.CHANGED) == []
    assert _scope(plan.steps[0]).describe() == "the models of tables shop_item, and the models whose foreign keys reach them"


def test_content_tables_are_what_the_plan_changes_its_data_migrations_apps_and_django_bookkeeping() -> None:
    """Rows are hashed for the tables the SQL names, every table of a RunPython's app, Django's bookkeeping."""
    schema = _step(['ALTER TABLE "shop_item" ADD COLUMN "stock" integer NULL;'], app_tables=["shop_item", "shop_category"])
    plan = MigrationPlan(steps=[schema], applied_leaves={})
    assert scope.content_tables(plan) == {"public.shop_item"} | scope.BOOKKEEPING_TABLES
    # A data migration: code, not SQL; its app's tables are hashed (a write elsewhere is caught by statistics).
    data = _step(["-- MIGRATION NOW PERFORMS OPERATION THAT CANNOT BE WRITTEN AS SQL:\n-- Raw Python operation"], ["RunPython"], app="blog")
    data = PlanStep(**{**data.__dict__, "app_tables": ["blog_post", "blog_post_tags"]})
    plan = MigrationPlan(steps=[schema, data], applied_leaves={})
    assert scope.content_tables(plan) == {"public.shop_item", "public.blog_post", "public.blog_post_tags"} | scope.BOOKKEEPING_TABLES
    # RunSQL we can read names its own tables, even one the operation's app does not own.
    readable = _step(["UPDATE auth_group SET name = upper(name);"], ["RunSQL"], app_tables=["shop_item"])
    assert scope.content_tables(MigrationPlan([readable], {})) == {"public.auth_group"} | scope.BOOKKEEPING_TABLES
    # A state-only rename (SeparateDatabaseAndState, db_column kept) changes no row: proven by statistics, not hashed.
    renamed = _step([], ["SeparateDatabaseAndState"], state_only_tables=["shop_item"])
    assert scope.content_tables(MigrationPlan([renamed], {})) == scope.BOOKKEEPING_TABLES
    # An index-only plan hashes nothing but the bookkeeping; the full sweep hashes every table.
    index = _step(['CREATE INDEX "i" ON "shop_item" ("name");'], ["AddIndex"])
    assert scope.content_tables(MigrationPlan([index], {})) == scope.BOOKKEEPING_TABLES
    assert scope.content_tables(MigrationPlan([index], {}), scope.ALL) is None
