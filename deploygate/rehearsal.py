"""The migration rehearsed on a copy of production, by the candidate image itself.

A Postgres of production's own image (a scratch database of the platform: testcontainers
on a Docker host) is restored from the verified backup; the candidate image then runs
deploygate's probe (``probes/django_probe.py``) against it: the plan, Django's own
``migrate`` with the lock_timeout the real deploy will use, ORM exercises, and the
reversal. Production is never touched here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import psycopg

from deploygate import app, scope
from deploygate.backup import Backup, BackupError, check_integrity, count_rows, user_tables
from deploygate.backup_physical import data_directory
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect
from deploygate.fingerprint import ContentDiff, DjangoBookkeeping, compare, fingerprint
from deploygate.log import Say
from deploygate.migrations import RECORDER_TABLES, offending_rows_query, qualify
from deploygate.platform.base import Platform, Scratch
from deploygate.platform.images import Image
from deploygate.probe import AppliedMigration, MigrationFailure, MigrationPlan, ModelExercise, Prober, parse_exercise, parse_migrate
from deploygate.table_writes import Writes, combine

_BACKUP_IN_CONTAINER = "/backup"
_COPY_PORT = 5432


@dataclass
class DatabaseCopy:
    """A scratch copy of production: how this host and the candidate's jobs reach it."""

    scratch: Scratch
    restored_rows: dict[str, int] = field(default_factory=dict)  # per table, counted right after the restore
    # Tables the copy of a physical backup holds as it started (its rows are not read: that would copy them up).
    started_tables: list[str] = field(default_factory=list)
    ready_s: float | None = None  # from asking for the copy to its answering

    @property
    def host_address(self) -> DatabaseAddress:
        return self.scratch.database.host_address

    def app_environment(self, settings: Settings) -> dict[str, str]:
        database = self.scratch.database
        return app.environment(settings, database.network_host, _COPY_PORT, database.host_address.password)

    def prober(self, platform: Platform, settings: Settings, image: Image, say: Say | None = None) -> Prober:
        """The probe in ``image`` against this copy."""
        return Prober.configured(platform, settings, image, self.app_environment(settings), network=self.scratch.database.network, say=say)


def _scratch(platform: Platform, settings: Settings, image_id: str, mounts: dict[str, str]) -> AbstractContextManager[Scratch]:
    return platform.scratch_postgres(image_id, user=settings.db_user, dbname=settings.db_name, mounts=mounts)


class CopyStarter:
    """Starts an empty Postgres of ``image_id`` in the background, so its start overlaps other work (the dump)."""

    def __init__(self, platform: Platform, settings: Settings, image_id: str, mounts: dict[str, str]) -> None:
        self._context = _scratch(platform, settings, image_id, mounts)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._future = self._pool.submit(self._context.__enter__)

    def result(self) -> DatabaseCopy:
        """The started database; raises what the start raised."""
        return DatabaseCopy(self._future.result())

    def stop(self) -> None:
        try:
            self._future.result()
        except Exception:  # noqa: BLE001 - a failed start has nothing to stop; its error was raised by result()
            return
        finally:
            self._pool.shutdown()
        self._context.__exit__(None, None, None)


def backup_mount(backup_dir) -> dict[str, str]:
    """The mount a copy needs to read backups from ``backup_dir``."""
    return {str(backup_dir): _BACKUP_IN_CONTAINER}


@contextmanager
def empty_database(platform: Platform, settings: Settings, image_id: str) -> Iterator[DatabaseCopy]:
    """A throwaway, empty Postgres of ``image_id`` (for rehearsing on a schema built from scratch)."""
    with _scratch(platform, settings, image_id, {}) as scratch:
        yield DatabaseCopy(scratch)


