"""What keeps users' data through a deploy: the backup before it, the window's rows on the way back.

Each step's core takes a frozen context and returns a frozen result; the step's adapter in
``steps`` / ``undo`` is the only code that reads or writes the deploy's run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploygate import window
from deploygate.backup import Backup
from deploygate.log import Say
from deploygate.record import BackupRecord

if TYPE_CHECKING:
    from deploygate.deploy.state import DeployRun


@dataclass(frozen=True)
class BackupTaking:
    """What the backup step may use: a dump of production (said into the log) and its integrity check."""

    take: Callable[[], Backup]
    check_integrity: Callable[[Backup], None]

    @classmethod
    def of(cls, run: DeployRun) -> BackupTaking:
        backups = run.services.backups
        return cls(
            take=functools.partial(backups.take_backup, run.platform, run.settings, run.db, say=run.log),
            check_integrity=backups.check_integrity,
        )


@dataclass(frozen=True)
class BackupTaken:
    backup: Backup
    record: BackupRecord


def take_backup(taking: BackupTaking) -> BackupTaken:
    """A fresh dump of production, checked against its manifest (read-only: a failure here changes nothing)."""
    backup = taking.take()
    taking.check_integrity(backup)
    record = BackupRecord(
        path=str(backup.path),
        size=backup.size,
        sha256=backup.sha256,
        restore_verified="by the predeploy gate's restore of the same server's dump",
    )
    return BackupTaken(backup, record)


@dataclass(frozen=True)
class WindowExport:
    """What exporting the window's rows may use: where the ids stood when the window opened, where
    migrate's own rows are (not the window's), production's rows, and the file to write."""

    path: Path
    started_ids: dict[str, int]
    migrate_writes: window.MigrateWrites
    export_rows: Callable[[dict[str, int], Path, window.MigrateWrites], int]
    migrate_rows: Callable[[window.MigrateWrites], dict[str, int]]
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> WindowExport:
        data, s = run.services.data, run.settings
        return cls(
            path=s.path(s.backup_dir) / f"rollback_data_{run.stamp}.csv",
            started_ids=run.started_ids,
            migrate_writes=run.migrate_writes,
            export_rows=functools.partial(data.export_rows, run.db),
            migrate_rows=functools.partial(data.migrate_rows, run.db),
            say=run.log,
        )


@dataclass(frozen=True)
class WindowExported:
    path: Path
    rows: int


def export_window(export: WindowExport) -> WindowExported:
    """Every row written since the deploy started, to a 0600 CSV, before anything is undone."""
    rows = export.export_rows(export.started_ids, export.path, export.migrate_writes)
    export.say(f"   exported {rows} rows written during the window to {export.path}")
    return WindowExported(export.path, rows)


def left_out_bookkeeping(export: WindowExport) -> str | None:
    """The rows the release's own migrate inserted are not the window's (a restore removes them, and
    putting them back would give the previous release rows of models it does not have): said, and
    returned as the record's note (None when migrate wrote none)."""
    if not export.migrate_writes.floors:
        return None
    own = window.describe_counts(export.migrate_rows(export.migrate_writes))
    export.say(f"   left out {own} the release's migrate wrote (bookkeeping)")
    return f"rollback export: left out {own} the release's migrate wrote (bookkeeping)"
