"""Production's schema as deploy and rollback steps change it: plan, migrate, undo, verify.

Each step's core takes a frozen context of exactly what it may use (the candidate's probe,
production's ids, the backup...) and returns a frozen result; the step's adapter in
``steps`` / ``undo`` is the only code that reads or writes the deploy's run. A failure a
step decides itself (a failed migrate, nothing to restore, a schema that is not the previous
release's) is a result with ``failure`` set; the adapter turns it into the step's error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deploygate import window
from deploygate.backup import Backup
from deploygate.deploy.services import Probe
from deploygate.log import Say
from deploygate.platform.base import ColorState
from deploygate.platform.images import Image
from deploygate.probe import MigrationPlan
from deploygate.record import LockRecord, MigrationRecord, PlanRecord

if TYPE_CHECKING:
    from deploygate.deploy.state import DeployRun


# --- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaPlanning:
    """What planning may use: the candidate's probe (built only when asked: building it reads the platform)
    and whether the predeploy found the deploy reversible (a plan can only take that away)."""

    probe: Callable[[], Probe]
    reversible: bool
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> SchemaPlanning:
        return cls(probe=functools.partial(run.prober, run.candidate), reversible=run.reversible, say=run.log)


@dataclass(frozen=True)
class PlannedSchema:
    plan: MigrationPlan
    reversal_targets: dict[str, str | None]
    reversible: bool
    records: tuple[PlanRecord, ...]


def plan_schema(planning: SchemaPlanning) -> PlannedSchema:
    """What the candidate would apply to production now (read-only), and where reversal would go."""
    plan = planning.probe().plan()
    targets = plan.reversal_targets()
    planning.say(f"   plan: {plan.labels or 'no migrations'}; reversal targets {targets}")
    return PlannedSchema(
        plan=plan,
        reversal_targets=targets,
        reversible=planning.reversible and plan.reversible,
        records=tuple(PlanRecord(label=s.label, operations=s.operations, sql=s.sql) for s in plan.steps),
    )


# --- migrate -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """What migrating production may use: its ids per table (before), the candidate's probe, and the
    count of the rows migrate itself wrote."""

    max_ids: Callable[[], dict[str, int]]
    probe: Callable[[], Probe]
    migrate_rows: Callable[[window.MigrateWrites], dict[str, int]]
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> Migration:
        data, db = run.services.data, run.db
        return cls(
            max_ids=functools.partial(data.max_ids, db),
            probe=functools.partial(run.prober, run.candidate),
            migrate_rows=functools.partial(data.migrate_rows, db),
            say=run.log,
        )


@dataclass(frozen=True)
class Migrated:
    migrations: tuple[MigrationRecord, ...]
    ok: bool
    error: str | None = None
    writes: window.MigrateWrites = field(default_factory=window.MigrateWrites)  # migrate's own rows (empty when it failed)

    @property
    def failure(self) -> str | None:
        return None if self.ok else f"migrate failed on production: {self.error}"


def migrate_schema(migration: Migration) -> Migrated:
    """The candidate's migrations on production, by the candidate's image, with the rehearsed lock_timeout;
    where the rows migrate itself inserts are (post_migrate's content types, a data migration's rows)."""
    before = migration.max_ids()
    done = migration.probe().migrate()
    for m in done.migrations:
        migration.say(f"   {m.label}: {m.duration_s:.3f}s, {m.strongest_locks()}")
    records = tuple(
        MigrationRecord(
            label=m.label,
            duration_s=m.duration_s,
            error=m.error,
            locks=[LockRecord(table=t, mode=lock.mode, held_s=lock.held_s) for t, lock in sorted(m.locks.items())],
        )
        for m in done.migrations
    )
    if not done.ok:
        return Migrated(records, ok=False, error=done.error)
    return Migrated(records, ok=True, writes=window.MigrateWrites.taken(before, done.inserted_xids))


def migrate_bookkeeping(migration: Migration, writes: window.MigrateWrites) -> str:
    """Says how many rows migrate itself wrote; returns the record's note about them."""
    own = window.describe_counts(migration.migrate_rows(writes))
    migration.say(f"   migrate itself wrote {own}: bookkeeping, not the window's writes")
    return f"migrate itself wrote {own}: bookkeeping, left out of the rows written during the window"


# --- undo (rollback) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaUndo:
    """What undoing the plan may use: the plan and where reversal goes, the candidate's probe, and for a
    plan that cannot be reversed the backup, its restore and the window's exported rows to put back."""

    plan_labels: tuple[str, ...]
    reversal_targets: dict[str, str | None]
    reversible: bool
    probe: Callable[[], Probe]
    backup: Backup | None
    restore: Callable[[Backup], None]
    reapply_rows: Callable[[Path], int]
    export_path: str | None
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> SchemaUndo:
        data, db = run.services.data, run.db
        return cls(
            plan_labels=tuple(run.plan_labels),
            reversal_targets=run.reversal_targets,
            reversible=run.reversible,
            probe=functools.partial(run.prober, run.candidate),
            backup=run.backup,
            restore=functools.partial(run.services.backups.restore_production, run.platform, db),
            reapply_rows=functools.partial(data.reapply_rows, db),
            export_path=run.record.rollback.export_path,
            say=run.log,
        )


