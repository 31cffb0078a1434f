"""The compatibility verdict: which release breaks on which schema during the blue-green overlap, and the fix.

Input is what the probe saw on the rehearsal copy: the production release's models
(historical, from the migration graph) on the migrated schema, and the candidate's
models on the schema before migrating, each writing fresh values and the values its own
models allow at their limits. Output is grouped per model and field with the value
class that broke and the database's own message, plus the way to make that kind of
change safely. A migration that cannot run on production's rows is reported as that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from deploygate import differential
from deploygate.migrations import (
    CHECK_VIOLATION,
    FOREIGN_KEY_VIOLATION,
    NOT_NULL_VIOLATION,
    UNIQUE_VIOLATION,
    VALUE_TOO_LONG,
    SchemaChanges,
    announced_changes,
)
from deploygate.probe import MigrationFailure, MigrationPlan, ModelExercise, OperationChange, unchecked_fields
from deploygate.rehearsal import Rehearsal

PRODUCTION_ON_NEW = "production release on the migrated schema"
CANDIDATE_ON_OLD = "candidate on the schema before migrating"
CANDIDATE_ON_NEW = "candidate on the migrated schema"

# Per operation: why it breaks the overlap and the safe way to make the same change.
ADVICE = {
    "RenameField": "keep the column: make the rename state-only (SeparateDatabaseAndState: AlterField with "
    "db_column=<old column>, then RenameField); the ORM gets the new name, the database keeps the old one",
    "RenameModel": "keep the table: make the rename state-only (SeparateDatabaseAndState: AlterModelTable with "
    "db_table=<old table>, then RenameModel)",
    "RemoveField": "expand/contract: first deploy a release that no longer reads or writes the field, "
    "then drop the column in a later release",
    "DeleteModel": "expand/contract: first deploy a release that no longer uses the model, then drop the table later",
    "AddField": "add the column nullable or with db_default (a many-to-many needs nothing: it is a new table), "
    "so rows inserted by the old release stay valid; tighten to NOT NULL in a later release",
    "AlterField": "expand/contract: add a new column, write both, backfill, switch reads, drop the old column later",
    "RunPython": "give RunPython a reverse function (or migrations.RunPython.noop when nothing needs undoing)",
    "SeparateDatabaseAndState": "check its state_operations against its database_operations: a state-only rename "
    "needs db_column / db_table naming what the database still has",
}
GENERIC_ADVICE = "expand/contract: split the change so each release works on both the schema before and after it"

# Per kind of change an operation makes to an existing column or model (see ``change_kinds``).
KIND_ADVICE = {
    "drop_not_null": "schema first: ship the DROP NOT NULL alone, in a release whose code still writes a value; "
    "code that writes NULL comes with the next release (the release serving now never writes NULL, so it "
    "works on either schema)",
    "set_not_null": "backfill before constraining: first a release whose code always writes the column (default "
    "or db_default) with a data migration filling the NULL rows, then SET NOT NULL in a later release (on "
    "Postgres: CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL: no long ACCESS "
    "EXCLUSIVE scan); or give the column a db_default so writers that omit it stay valid",
    "add_unique": "code first: a release whose code already refuses duplicates (and a data migration fixing "
    "existing ones), then the constraint in a later release (on Postgres a unique index built CONCURRENTLY, "
    "then the constraint using it); the release serving now may still write duplicates the new schema rejects",
    "drop_unique": "schema first: drop the constraint in a release whose code still writes unique values; "
    "code that writes duplicates comes with the next release",
    "widen": "schema first: widen the column in a release whose code still writes at most the old length; "
    "code that writes longer values comes with the next release",
    "shrink": "code first: a release whose code caps values at the new length (max_length and a data migration "
    "shortening longer values), then shrink the column in a later release",
    "type_change": ADVICE["AlterField"],
}
# Per SQLSTATE of a statement that failed on production's rows: the safe way to make the change.
FAILURE_RECIPES = {
    NOT_NULL_VIOLATION: KIND_ADVICE["set_not_null"],
    UNIQUE_VIOLATION: "deduplicate before constraining: " + KIND_ADVICE["add_unique"],
    VALUE_TOO_LONG: KIND_ADVICE["shrink"],
    CHECK_VIOLATION: "fix the rows first (a data migration in an earlier release), or add the constraint "
    "NOT VALID and VALIDATE it once they are fixed",
    FOREIGN_KEY_VIOLATION: "repair or remove the rows pointing at missing rows first, or add the foreign key "
    "NOT VALID and VALIDATE it after",
}
GENERIC_RECIPE = "fix the migration (or, in an earlier release, the data it meets) and rehearse again"
MODELS_DISAGREE_ADVICE = (
    "the candidate's models differ from its migrations: run `manage.py makemigrations` and ship the migration "
    "(`makemigrations --check` in CI catches this)"
)
_VARCHAR = re.compile(r"^(?:varchar|character varying)\((\d+)\)$")


@dataclass(frozen=True)
class Incompatibility:
    """One model (or one of its fields) that fails, with the operations and value classes that failed and why."""

    direction: str
    model: str
    table: str
    field: str | None
    operations: tuple[str, ...]
    error: str
    values: tuple[str, ...] = ()  # boundary value classes that broke ("max_length=120", "duplicate", ...)

    def describe(self) -> str:
        what = f"{self.model}.{self.field}" if self.field else f"{self.model} (table {self.table})"
        written = f" with {', '.join(self.values)}" if self.values else ""
        return f"{what}: {', '.join(self.operations)}{written} fail: {self.error}"


def judged(
    exercises: list[ModelExercise], reference: list[ModelExercise] | None = None, *, own_schema: bool = False
) -> differential.Judged:
    """The failures that count and the coverage gaps: ``exercises`` on the other schema against
    ``reference`` (the same release on its own), or with ``own_schema`` on its own schema."""
    return differential.on_own_schema(exercises) if own_schema else differential.on_other_schema(exercises, reference)


def group(found: differential.Judged, direction: str) -> list[Incompatibility]:
    """Counted failures grouped by model: a model whose select fails is one entry, else one per field and error."""
    items = []
    for exercise, failures in found.failures:
        select = next((c for c in exercise.checks if c.op == "select"), None)
        if select is not None and not select.ok and select in failures:
            ops = tuple(sorted({c.op for c in failures}))
            items.append(Incompatibility(direction, exercise.model, exercise.table, None, ops, select.error or ""))
            continue
        by_field: dict[tuple[str | None, str], tuple[set[str], set[str]]] = {}
        for check in failures:
            ops, values = by_field.setdefault((check.field, check.error or ""), (set(), set()))
            ops.add(check.op)
            if check.boundary:
                values.add(check.value)
        for (name, error), (ops, values) in sorted(by_field.items(), key=lambda item: (item[0][0] or "", item[0][1])):
            items.append(
                Incompatibility(direction, exercise.model, exercise.table, name, tuple(sorted(ops)), error, tuple(sorted(values)))
            )
    return items


def incompatibilities(
    exercises: list[ModelExercise],
    direction: str,
    reference: list[ModelExercise] | None = None,
    *,
    own_schema: bool = False,
) -> list[Incompatibility]:
    """The failures that count (see ``deploygate.differential``), grouped by model and field."""
    return group(judged(exercises, reference, own_schema=own_schema), direction)


@dataclass
class Verdict:
    """Compatible: plain blue-green is safe. Otherwise the items say what breaks and ``advice`` how to fix it.

    ``migration_failure``: the migration itself fails on production's rows, so there is no
    new schema to judge; ``unchecked``: fields the probe could not fill, and ``gaps``:
    operations a release cannot do even on its own schema (both never a failure);
    ``scope``: which models were exercised.
    """

    production_on_new: list[Incompatibility] = field(default_factory=list)
    candidate_on_old: list[Incompatibility] = field(default_factory=list)
    candidate_on_new: list[Incompatibility] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    migration_failure: MigrationFailure | None = None
    unchecked: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    scope: str = ""

    @property
    def overlap_breaks(self) -> bool:
        return bool(self.production_on_new or self.candidate_on_old or self.candidate_on_new)

    @property
    def compatible(self) -> bool:
        return not (self.overlap_breaks or self.migration_failure)

    def explain(self, plan: MigrationPlan) -> str:
        lines = []
        if self.migration_failure is not None:
            lines.append(f"the migration cannot run on production's data: {explain_failure(self.migration_failure)}")
        elif not self.overlap_breaks:
            lines.append("compatible: the release serving now and the candidate both work on either schema; blue-green as normal")
        if self.overlap_breaks:
            lines += self._overlap(plan)
        if self.scope:
            lines.append(f"  exercised: {self.scope}")
        if self.gaps:
            lines.append(f"  {len(self.gaps)} operations not exercisable (they fail on the release's own schema too: never a failure):")
            lines += [f"    - {line}" for line in self.gaps]
        if self.unchecked:
            lines.append("  not checked (never a failure; each with the reason):")
            lines += [f"    - {line}" for line in self.unchecked]
        return "\n".join(lines)

    def _overlap(self, plan: MigrationPlan) -> list[str]:
        lines = ["incompatible: requests will fail while both schemas and releases overlap"]
        if self.production_on_new:
            lines.append(f"  once {', '.join(plan.labels)} has run, until traffic switches, the release serving now fails on:")
            lines += [f"    - {item.describe()}" for item in self.production_on_new]
        if self.candidate_on_old:
            lines.append("  while the candidate runs before the migration has finished, it fails on:")
            lines += [f"    - {item.describe()}" for item in self.candidate_on_old]
        if self.candidate_on_new:
            lines.append("  the candidate fails even on the migrated schema (its models and migrations disagree):")
            lines += [f"    - {item.describe()}" for item in self.candidate_on_new]
        if self.advice:
            lines.append("  fix:")
            lines += [f"    - {line}" for line in self.advice]
        lines.append("  or deploy with a maintenance hold: --accept-incompatible --reason \"...\"")
        return lines


def _varchar_length(db_type: str | None) -> int | None:
    match = _VARCHAR.match(db_type or "")
    return int(match[1]) if match else None


def change_kinds(change: OperationChange) -> list[str]:
    """The kinds of change (keys of ``KIND_ADVICE``) one operation makes to an existing column or model."""
    kinds = []
    before, after = change.before, change.after
    if before is not None and after is not None:
        if before.null != after.null:
            kinds.append("drop_not_null" if after.null else "set_not_null")
        if before.unique != after.unique:
            kinds.append("add_unique" if after.unique else "drop_unique")
        if before.db_type and after.db_type and before.db_type != after.db_type:
            old, new = _varchar_length(before.db_type), _varchar_length(after.db_type)
            kinds.append(("widen" if new > old else "shrink") if old and new else "type_change")
    if change.unique_added and "add_unique" not in kinds:
        kinds.append("add_unique")
    if change.unique_removed and "drop_unique" not in kinds:
        kinds.append("drop_unique")
    return kinds


def advice_for(plan: MigrationPlan) -> list[str]:
    """One line per distinct operation of the plan that needs a safer form: by the kind of change it makes
    (DROP NOT NULL, uniqueness, a length or type change...), else by its operation type."""
    lines = []
    for step in plan.steps:
        changes = step.changes if len(step.changes) == len(step.operations) else [None] * len(step.operations)
        for op_type, description, change in zip(step.operation_types, step.operations, changes):
            kinds = change_kinds(change) if change is not None else []
            hints = [KIND_ADVICE[kind] for kind in kinds] or [ADVICE.get(op_type, GENERIC_ADVICE)]
            for hint in hints:
                line = f"{step.label} ({description}): {hint}"
                if line not in lines:
                    lines.append(line)
    return lines


def _shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_failure(failure: MigrationFailure) -> str:
    """One line, ``<migration> failed at <statement>: ...``: where, how many rows are in the way, the
    database's words, and the safe recipe."""
    where = ".".join(part for part in (failure.table, failure.column) if part)
    if failure.constraint:
        where = f"{where} (constraint {failure.constraint})" if where else f"constraint {failure.constraint}"
    count = failure.offending_rows
    rows = "" if count is None else f"{count} rows violate it" if count != 1 else "1 row violates it"
    statement = f"`{_shorten(failure.statement)}`" if failure.statement else "its code"
    facts = "; ".join(part for part in (f"on {where}" if where else "", rows) if part)
    recipe = FAILURE_RECIPES.get(failure.sqlstate or "", GENERIC_RECIPE)
    return f"{failure.migration} failed at {statement}{': ' + facts if facts else ''} ({failure.message}); fix: {recipe}"


