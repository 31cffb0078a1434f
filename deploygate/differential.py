"""Differential verdicts: an ORM operation fails because of the schema only if it works without that schema (pure).

The probe runs a release's models on its OWN schema and on the OTHER one (the release
serving now: before and after the migration; the candidate: after and before), writing
the same seeded values in both runs. An operation that fails on the other schema counts
only when the same operation succeeded on its own. When it fails on its own schema too,
the reason is the release's own code on synthetic rows (a ``save()`` needing related
rows, a signal, a setting the probe's environment lacks, a check constraint of its own):
a coverage gap, "not exercisable: <reason>", counted and listed, never a failure.

One exception keeps real defects visible: on its own schema, an error that says the
schema lacks what the model names (an undefined column or table, a mismatched type, a
NOT NULL or length the model does not declare) is the release's models disagreeing with
its migrations. That is a failure on its own schema, and the same operation failing on
the other schema still counts there (it breaks during the overlap whatever the cause).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploygate.probe import ExerciseCheck, ModelExercise

# The schema has no such name or type: the model and the database disagree, whichever table it is.
UNDEFINED_COLUMN, UNDEFINED_TABLE, DATATYPE_MISMATCH, UNDEFINED_FUNCTION = "42703", "42P01", "42804", "42883"
MISSING_OR_MISTYPED = frozenset({UNDEFINED_COLUMN, UNDEFINED_TABLE, DATATYPE_MISMATCH, UNDEFINED_FUNCTION})
# A column refuses a value of the model's own type (NOT NULL, length, range, text form): a disagreement
# when it is the exercised model's own table (or the database named none); on another table it is
# a row the app's code (a signal, a save()) wrote.
ROW_SHAPE = frozenset({"23502", "22001", "22003", "22P02"})


def schema_error(check: ExerciseCheck, table: str) -> bool:
    """Whether a failed ``check`` of the model on ``table`` says its schema differs from what the model names."""
    if check.sqlstate in MISSING_OR_MISTYPED:
        return True
    return check.sqlstate in ROW_SHAPE and (check.table is None or check.table == table.split(".")[-1])


def _what(model: ModelExercise, check: ExerciseCheck) -> str:
    field_part = f" {check.field}" if check.field else ""
    value = f" ({check.value})" if check.value else ""
    return f"{model.model}: {check.op}{field_part}{value}"


@dataclass
class Judged:
    """The failures that count (per model, in order) and the coverage gaps, one line each."""

    failures: list[tuple[ModelExercise, list[ExerciseCheck]]] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """One line per counted failure: ``model: op field (value) -> error``."""
        return [f"{_what(m, c)} -> {c.error}" for m, checks in self.failures for c in checks]

    def add_gap(self, model: ModelExercise, check: ExerciseCheck, why: str | None) -> None:
        line = f"not exercisable: {_what(model, check)}: {why or 'failed on its own schema'}"
        if line not in self.gaps:
            self.gaps.append(line)


def on_own_schema(exercises: list[ModelExercise]) -> Judged:
    """A release on its own schema: schema errors fail, anything else it cannot do is a gap."""
    judged = Judged()
    for model in exercises:
        counted = []
        for check in model.failures:
            if schema_error(check, model.table):
                counted.append(check)
            else:
                judged.add_gap(model, check, check.error)
        if counted:
            judged.failures.append((model, counted))
    return judged


def on_other_schema(exercises: list[ModelExercise], own: list[ModelExercise] | None) -> Judged:
    """A release on the other schema, against the same release on its own (``own``).

    Counted: what succeeded on its own schema, and what failed there with a schema error.
    A gap: what failed there for any other reason. Without ``own`` (the release's own schema
    could not be built: the plan failed) and for an operation its own run never tried,
    only schema errors count.
    """
    reference = {(m.model, c.key): c for m in own or [] for c in m.checks}
    judged = Judged()
    for model in exercises:
        counted = []
        for check in model.failures:
            mine = reference.get((model.model, check.key))
            if mine is None or mine.unchecked:
                if schema_error(check, model.table):
                    counted.append(check)
                else:
                    judged.add_gap(model, check, f"{check.error} (not tried on its own schema)")
            elif mine.ok or schema_error(mine, model.table):
                counted.append(check)
            else:
                judged.add_gap(model, check, mine.error)
        if counted:
            judged.failures.append((model, counted))
    return judged
