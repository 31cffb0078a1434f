"""The probe's answers, parsed once into records: a release's migration plan, a migrate's result, the ORM exercises.

The probe (``probes/django_probe.py``) prints its answers as JSON; everything in deploygate
that reads one reads these dataclasses, never the raw JSON: the payload's shape is known
in this one module. ``deploygate.probe`` runs the probe and returns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from deploygate.migration_history import OutsideGraph, classify, squashed_elsewhere


def _pick(cls, data: dict) -> Any:
    """An instance of dataclass ``cls`` from the keys of ``data`` it declares (extra keys are the probe's business)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


# --- plan --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldFacts:
    """A field as one side of an operation sees it: column type (None: not known), NULL, unique."""

    db_type: str | None
    null: bool
    unique: bool


@dataclass(frozen=True)
class OperationChange:
    """What one operation does to an existing model: the field before and after it (AddField,
    AlterField, RemoveField), and how many unique sets (unique_together, UniqueConstraint) it adds or removes."""

    type: str
    before: FieldFacts | None = None
    after: FieldFacts | None = None
    unique_added: int = 0
    unique_removed: int = 0
    reversible: bool | None = None  # it has a reverse (a RunPython's reverse_code, RunPython.noop too); None: not known


@dataclass(frozen=True)
class PlanStep:
    """One migration the release would apply; ``changes`` has one entry per operation."""

    app: str
    name: str
    operations: list[str]
    operation_types: list[str]
    reversible: bool
    atomic: bool
    sql: list[str]
    changes: list[OperationChange] = field(default_factory=list)
    # Tables of models whose state a SeparateDatabaseAndState changes (its SQL does not show them).
    state_only_tables: list[str] = field(default_factory=list)
    # Tables of the app's models (as the release defines them): what a data migration of the app may write.
    app_tables: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"


@dataclass(frozen=True)
class MigrationPlan:
    """What a release's migrations would do to a database, and where that database stands."""

    steps: list[PlanStep]
    applied_leaves: dict[str, str | None]  # per app, the latest applied migration (what runs now)
    applied: list[str] = field(default_factory=list)  # every applied "app.name"
    # Applied but not in this release's graph, by reason: only ``outside.unknown`` is a mismatch.
    outside: OutsideGraph = field(default_factory=OutsideGraph)
    unmigrated_tables: list[str] = field(default_factory=list)  # of models changed without a migration
    squash_replaces: dict[str, list[str]] = field(default_factory=dict)  # this release's squashes -> what they replace

    def judged_with(self, other_squashes: dict[str, list[str]]) -> MigrationPlan:
        """This plan with the squashes another release recorded over this one's migrations counted as history."""
        return replace(self, outside=squashed_elsewhere(self.outside, other_squashes))

    @property
    def unknown_applied(self) -> list[str]:
        """Applied migrations this release neither has nor explains (not replaced by a squash, of an installed app)."""
        return self.outside.unknown

    @property
    def labels(self) -> list[str]:
        return [step.label for step in self.steps]

    @property
    def apps(self) -> list[str]:
        return sorted({step.app for step in self.steps})

    @property
    def reversible(self) -> bool:
        return all(step.reversible for step in self.steps)

    def reversal_targets(self) -> dict[str, str | None]:
        """Per app the plan touches, the migration to go back to (None: before its first)."""
        return {app: self.applied_leaves.get(app) for app in self.apps}

    @property
    def at_release(self) -> bool:
        """Whether the database is exactly at this release's migrations (nothing pending, nothing unknown).

        Names a squash replaces, and those of apps no longer installed, are history, not a mismatch.
        """
        return not self.steps and not self.unknown_applied

    def mismatch(self) -> str:
        """Why the database is not at this release, in one line ("" when it is)."""
        if self.at_release:
            return ""
        return f"pending {self.labels}, unknown {self.unknown_applied} (not a mismatch: {self.outside.explained()})"


def _facts(data: dict | None) -> FieldFacts | None:
    return None if data is None else _pick(FieldFacts, data)


def _parse_step(step: dict) -> PlanStep:
    changes = [
        _pick(OperationChange, {**c, "before": _facts(c.get("before")), "after": _facts(c.get("after"))}) for c in step.get("changes", [])
    ]
    return _pick(PlanStep, {**step, "changes": changes})


def parse_plan(payload: dict) -> MigrationPlan:
    return MigrationPlan(
        steps=[_parse_step(step) for step in payload["plan"]],
        applied_leaves=payload["applied_leaves"],
        applied=payload.get("applied", []),
        outside=classify(payload.get("outside_graph", []), payload.get("squash_replaces", {}), payload.get("installed_apps")),
        unmigrated_tables=payload.get("unmigrated_tables", []),
        squash_replaces=payload.get("squash_replaces", {}),
    )


# --- migrate ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableLock:
    """The strongest lock a migration took on one relation, and how long it was held."""

    mode: str
    held_s: float


@dataclass(frozen=True)
class AppliedMigration:
    """A migration as it was applied (or reversed): duration and strongest lock per table."""

    app: str
    name: str
    direction: str
    duration_s: float
    statements: int
    locks: dict[str, TableLock]
    error: str | None

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"

    def exclusive_locks_ms(self) -> dict[str, int]:
        """Tables held ACCESS EXCLUSIVE, with how long, in ms."""
        return {t: round(lock.held_s * 1000) for t, lock in self.locks.items() if lock.mode == "AccessExclusiveLock"}

    def strongest_locks(self) -> str:
        """One line: every table with its strongest lock and hold time, e.g. ``t ACCESS EXCLUSIVE 12 ms``."""
        if not self.locks:
            return "no table locks"
        return ", ".join(f"{t} {lock_words(lock.mode)} {lock.held_s * 1000:.0f} ms" for t, lock in sorted(self.locks.items()))


def lock_words(mode: str) -> str:
    """``AccessExclusiveLock`` -> ``ACCESS EXCLUSIVE`` (Postgres' own documentation names)."""
    words, current = [], ""
    for ch in mode.removesuffix("Lock"):
        if ch.isupper() and current:
            words.append(current)
            current = ""
        current += ch
    return " ".join([*words, current]).upper()


@dataclass(frozen=True)
class MigrationFailure:
    """The statement a migration failed on, with what the database said about it.

    ``offending_rows`` is filled in by the host, which counts on the copy the rows that
    violate what the statement asked (None: not countable for this kind of failure).
    """

    migration: str
    message: str
    statement: str | None = None
    sqlstate: str | None = None
    table: str | None = None
    column: str | None = None
    constraint: str | None = None
    detail: str | None = None
    offending_rows: int | None = None


@dataclass(frozen=True)
class MigrateResult:
    """The outcome of ``migrate`` / ``migrate-to``: each migration, and the error that stopped it (if any)."""

    migrations: list[AppliedMigration]
    error: str | None
    exit_code: int = 0
    failure: MigrationFailure | None = None
    # Tables Django's own bookkeeping wrote to, unqualified: post_migrate handlers (ContentType,
    # Permission, ...) and the RenameContentType contenttypes adds after a RenameModel.
    post_migrate_tables: list[str] = field(default_factory=list)
    content_type_rename_tables: list[str] = field(default_factory=list)
    # Per table, the (32-bit) ids of the transactions migrate inserted rows in: its own rows' xmin.
    inserted_xids: dict[str, list[int]] = field(default_factory=dict)
    # Per table OID, the tuples inserted, updated, deleted and hot-updated while migrating, from the
    # copy's statistics (None: not counted, PostgreSQL before 15). See deploygate.table_writes.
    table_writes: dict[int, tuple[int, int, int, int]] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_code == 0


def parse_applied(payload: dict) -> list[AppliedMigration]:
    applied = []
    for migration in payload["migrations"]:
        locks = {t: TableLock(mode=lock["mode"], held_s=lock["held_s"]) for t, lock in (migration.get("locks") or {}).items()}
        applied.append(_pick(AppliedMigration, {**migration, "locks": locks}))
    return applied


def parse_failure(payload: dict) -> MigrationFailure | None:
    failure = payload.get("failure")
    return None if failure is None else _pick(MigrationFailure, failure)


def parse_migrate(payload: dict, exit_code: int = 0) -> MigrateResult:
    return MigrateResult(
        migrations=parse_applied(payload),
        error=payload.get("error"),
        exit_code=exit_code,
        failure=parse_failure(payload),
        post_migrate_tables=payload.get("bookkeeping", {}).get("post_migrate", []),
        content_type_rename_tables=payload.get("bookkeeping", {}).get("content_type_rename", []),
        inserted_xids=payload.get("inserted_xids", {}),
        table_writes=_table_writes(payload.get("table_writes")),
    )


def _table_writes(payload: dict | None) -> dict[int, tuple[int, int, int, int]] | None:
    return None if payload is None else {int(oid): tuple(counts) for oid, counts in payload.items()}


# --- exercise ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExerciseCheck:
    """One ORM operation tried on a model (or one of its fields): ok, or the database's message.

    ``value`` is the class of value an insert wrote: "fresh" (short, unused values), a
    boundary of the field ("max_length=100", "min=-2147483648", "null", "choice 'a'") or
    "duplicate" (a row repeating another wherever the model allows it). ``unchecked`` says
    why the probe could not try it (a field type it cannot fill); such a check is ok.
    """

    op: str
    ok: bool
    field: str | None = None
    error: str | None = None
    value: str | None = None
    unchecked: str | None = None
    sqlstate: str | None = None  # the database's error code when it refused
    table: str | None = None  # the table and column the database named in its refusal, if any
    column: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What was tried, to find the same check in another exercise. A duplicate row's field is named
        only once the database refused it (the unique set it broke), so it is not part of what was tried."""
        return self.op, None if self.value == "duplicate" else self.field, self.value

    @property
    def boundary(self) -> bool:
        """A value at a limit of what the model allows, or a duplicate: judged against the release's own schema."""
        return self.value not in (None, "fresh")


@dataclass(frozen=True)
class ModelExercise:
    """The ORM operations tried on one model and which failed."""

    model: str
    table: str
    checks: list[ExerciseCheck] = field(default_factory=list)

    @property
    def failures(self) -> list[ExerciseCheck]:
        return [check for check in self.checks if not check.ok]

    @property
    def unchecked(self) -> list[ExerciseCheck]:
        return [check for check in self.checks if check.unchecked]


def parse_exercise(payload: dict) -> list[ModelExercise]:
    return [
        ModelExercise(model=m["model"], table=m["table"], checks=[_pick(ExerciseCheck, c) for c in m["checks"]]) for m in payload["models"]
    ]


def exercise_failures(exercises: list[ModelExercise]) -> list[str]:
    """One line per failed ORM operation other than a boundary value: ``model: op field -> error``.

    Every failure, whatever its cause: the gates judge with ``deploygate.differential`` instead,
    which tells a schema error from the app's own code.
    """
    return [f"{m.model}: {c.op} {c.field or ''} -> {c.error}" for m in exercises for c in m.failures if not c.boundary]


def unchecked_fields(exercises: list[ModelExercise]) -> list[str]:
    """What the probe could not fill, each once: ``model: field: why`` (the probe's reason names the field)."""
    return list(dict.fromkeys(f"{m.model}: {c.unchecked}" for m in exercises for c in m.unchecked))
