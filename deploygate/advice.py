"""The fix for an incompatible plan: per operation, the safe way to make the same change (pure).

Only what a reviewer has to do: an operation gets a line when its change is one the
blue-green overlap sees and its safe form is not there yet. An operation that runs no SQL
(a choices-only AlterField, a Meta option) changes nothing either release meets; a
RunPython with a reverse function (``migrations.RunPython.noop`` included) needs none; a
column added nullable is already the expand step. Also the recipe for a statement that
failed on production's rows, by its SQLSTATE.
"""

from __future__ import annotations

import re

from deploygate.migrations import CHECK_VIOLATION, FOREIGN_KEY_VIOLATION, NOT_NULL_VIOLATION, UNIQUE_VIOLATION, VALUE_TOO_LONG
from deploygate.probe import MigrationPlan, OperationChange, PlanStep

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
# Operations whose advice is about a reverse function, not the schema: they run Python, never SQL.
REVERSE_ADVISED = frozenset({"RunPython"})
# Operations whose whole point is a change without SQL (the state the ORM sees): advised when SQL-free too.
STATE_ONLY = frozenset({"SeparateDatabaseAndState"})

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


def _is_header(sql: list[str], at: int) -> bool:
    return at + 2 < len(sql) and sql[at] == "--" and sql[at + 1].startswith("-- ") and sql[at + 2] == "--"


def operation_sql(step: PlanStep) -> list[list[str]] | None:
    """Per operation of ``step``, the statements it runs, read from the step's collected SQL: Django writes
    ``--`` / ``-- <operation>`` / ``--`` before each operation's statements (comments, "-- (no-op)" among
    them, are left out). None when the SQL does not split into one part per operation (the probe could not
    render it, or facts from before it was kept): then nothing is known about any operation's SQL."""
    parts: list[list[str]] = []
    at = 0
    while at < len(step.sql):
        if _is_header(step.sql, at):
            parts.append([])
            at += 3
            continue
        if not parts:
            return None
        if step.sql[at].strip() and not step.sql[at].lstrip().startswith("--"):
            parts[-1].append(step.sql[at])
        at += 1
    return parts if len(parts) == len(step.operations) else None


def operation_advice(op_type: str, change: OperationChange | None, sql: list[str] | None, step_reversible: bool) -> list[str]:
    """The fix for one operation (``sql``: its statements, None when unknown), empty when nothing is missing.

    A RunPython is advised only without a reverse function (its own fact, else the
    migration's); an operation that runs no SQL, only when changing state without SQL is
    its point; an AddField whose column takes NULL is already the safe form.
    """
    if op_type in REVERSE_ADVISED:
        reversible = change.reversible if change is not None and change.reversible is not None else step_reversible
        return [] if reversible else [ADVICE[op_type]]
    if sql is not None and not sql and op_type not in STATE_ONLY:
        return []
    kinds = change_kinds(change) if change is not None else []
    if kinds:
        return [KIND_ADVICE[kind] for kind in kinds]
    if op_type == "AddField" and change is not None and change.after is not None and change.after.null:
        return []
    return [ADVICE.get(op_type, GENERIC_ADVICE)]


def advice_for(plan: MigrationPlan) -> list[str]:
    """One line per distinct operation of the plan that needs a safer form: by the kind of change it makes
    (DROP NOT NULL, uniqueness, a length or type change...), else by its operation type; nothing for an
    operation that lacks nothing (see ``operation_advice``)."""
    lines = []
    for step in plan.steps:
        count = len(step.operations)
        changes = step.changes if len(step.changes) == count else [None] * count
        statements = operation_sql(step) or [None] * count
        for op_type, description, change, sql in zip(step.operation_types, step.operations, changes, statements, strict=False):
            for hint in operation_advice(op_type, change, sql, step.reversible):
                line = f"{step.label} ({description}): {hint}"
                if line not in lines:
                    lines.append(line)
    return lines