_MISSING = re.compile(
    r'column (?:"?(?P<table1>\w+)"?\.)?"?(?P<column1>\w+)"? does not exist'
    r'|column "(?P<column2>\w+)" of relation "(?P<table2>\w+)" does not exist'
    r'|relation "(?P<table3>\w+)" does not exist'
)


def explained_by_plan(error: str, announced: SchemaChanges) -> bool:
    """Whether an error is only the candidate asking for a column or table its own plan creates or renames.

    deploygate migrates before it routes any request to the candidate, so these cannot
    reach a user; anything else the candidate hits on the old schema can.
    """
    match = _MISSING.search(error)
    if not match:
        return False
    column = match["column1"] or match["column2"]
    if column:
        return column in announced.added_columns or column in {new for _, new in announced.renamed_columns}
    table = f"public.{match['table3']}"
    return table in announced.created_tables or table in {new for _, new in announced.renamed_tables}


def migration_failure(rehearsal: Rehearsal) -> MigrationFailure | None:
    """Why the plan did not apply on the copy: the failed statement, or at least the migration and its error."""
    if rehearsal.migrate_failure is not None or rehearsal.migrate_error is None:
        return rehearsal.migrate_failure
    failed = next((m.label for m in rehearsal.applied if m.error), "the plan")
    return MigrationFailure(migration=failed, message=rehearsal.migrate_error)


