"""The compatibility verdict: which release breaks on which schema during the blue-green overlap, and the fix.

Input is what the probe saw on the rehearsal copy: the production release's models
(historical, from the migration graph) on the migrated schema, and the candidate's
models on the schema before migrating, each writing fresh values and the values its own
models allow at their limits. Output is grouped per model and field with the value
class that broke and the database's own message, and those by root cause for a reader
(one NOT NULL column without a default fails every insert of its model: one finding), plus
the way to make that kind of change safely (``deploygate.advice``). A migration that
cannot run on production's rows is reported as that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from deploygate import differential
from deploygate.advice import FAILURE_RECIPES, GENERIC_ADVICE, GENERIC_RECIPE, MODELS_DISAGREE_ADVICE, advice_for
from deploygate.migrations import SchemaChanges, announced_changes
from deploygate.probe import ExerciseCheck, MigrationFailure, MigrationPlan, ModelExercise, unchecked_fields
from deploygate.rehearsal import Rehearsal

PRODUCTION_ON_NEW = "production release on the migrated schema"
CANDIDATE_ON_OLD = "candidate on the schema before migrating"
CANDIDATE_ON_NEW = "candidate on the migrated schema"

SHOWN = 3  # affected models and fields named per finding; the rest are counted


@dataclass(frozen=True)
class Incompatibility:
    """One model (or one of its fields) that fails, with the operations and value classes that failed and why.

    ``named_table`` / ``named_column``: where the database said it refused (a NOT NULL names its
    column), when it said; the root cause other failures share (see ``Finding``).
    """

    direction: str
    model: str
    table: str
    field: str | None
    operations: tuple[str, ...]
    error: str
    values: tuple[str, ...] = ()  # boundary value classes that broke ("max_length=120", "duplicate", ...)
    named_table: str | None = None
    named_column: str | None = None

    def describe(self) -> str:
        what = f"{self.model}.{self.field}" if self.field else f"{self.model} (table {self.table})"
        written = f" with {', '.join(self.values)}" if self.values else ""
        return f"{what}: {', '.join(self.operations)}{written} fail: {self.error}"

    def short(self, *, model: bool = True) -> str:
        """What failed, for a list under its cause: ``insert price with null`` (the model named unless ``model`` is False)."""
        who = ".".join(part for part in (self.model if model else None, self.field) if part)
        written = f" with {', '.join(self.values)}" if self.values else ""
        return f"{', '.join(self.operations)}{' ' + who if who else ''}{written}"

    @property
    def cause(self) -> tuple[str, str, str]:
        """What failures with one root cause share: the direction, the table the database named (in its
        diagnostics or its words: a missing column's message names its table; else the model's own) and
        the database's words. A missing NOT NULL default refuses every insert of the model, whatever
        field the insert was about; a renamed column fails its model and every model joining it: one cause."""
        match = _MISSING.search(self.error)
        in_words = match and (match["table1"] or match["table2"] or match["table3"])
        return self.direction, (self.named_table or in_words or self.table).split(".")[-1], self.error


@dataclass(frozen=True)
class Finding:
    """One root cause in one direction (see ``Incompatibility.cause``) and every failure it explains."""

    items: tuple[Incompatibility, ...]

    @property
    def first(self) -> Incompatibility:
        return self.items[0]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(item.model for item in self.items))

    @property
    def operations(self) -> list[str]:
        return sorted({op for item in self.items for op in item.operations})

    @property
    def values(self) -> list[str]:
        return list(dict.fromkeys(value for item in self.items for value in item.values))

    def describe(self) -> str:
        """One line: a single failure as ``Incompatibility.describe``; several as the cause once, how many
        failures of which models, and the first few."""
        if len(self.items) == 1:
            return self.first.describe()
        one_model = len(self.models) == 1
        shown = "; ".join(item.short(model=not one_model) for item in self.items[:SHOWN])
        more = f"; and {len(self.items) - SHOWN} more" if len(self.items) > SHOWN else ""
        return f"{self.first.error} — {len(self.items)} failures of {', '.join(self.models)}: {shown}{more}"

    def facts(self) -> dict:
        """JSON-ready, for the plan: the cause, where the database placed it, and what it affects."""
        first = self.first
        return {
            "direction": first.direction,
            "error": first.error,
            "count": len(self.items),
            "table": first.cause[1],
            "column": first.named_column,
            "models": self.models,
            "fields": [item.field for item in self.items],
            "operations": self.operations,
            "values": self.values,
            "fresh_values": any(not item.values for item in self.items),
            "whole_tables": list(dict.fromkeys(item.table for item in self.items if item.field is None)),
        }


def by_cause(items: Iterable[Incompatibility]) -> list[Finding]:
    """Failures grouped by root cause (``Incompatibility.cause``), in the order each cause first appears."""
    causes: dict[tuple[str, str, str], list[Incompatibility]] = {}
    for item in items:
        causes.setdefault(item.cause, []).append(item)
    return [Finding(tuple(found)) for found in causes.values()]


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
            named = {"named_table": select.table, "named_column": select.column}
            items.append(Incompatibility(direction, exercise.model, exercise.table, None, ops, select.error or "", **named))
            continue
        by_field: dict[tuple[str | None, str], tuple[set[str], set[str], ExerciseCheck]] = {}
        for check in failures:
            ops, values, _ = by_field.setdefault((check.field, check.error or ""), (set(), set(), check))
            ops.add(check.op)
            if check.boundary:
                values.add(check.value)
        for (name, error), (ops, values, first) in sorted(by_field.items(), key=lambda item: (item[0][0] or "", item[0][1])):
            named = {"named_table": first.table, "named_column": first.column}
            found = (tuple(sorted(ops)), error, tuple(sorted(values)))
            items.append(Incompatibility(direction, exercise.model, exercise.table, name, *found, **named))
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
        # One line per root cause: a NOT NULL without a default fails every insert of its model, once.
        if self.production_on_new:
            lines.append(f"  once {', '.join(plan.labels)} has run, until traffic switches, the release serving now fails on:")
            lines += [f"    - {finding.describe()}" for finding in by_cause(self.production_on_new)]
        if self.candidate_on_old:
            lines.append("  while the candidate runs before the migration has finished, it fails on:")
            lines += [f"    - {finding.describe()}" for finding in by_cause(self.candidate_on_old)]
        if self.candidate_on_new:
            lines.append("  the candidate fails even on the migrated schema (its models and migrations disagree):")
            lines += [f"    - {finding.describe()}" for finding in by_cause(self.candidate_on_new)]
        if self.advice:
            lines.append("  fix:")
            lines += [f"    - {line}" for line in self.advice]
        lines.append('  or deploy with a maintenance hold: --accept-incompatible --reason "..."')
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
            rehearsal.production_on_old_schema
            + rehearsal.candidate_on_old_schema
            + rehearsal.production_on_new_schema
            + rehearsal.candidate_on_new_schema
        )
        if not explained_by_plan(line, announced)
    ]
    if verdict.overlap_breaks:
        advice = advice_for(rehearsal.plan) + ([MODELS_DISAGREE_ADVICE] if verdict.candidate_on_new else [])
        verdict.advice = advice or [GENERIC_ADVICE]
    return verdict