@dataclass(frozen=True)
class SchemaUndone:
    method: str | None  # how the plan was undone, in words (for the log and the record)
    failure: str | None = None


def _restore_backup(undo: SchemaUndo) -> SchemaUndone:
    """The pre-deploy backup restored into production, then the window's rows put back."""
    if undo.backup is None:
        return SchemaUndone(None, failure="the plan cannot be reversed and there is no backup to restore")
    undo.restore(undo.backup)
    reapplied = undo.reapply_rows(Path(undo.export_path)) if undo.export_path else 0
    return SchemaUndone(f"restored {undo.backup.path.name} and re-applied {reapplied} rows written during the window")


def _undo(undo: SchemaUndo) -> SchemaUndone:
    if not undo.reversal_targets:
        return SchemaUndone("nothing to reverse (the plan was empty)")
    prober = undo.probe()
    # The truth is in django_migrations, not in what this process believes it did.
    applied = [label for label in undo.plan_labels if label in prober.plan().applied]
    if not applied:
        return SchemaUndone("nothing to reverse: none of the plan's migrations is applied")
    if undo.reversible:
        done = prober.migrate_to(undo.reversal_targets)
        if done.ok:
            return SchemaUndone(f"reversed to {undo.reversal_targets}")
        undo.say(f"   reversal failed ({done.error}): restoring the backup instead")
    return _restore_backup(undo)


def undo_schema(undo: SchemaUndo) -> SchemaUndone:
    """Undo the plan on production: reverse it with the candidate's image, else restore the backup."""
    undone = _undo(undo)
    if undone.failure is None:
        undo.say(f"   {undone.method}")
    return undone


# --- verify (rollback) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaCheck:
    """What checking the schema against the previous release may use: that color's state, a probe in any
    image, the candidate (whose squashes may explain names), and the reason a mismatch was accepted."""

    old_color: str
    color_state: Callable[[str], ColorState | None]
    probe_of: Callable[[Image], Probe]
    candidate: Image | None
    accept_mismatch: str | None
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> SchemaCheck:
        return cls(
            old_color=run.old_color,
            color_state=run.platform.color,
            probe_of=run.prober,
            candidate=run.candidate,
            accept_mismatch=run.request.accept_schema_mismatch,
            say=run.log,
        )


@dataclass(frozen=True)
class SchemaVerdict:
    notes: tuple[str, ...] = ()
    exceptions: Mapping[str, str] = field(default_factory=dict)
    failure: str | None = None


def check_schema(check: SchemaCheck) -> SchemaVerdict:
    """The schema is exactly the previous release's (history its graph explains is said, not a mismatch)."""
    state = check.color_state(check.old_color)
    image = Image(tag=state.release, id=state.image_id, built=False)
    plan = check.probe_of(image).plan()
    if plan.unknown_applied and check.candidate is not None:
        # The candidate's migrate may have recorded its squash over migrations the previous release has.
        plan = plan.judged_with(check.probe_of(check.candidate).plan().squash_replaces)
    notes: list[str] = []
    outside = plan.outside
    if outside.replaced_by_squash or outside.of_removed_apps or outside.squashes_of_its_own:
        # History, not a mismatch: said in the log and the report, so nobody wonders where they went.
        check.say(f"   applied migrations {check.old_color}'s graph explains: {outside.explained()}")
        notes.append(f"rollback verify: applied migrations outside {check.old_color}'s graph, not a mismatch: {outside.explained()}")
    if plan.at_release:
        return SchemaVerdict(tuple(notes))
    mismatch = f"schema does not match {check.old_color}: {plan.mismatch()}"
    accepted = check.accept_mismatch
    if not accepted:
        # Re-running cannot change what django_migrations records: without a way out the deploy stays open for good.
        failure = (
            f'{mismatch}; if that is expected, `nox -s rollback -- --accept-schema-mismatch --reason "why"` closes the deploy (recorded)'
        )
        return SchemaVerdict(tuple(notes), failure=failure)
    check.say(f"   {mismatch}: ACCEPTED ({accepted})")
    notes.append(f"rollback verify: {mismatch}; accepted: {accepted}")
    # Goes to the ledger with the rolled_back entry: what was accepted, beside why.
    return SchemaVerdict(tuple(notes), exceptions={"accept schema mismatch": f"{accepted} (accepted: {mismatch})"})