def judge(rehearsal: Rehearsal) -> Verdict:
    """The verdict of one rehearsal: both directions, the candidate's own failures, the gaps, and the fix.

    Each release on the other schema is judged against the same operations, with the same
    values, on its own schema (``deploygate.differential``). When the plan fails on the copy,
    the schema never changed: only the candidate on the old schema is judged, and the
    failure itself is the verdict's first line.
    """
    announced = announced_changes(sql for step in rehearsal.plan.steps for sql in step.sql)
    failure = migration_failure(rehearsal)
    migrated = failure is None
    on_old = judged(rehearsal.candidate_on_old_schema, rehearsal.candidate_on_new_schema if migrated else None)
    candidate_on_old = [item for item in group(on_old, CANDIDATE_ON_OLD) if not explained_by_plan(item.error, announced)]
    verdict = Verdict(candidate_on_old=candidate_on_old, migration_failure=failure, scope=rehearsal.scope_description)
    gaps = on_old.gaps
    if migrated:
        on_new = judged(rehearsal.production_on_new_schema, rehearsal.production_on_old_schema)
        own = judged(rehearsal.candidate_on_new_schema, own_schema=True)
        verdict.production_on_new = group(on_new, PRODUCTION_ON_NEW)
        verdict.candidate_on_new = group(own, CANDIDATE_ON_NEW)
        gaps = gaps + on_new.gaps + own.gaps + judged(rehearsal.production_on_old_schema, own_schema=True).gaps
    verdict.gaps = [line for line in dict.fromkeys(gaps) if not explained_by_plan(line, announced)]
    # (The candidate on the old schema may find no row to point at in a table its own plan changes.)
    verdict.unchecked = [
        line
        for line in unchecked_fields(
            rehearsal.production_on_old_schema + rehearsal.candidate_on_old_schema
            + rehearsal.production_on_new_schema + rehearsal.candidate_on_new_schema
        )
        if not explained_by_plan(line, announced)
    ]  # fmt: skip
    if verdict.overlap_breaks:
        advice = advice_for(rehearsal.plan) + ([MODELS_DISAGREE_ADVICE] if verdict.candidate_on_new else [])
        verdict.advice = advice or [GENERIC_ADVICE]
    return verdict