@contextmanager
def database_copy(platform: Platform, settings: Settings, image_id: str, backup: Backup, say: Say = print) -> Iterator[DatabaseCopy]:
    """A throwaway Postgres of ``image_id`` restored from ``backup`` (checked against its manifest first), or
    started on it when it is a physical one (``physical_copy``).

    Raises ``BackupError`` when the backup is corrupt or does not restore to the manifest's row counts.
    """
    if backup.method == "physical":
        with physical_copy(platform, settings, image_id, backup, say) as copy:
            yield copy
        return
    check_integrity(backup)
    say("starting a Postgres copy of production's image...")
    with _scratch(platform, settings, image_id, backup_mount(backup.path.parent)) as scratch:
        copy = DatabaseCopy(scratch)
        restore(copy, backup, say)
        yield copy


# What the gate says about how a copy was made (``ScratchDatabase.copy_kind``).
_COPY_KINDS = {
    "clone": "a block-level clone: only the blocks it writes cost room",
    "overlay": "an overlay: a file is copied whole when first written",
}


@contextmanager
def physical_copy(platform: Platform, settings: Settings, image_id: str, backup: Backup, say: Say = print) -> Iterator[DatabaseCopy]:
    """A throwaway Postgres of ``image_id`` on a copy-on-write view of the physical ``backup`` (checked first).

    Its proof of restorability: pg_verifybackup passed when the backup was taken, the files are as it
    left them, the server reaches a consistent state on them, and every table of the manifest is there.
    """
    check_integrity(backup)
    started = time.monotonic()
    with platform.scratch_from_backup(
        image_id, str(data_directory(backup)), user=settings.db_user, dbname=settings.db_name, copy=settings.backup_copy
    ) as scratch:
        copy = DatabaseCopy(scratch, ready_s=round(time.monotonic() - started, 3))
        with connect(copy.host_address) as conn:
            copy.started_tables = user_tables(conn)
        missing = sorted(set(backup.tables) - set(copy.started_tables))
        if missing:
            raise BackupError(f"the copy of {backup.path.name} lacks tables its manifest lists: {', '.join(missing)}")
        how = _COPY_KINDS.get(scratch.database.copy_kind, "copy-on-write")
        say(f"copy of {backup.path.name} ready in {copy.ready_s:.2f}s ({how}), {len(copy.started_tables)} tables")
        yield copy


def restore(copy: DatabaseCopy, backup: Backup, say: Say = print) -> None:
    """pg_restore the dump into the copy (2 jobs in parallel), then prove the row counts match.

    The backup is checked against its manifest (size, sha256) first.
    """
    check_integrity(backup)
    say(f"restoring {backup.path.name} into the copy...")
    code, output = copy.scratch.exec(
        [
            "pg_restore",
            "--exit-on-error",
            "--no-owner",
            "--no-acl",
            "--jobs=2",
            f"--username={copy.host_address.user}",
            f"--dbname={copy.host_address.name}",
            f"{_BACKUP_IN_CONTAINER}/{backup.path.name}",
        ]
    )
    if code != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        raise BackupError(f"restoring {backup.path.name} failed: {lines[-1] if lines else f'exit {code}'}")
    with connect(copy.host_address) as conn:
        restored = count_rows(conn, user_tables(conn))
    copy.restored_rows = restored
    missing = {t: n for t, n in backup.tables.items() if restored.get(t) != n}
    if missing:
        table, expected = next(iter(missing.items()))
        raise BackupError(f"restored copy differs from the manifest: {table} has {restored.get(table)} rows, manifest says {expected}")


