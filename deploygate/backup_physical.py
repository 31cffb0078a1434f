"""Physical backups: ``pg_basebackup`` of the server's own major version, checked by ``pg_verifybackup``.

A plain-format base backup is a data directory a Postgres of the same image starts on: the
rehearsal's copy is an overlay on it (``platform.scratch_from_backup``), so the backup is
never written and a copy is ready in about a second whatever the database's size. It is
written as the image's postgres user, so the copy's server never has to chown (on an overlay,
a chown copies every file up).

The backup's own ``backup_manifest`` (every file with its size and CRC32C) is checked whole by
``pg_verifybackup`` when the backup is taken; later uses check its sha256 and every file's size
(``backup.check_integrity``), which needs no job and reads no data file.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from deploygate import backup_snapshot
from deploygate.backup import (
    BACKUP_PREFIX,
    BASE_SUFFIX,
    DATA_DIR,
    Backup,
    BackupError,
    backup_paths,
    check_room,
    estimated_rows,
    pg_environment,
    record_base_backup,
    take_backup,
)
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect
from deploygate.log import Say

if TYPE_CHECKING:
    from deploygate.platform.base import Platform

_IN_CONTAINER = "/target"
# pg_hba's refusal of a replication connection: no physical backup from here, a logical one instead.
_NOT_ALLOWED = ("no pg_hba.conf entry for replication connection", "must be superuser or replication role", "permission denied")


def replication_refusal(db: DatabaseAddress) -> str | None:
    """Why the configured role may not take a base backup (None when it may): it needs REPLICATION (or superuser)."""
    with connect(db) as conn:
        allowed = conn.execute("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    return None if allowed else f"the role {db.user} has neither REPLICATION nor superuser"


def refused_by_server(error: str) -> bool:
    """Whether a failed pg_basebackup was refused (pg_hba, privileges) rather than broken."""
    return any(text in error for text in _NOT_ALLOWED)


def _catalog_facts(db: DatabaseAddress) -> tuple[dict[str, int], str, int]:
    """Every table with its planner estimate of rows, the server version, the cluster's size on disk.

    Exact counts would read every row; a physical backup's proof is pg_verifybackup and a consistent start.
    """
    with connect(db) as conn:
        tables = estimated_rows(conn)
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        cluster_bytes = conn.execute("SELECT sum(pg_database_size(oid))::bigint FROM pg_database").fetchone()[0]
    return tables, server_version, cluster_bytes


def take_physical(platform: Platform, settings: Settings, db: DatabaseAddress, *, say: Say, prefix: str) -> Backup:
    """``pg_basebackup`` of production into ``<backup_dir>/<prefix><timestamp>.base/data`` (0700, files 0600), verified.

    Raises ``BackupError`` when there is no room, or pg_basebackup or pg_verifybackup fails
    (``refused_by_server`` tells a refusal); a failed backup leaves nothing behind.
    """
    backup_dir, final, partial = backup_paths(settings, prefix, BASE_SUFFIX)
    started = time.monotonic()
    tables, server_version, cluster_bytes = _catalog_facts(db)
    check_room(backup_dir, cluster_bytes)
    say(f"base backup of the server ({cluster_bytes / 1e6:.0f} MB on disk) with its own pg_basebackup, then pg_verifybackup...")
    partial.mkdir(mode=0o700)
    try:
        # The job chowns the target to the image's postgres user and drops to it: the copy's
        # server then owns every file as it is, and never copies one up to chown it.
        result = platform.run_job(
            platform.database_image(),
            [
                "sh",
                "-c",
                f"chown postgres:postgres {_IN_CONTAINER} && exec setpriv --reuid=postgres --regid=postgres --init-groups "
                'sh -c \'umask 077 && pg_basebackup --version && pg_basebackup --pgdata="$TARGET" --format=plain '
                "--wal-method=stream --checkpoint=fast --no-password --manifest-checksums=CRC32C "
                '&& pg_verifybackup --quiet "$TARGET" && echo verified\'',
            ],
            environment={**pg_environment(platform, db), "TARGET": f"{_IN_CONTAINER}/{DATA_DIR}"},
            mounts={str(partial): _IN_CONTAINER},
            writable=[str(partial)],
        )
        if result.exit_code != 0:
            raise BackupError(f"pg_basebackup exited {result.exit_code}: {result.last_line}")
        os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    tool_version = result.output.splitlines()[0].strip() if result.output else "unknown"
    backup, files = record_base_backup(final, server_version=server_version, tool_version=tool_version, tables=tables, started=started)
    say(f"backup {final.name}: {backup.size / 1e6:.1f} MB in {files} files, every checksum verified, {backup.duration_s:.1f}s")
    return backup


def data_directory(backup: Backup) -> Path:
    """The data directory a copy starts on (the overlay's lower layer)."""
    return backup.path / DATA_DIR


def take_by_method(platform: Platform, settings: Settings, db: DatabaseAddress, *, say: Say, prefix: str = BACKUP_PREFIX) -> Backup:
    """The predeploy's backup as ``backup.method`` asks: snapshot, physical, logical, or auto (the first of these the
    server and the filesystems allow, saying why an earlier one was passed over)."""
    method = settings.backup_method
    if method in ("auto", "snapshot"):
        refusal = backup_snapshot.refusal(settings, db)
        if refusal is None:
            return backup_snapshot.take_snapshot(platform, settings, db, say=say, prefix=prefix)
        if method == "snapshot":
            raise BackupError(f"backup.method is snapshot, but {refusal}; set backup.method to auto or physical")
    if method == "auto":
        refusal = replication_refusal(db)
        if refusal is not None:
            say(f"logical backup (backup.method auto): {refusal}")
            return take_backup(platform, settings, db, say=say, prefix=prefix)
    elif method == "logical":
        return take_backup(platform, settings, db, say=say, prefix=prefix)
    try:
        return take_physical(platform, settings, db, say=say, prefix=prefix)
    except BackupError as exc:
        if method != "auto" or not refused_by_server(str(exc)):
            raise
        say(f"logical backup (backup.method auto): the server refused a base backup: {exc}")
        return take_backup(platform, settings, db, say=say, prefix=prefix)


def copies_start_on_backup(settings: Settings, db: DatabaseAddress) -> bool:
    """Whether the predeploy's backup will be a data directory a copy starts on (snapshot or physical), not a dump
    to restore into a server of its own (which the gate then starts early, while the dump runs)."""
    if settings.backup_method in ("snapshot", "physical"):
        return True
    return settings.backup_method == "auto" and (backup_snapshot.refusal(settings, db) is None or replication_refusal(db) is None)
