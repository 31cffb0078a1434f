"""The compatibility verdict: which release breaks on which schema during the blue-green overlap, and the fix.

Input is what the probe saw on the rehearsal copy: the production release's models
(historical, from the migration graph) on the migrated schema, and the candidate's
models on the schema before migrating. Output is grouped per model and field with the
database's own message, plus the strategy that would make the change safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploygate.rehearsal import MigrationPlan, ModelExercise, Rehearsal

PRODUCTION_ON_NEW = "production release on the migrated schema"
CANDIDATE_ON_OLD = "candidate on the schema before migrating"

# Per operation: why it breaks the overlap and the safe way to make the same change.
ADVICE = {
    "RenameField": "keep the column: make the rename state-only (SeparateDatabaseAndState: AlterField with "
    "db_column=<old column>, then RenameField); the ORM gets the new name, the database keeps the old one",
    "RenameModel": "keep the table: make the rename state-only (SeparateDatabaseAndState: AlterModelTable with "
    "db_table=<old table>, then RenameModel)",
    "RemoveField": "expand/contract: first deploy a release that no longer reads or writes the field, "
    "then drop the column in a later release",
    "DeleteModel": "expand/contract: first deploy a release that no longer uses the model, then drop the table later",
    "AddField": "add the column nullable or with db_default, so rows inserted by the old release stay valid; "
    "tighten to NOT NULL in a later release",
    "AlterField": "expand/contract: add a new column, write both, backfill, switch reads, drop the old column later",
    "RunPython": "give RunPython a reverse function (or migrations.RunPython.noop when nothing needs undoing)",
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
        select = next((c for c in exercise.checks if c["op"] == "select"), None)
        if select is not None and not select["ok"]:
            ops = tuple(sorted({c["op"] for c in failures}))
            found.append(Incompatibility(direction, exercise.model, exercise.table, None, ops, select["error"]))
            continue
        by_field: dict[tuple[str | None, str], set[str]] = {}
        for check in failures:
            by_field.setdefault((check.get("field"), check["error"]), set()).add(check["op"])
        for (name, error), ops in sorted(by_field.items(), key=lambda item: (item[0][0] or "", item[0][1])):
            found.append(Incompatibility(direction, exercise.model, exercise.table, name, tuple(sorted(ops)), error))
    return found


@dataclass
class Verdict:
    """Compatible: plain blue-green is safe. Otherwise the items say what breaks and ``advice`` how to fix it."""

    production_on_new: list[Incompatibility] = field(default_factory=list)
    candidate_on_old: list[Incompatibility] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not (self.production_on_new or self.candidate_on_old)

    def explain(self, plan: MigrationPlan) -> str:
        if self.compatible:
            return "compatible: the release serving now and the candidate both work on either schema; blue-green as normal"
        lines = ["incompatible: requests will fail while both schemas and releases overlap"]
        if self.production_on_new:
            lines.append(f"  once {', '.join(plan.labels)} has run, until traffic switches, the release serving now fails on:")
            lines += [f"    - {item.describe()}" for item in self.production_on_new]
        if self.candidate_on_old:
            lines.append("  if the candidate starts before the migration, it fails on:")
            lines += [f"    - {item.describe()}" for item in self.candidate_on_old]
        lines.append("  fix:")
        lines += [f"    - {line}" for line in self.advice]
        lines.append("  or deploy with a maintenance hold: --accept-incompatible --reason \"...\"")
        return "\n".join(lines)


def advice_for(plan: MigrationPlan) -> list[str]:
    """One line per distinct operation type of the plan that needs a safer form."""
    lines = []
    for step in plan.steps:
        for op_type, description in zip(step.operation_types, step.operations):
            if op_type == "SeparateDatabaseAndState":
                continue
            hint = ADVICE.get(op_type, GENERIC_ADVICE)
            line = f"{step.label} ({description}): {hint}"
            if line not in lines:
                lines.append(line)
    return lines


def judge(rehearsal: Rehearsal) -> Verdict:
    """The verdict of one rehearsal."""
    verdict = Verdict(
        production_on_new=incompatibilities(rehearsal.production_on_new_schema, PRODUCTION_ON_NEW),
        candidate_on_old=incompatibilities(rehearsal.candidate_on_old_schema, CANDIDATE_ON_OLD),
    )
    if not verdict.compatible:
        verdict.advice = advice_for(rehearsal.plan)
    return verdict