@dataclass
class Rehearsal:
    """Everything the rehearsal observed, in the order it happened."""

    candidate: Image
    plan: MigrationPlan
    before: dict
    candidate_on_old_schema: list[ModelExercise]
    applied: list[AppliedMigration]
    migrate_error: str | None
    after: dict
    candidate_on_new_schema: list[ModelExercise]
    production_on_new_schema: list[ModelExercise]
    timings: dict[str, float] = field(default_factory=dict)
    # The production release on its own schema: what its boundary values are judged against.
    production_on_old_schema: list[ModelExercise] = field(default_factory=list)
    migrate_failure: MigrationFailure | None = None  # the statement the plan failed on, with the rows in its way
    bookkeeping: DjangoBookkeeping = field(default_factory=DjangoBookkeeping)  # what Django itself wrote while migrating
    exercised: frozenset[str] = frozenset()  # which of EXERCISES ran
    scope_description: str = ""  # which models they covered, in words
    full_sweep: bool = False  # every model (gates.compat_scope = "all"), not only what the plan changes
    # The tables whose rows were hashed (None: every table), and per table OID the tuples migrate wrote
    # (None: not counted). Every other table is proven untouched from those counts (deploygate.table_writes).
    content_tables: frozenset[str] | None = None
    writes: Writes | None = None

    def content_diff(self, ignore: frozenset[str] = RECORDER_TABLES) -> ContentDiff:
        """The copy after migrating against the copy before, each table proven row by row or by statistics."""
        return compare(self.before, self.after, ignore=ignore, bookkeeping=self.bookkeeping, writes=self.writes)


# The four ORM exercises a rehearsal can run: each release on the schema before and after migrating.
CANDIDATE_ON_OLD, PRODUCTION_ON_OLD = "candidate_on_old", "production_on_old"
CANDIDATE_ON_NEW, PRODUCTION_ON_NEW = "candidate_on_new", "production_on_new"
EXERCISES = frozenset({CANDIDATE_ON_OLD, PRODUCTION_ON_OLD, CANDIDATE_ON_NEW, PRODUCTION_ON_NEW})


def _exercise_steps(wanted: list[tuple[str, dict]], needed: frozenset[str], spec: dict | None) -> list[tuple[str, dict]]:
    """The probe's exercise commands among ``wanted`` (name, state) that ``needed`` asks for, over ``spec``."""
    return [(name, {"state": state, "scope": spec}) for name, state in wanted if name in needed]


