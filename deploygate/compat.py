"""The compatibility verdict: which release breaks on which schema during the blue-green overlap, and the fix.

Input is what the probe saw on the rehearsal copy: the production release's models
(historical, from the migration graph) on the migrated schema, and the candidate's
models on the schema before migrating. Output is grouped per model and field with the
database's own message, plus the strategy that would make the change safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from deploygate.migrations import SchemaChanges, announced_changes
from deploygate.probe import MigrationPlan, ModelExercise
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


@dataclass(frozen=True)
class Incompatibility:
    """One model (or one of its fields) that fails, with the operations that failed and why."""

    direction: str
    model: str
    table: str
    field: str | None
    operations: tuple[str, ...]
    error: str

    def describe(self) -> str:
        what = f"{self.model}.{self.field}" if self.field else f"{self.model} (table {self.table})"
        return f"{what}: {', '.join(self.operations)} fail: {self.error}"


def incompatibilities(exercises: list[ModelExercise], direction: str) -> list[Incompatibility]:
    """Failures grouped by model: a model whose every query fails is one entry, else one per field."""
    found = []
    for exercise in exercises:
        failures = exercise.failures
        if not failures:
            continue
        select = next((c for c in exercise.checks if c.op == "select"), None)
        if select is not None and not select.ok:
            ops = tuple(sorted({c.op for c in failures}))
            found.append(Incompatibility(direction, exercise.model, exercise.table, None, ops, select.error or ""))
            continue
        by_field: dict[tuple[str | None, str], set[str]] = {}
        for check in failures:
            by_field.setdefault((check.field, check.error or ""), set()).add(check.op)
        for (name, error), ops in sorted(by_field.items(), key=lambda item: (item[0][0] or "", item[0][1])):
            found.append(Incompatibility(direction, exercise.model, exercise.table, name, tuple(sorted(ops)), error))
    return found


@dataclass
class Verdict:
    """Compatible: plain blue-green is safe. Otherwise the items say what breaks and ``advice`` how to fix it."""

    production_on_new: list[Incompatibility] = field(default_factory=list)
    candidate_on_old: list[Incompatibility] = field(default_factory=list)
    candidate_on_new: list[Incompatibility] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not (self.production_on_new or self.candidate_on_old or self.candidate_on_new)

    def explain(self, plan: MigrationPlan) -> str:
        if self.compatible:
            return "compatible: the release serving now and the candidate both work on either schema; blue-green as normal"
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
        return "\n".join(lines)


def advice_for(plan: MigrationPlan) -> list[str]:
    """One line per distinct operation type of the plan that needs a safer form."""
    lines = []
    for step in plan.steps:
        for op_type, description in zip(step.operation_types, step.operations):
            hint = ADVICE.get(op_type, GENERIC_ADVICE)
            line = f"{step.label} ({description}): {hint}"
            if line not in lines:
                lines.append(line)
    return lines


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


def judge(rehearsal: Rehearsal) -> Verdict:
    """The verdict of one rehearsal: both directions, the candidate's own failures, and the fix."""
    announced = announced_changes(sql for step in rehearsal.plan.steps for sql in step.sql)
    candidate_on_old = [
        item
        for item in incompatibilities(rehearsal.candidate_on_old_schema, CANDIDATE_ON_OLD)
        if not explained_by_plan(item.error, announced)
    ]
    verdict = Verdict(
        production_on_new=incompatibilities(rehearsal.production_on_new_schema, PRODUCTION_ON_NEW),
        candidate_on_old=candidate_on_old,
        candidate_on_new=incompatibilities(rehearsal.candidate_on_new_schema, CANDIDATE_ON_NEW),
    )
    if not verdict.compatible:
        verdict.advice = advice_for(rehearsal.plan) or [GENERIC_ADVICE]
    return verdict