def rehearse(
    platform: Platform,
    settings: Settings,
    candidate: Image,
    copy: DatabaseCopy,
    say: Say = print,
    *,
    exercises: frozenset[str] = EXERCISES,
) -> Rehearsal:
    """Plan, exercise both releases on the old schema, migrate, fingerprint, exercise both releases on the new one.

    Only the ``exercises`` asked for run (a check skipped by name costs nothing), over the
    models ``gates.compat_scope`` selects (``deploygate.scope``): none at all when the plan
    changes no table or column. Each release on its own schema is the reference its
    operations on the other are judged against, with the same seeded values.
    A statement the plan fails on is kept with the count of rows in its way.

    The plan runs first, since both scopes depend on it: the fingerprint before hashes the
    rows of the tables the plan changes (``scope.content_tables``) and reads only the catalog
    of the others. Then one probe batch (Django starts once, each container start costs about
    a second) runs the exercises on the old schema, ``migrate`` (counting the tuples it writes
    per table, for the tables not hashed), and the exercises on the new one. A failing
    migration does not raise: it is recorded (``migrate_error``) for the gates to judge.
    """
    timings: dict[str, float] = {}
    started = time.monotonic()
    plan = copy.prober(platform, settings, candidate).plan()
    timings["plan_s"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    rows_of = scope.content_tables(plan, settings.compat_scope)
    before = fingerprint(copy.host_address, rows_of=rows_of)
    timings["fingerprint_before_s"] = round(time.monotonic() - started, 3)
    spec = scope.probe_scope(plan, settings.compat_scope)
    needed = exercises if spec is None or spec["tables"] or spec["apps"] else frozenset()
    described = "every model" if spec is None else scope.changed_by(plan).describe()
    if not exercises:
        described = "no model (no check that runs consumes an ORM exercise)"
    say(f"plan: {', '.join(plan.labels) or 'nothing to apply'}; exercising {described}; migrating the copy with the candidate image...")

    started = time.monotonic()
    old_steps = _exercise_steps([(CANDIDATE_ON_OLD, "current"), (PRODUCTION_ON_OLD, "applied")], needed, spec)
    new_steps = _exercise_steps([(CANDIDATE_ON_NEW, "current"), (PRODUCTION_ON_NEW, plan.applied_leaves)], needed, spec)
    # One process (Django starts once): the exercises roll back all they write, so migrate meets the copy as restored.
    results, seconds = copy.prober(platform, settings, candidate, say=say).batch(
        [("exercise", argument) for _, argument in old_steps] + [("migrate", None)] + [("exercise", argument) for _, argument in new_steps]
    )
    exercised: dict[str, list[ModelExercise]] = {}
    for (name, _), payload, took in zip(old_steps + [("migrate", None)] + new_steps, results, seconds, strict=False):
        if name == "migrate":
            migrate_payload, timings["migrate_in_probe_s"] = payload, took
            continue
        exercised[name] = parse_exercise(payload)
        timings[f"{'orm' if name == CANDIDATE_ON_NEW else 'compat'}_{name}_schema_s"] = took
    timings["exercise_and_migrate_s"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    after = fingerprint(copy.host_address, reference=before, rows_of=rows_of)
    timings["fingerprint_after_s"] = round(time.monotonic() - started, 3)
    migrated = parse_migrate(migrate_payload)
    failure = migrated.failure
    if failure is not None:
        failure = dataclasses.replace(failure, offending_rows=count_offending_rows(copy, failure))
    return Rehearsal(
        candidate=candidate,
        plan=plan,
        before=before,
        candidate_on_old_schema=exercised.get(CANDIDATE_ON_OLD, []),
        applied=migrated.migrations,
        migrate_error=migrated.error,
        after=after,
        candidate_on_new_schema=exercised.get(CANDIDATE_ON_NEW, []),
        production_on_new_schema=exercised.get(PRODUCTION_ON_NEW, []),
        timings=timings,
        production_on_old_schema=exercised.get(PRODUCTION_ON_OLD, []),
        migrate_failure=failure,
        bookkeeping=DjangoBookkeeping(
            post_migrate=frozenset(qualify(table) for table in migrated.post_migrate_tables),
            content_type_renames=frozenset(qualify(table) for table in migrated.content_type_rename_tables),
        ),
        exercised=needed,
        scope_description=described,
        full_sweep=spec is None,
        content_tables=rows_of,
        writes=migrated.table_writes,
    )


def count_offending_rows(copy: DatabaseCopy, failure: MigrationFailure) -> int | None:
    """How many of the copy's rows are in the way of ``failure``'s statement (the plan rolled back, so the
    copy holds production's rows as they are); None when that kind of failure names no countable condition."""
    query = offending_rows_query(failure)
    if query is None:
        return None
    try:
        with connect(copy.host_address) as conn:
            return conn.execute(query).fetchone()[0]
    except psycopg.Error:  # e.g. the statement named a column an earlier, rolled-back migration created
        return None


@dataclass
class Reversal:
    applied: list[AppliedMigration]
    error: str | None
    after: dict
    duration_s: float
    writes: Writes | None = None  # per table OID, the tuples the reversal wrote (None: not counted)


def reversal_diff(rehearsal: Rehearsal, reversal: Reversal, ignore: frozenset[str] = RECORDER_TABLES) -> ContentDiff:
    """The copy after reversing against the copy before migrating; a table whose rows were not hashed is
    proven untouched by what migrating and reversing wrote together."""
    writes = combine(rehearsal.writes, reversal.writes)
    return compare(rehearsal.before, reversal.after, ignore=ignore, bookkeeping=rehearsal.bookkeeping, writes=writes)


def reverse(platform: Platform, settings: Settings, rehearsal: Rehearsal, copy: DatabaseCopy, say: Say = print) -> Reversal:
    """Migrate the copy back to production's state with the candidate image; fingerprint the result."""
    started = time.monotonic()
    targets = rehearsal.plan.reversal_targets()
    say(f"reversing to {targets or 'nothing (empty plan)'}...")
    done = copy.prober(platform, settings, rehearsal.candidate).migrate_to(targets)
    return Reversal(
        applied=done.migrations,
        error=done.error,
        after=fingerprint(copy.host_address, reference=rehearsal.before, rows_of=rehearsal.content_tables),
        duration_s=round(time.monotonic() - started, 3),
        writes=done.table_writes,
    )
