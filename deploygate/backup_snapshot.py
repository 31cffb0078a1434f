"""Snapshot backups: Postgres's low-level backup API around a block-level clone of production's data directory.

Where deploygate runs production's Postgres on a data directory of its own (``database.data_dir``) and
that directory and ``backup.dir`` share a filesystem that clones files (XFS made with reflink=1,
btrfs), a base backup needs no copy of the data: ``pg_backup_start`` → clone every file (reflinks,
metadata only) → ``pg_backup_stop`` → clone the WAL it needs → its ``backup_label``. The result is the
same plain data directory ``pg_basebackup`` writes, so everything after it (the rehearsal's copy,
retention, ``check_integrity``) treats it as a physical backup. Database Lab Engine's thin clones
work this way on ZFS; this is the same idea tied to the deploy's own verified backup.

The proof stays: every file gets a SHA-256 in a ``backup_manifest`` of pg_basebackup's own format,
and ``pg_verifybackup`` of the server's version checks the file list, the sizes, the manifest's own
checksum and that the WAL from the backup's start to its end parses. Reading to checksum is the one
cost that grows with the database; nothing is written but metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from deploygate.backup import (
    BASE_SUFFIX,
    DATA_DIR,
    PG_MANIFEST,
    Backup,
    BackupError,
    backup_paths,
    estimated_rows,
    record_base_backup,
    sha256_of,
)
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect
from deploygate.log import Say
from deploygate.platform import clone

if TYPE_CHECKING:
    from deploygate.platform.base import Platform

_IN_CONTAINER = "/target"
# What pg_basebackup leaves out of a base backup (PostgreSQL's "excluded" files): the server's own
# run-time state, which a copy recreates and which must not survive into it (a stale postmaster.pid).
_EXCLUDED_FILES = ("postmaster.pid", "postmaster.opts", "current_logfiles", "backup_label.old")
_EMPTIED_DIRS = ("pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans", "pg_wal")
_CHECKSUM_WORKERS = 4  # hashlib releases the GIL: files are checksummed in parallel, one read each


def refusal(settings: Settings, db: DatabaseAddress) -> str | None:
    """Why a snapshot backup cannot be taken here (None when it can)."""
    if settings.db_host or not settings.db_data_dir:
        return "production's data directory is not one of deploygate's own (database.data_dir is empty)"
    data_dir, backup_dir = settings.path(settings.db_data_dir), settings.path(settings.backup_dir)
    if not (data_dir / "PG_VERSION").exists():
        return f"{data_dir} holds no Postgres data directory on this host"
    backup_dir.mkdir(parents=True, exist_ok=True)
    if os.stat(data_dir).st_dev != os.stat(backup_dir).st_dev:
        return f"{backup_dir} and {data_dir} are on different filesystems (a clone cannot cross them)"
    if not clone.clones_in(backup_dir):
        return f"the filesystem of {backup_dir} cannot clone files (it takes XFS made with reflink=1, or btrfs)"
    with connect(db) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        allowed = conn.execute("SELECT has_function_privilege('pg_backup_start(text, boolean)', 'EXECUTE')").fetchone()[0]
    if int(version) < 150000:
        return "the server is older than PostgreSQL 15 (no pg_backup_start)"
    return None if allowed else f"the role {db.user} may not run pg_backup_start"


def take_snapshot(platform: Platform, settings: Settings, db: DatabaseAddress, *, say: Say, prefix: str) -> Backup:
    """A base backup of production by clones, into ``<backup_dir>/<prefix><timestamp>.base/data``, verified.

    Raises ``BackupError`` (a failed backup leaves nothing behind, and production's backup mode is ended).
    """
    backup_dir, final, partial = backup_paths(settings, prefix, BASE_SUFFIX)
    source = settings.path(settings.db_data_dir)
    target = partial / DATA_DIR
    started = time.monotonic()
    say("snapshot backup: pg_backup_start, a clone of the data directory (no data copied), pg_backup_stop...")
    partial.mkdir(mode=0o700)
    try:
        with connect(db) as conn:
            tables = estimated_rows(conn)
            server_version = conn.execute("SHOW server_version").fetchone()[0]
            # A temporary slot keeps every WAL segment from the backup's start until this session ends,
            # whatever checkpoints happen meanwhile (pg_basebackup does the same).
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", (f"deploygate_snapshot_{secrets.token_hex(4)}",))
            conn.execute("SELECT pg_backup_start('deploygate snapshot', true)")
            try:
                clone.clone_tree(source, target)
            finally:
                # Ended whatever happened: a session left in backup mode keeps forcing full-page writes.
                stop_lsn, label, tablespace_map = conn.execute(
                    "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
                ).fetchone()
            _leave_out_server_state(target)
            # The WAL from the backup's start to its end record, cloned now that it is complete.
            os.rmdir(target / "pg_wal")
            clone.clone_tree(source / "pg_wal", target / "pg_wal")
        _write_private(target / "backup_label", label)
        if tablespace_map:
            _write_private(target / "tablespace_map", tablespace_map)
        timeline, start_lsn = _label_start(label)
        _write_pg_manifest(target, timeline, start_lsn, stop_lsn)
        verified = platform.run_job(
            platform.database_image(),
            ["sh", "-c", 'pg_verifybackup --skip-checksums --quiet "$TARGET" && echo verified'],
            environment={"TARGET": f"{_IN_CONTAINER}/{DATA_DIR}"},
            mounts={str(partial): _IN_CONTAINER},
        )
        if verified.exit_code != 0:
            raise BackupError(f"pg_verifybackup of the snapshot exited {verified.exit_code}: {verified.last_line}")
        os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    backup, files = record_base_backup(
        final, server_version=server_version, tool_version=f"pg_backup_start (PostgreSQL) {server_version}", tables=tables, started=started
    )
    say(
        f"backup {final.name}: a snapshot of {backup.size / 1e6:.1f} MB in {files} files (shared blocks, nothing copied), "
        f"every file checksummed, pg_verifybackup passed, {backup.duration_s:.1f}s"
    )
    return backup


def _leave_out_server_state(data: Path) -> None:
    for name in _EXCLUDED_FILES:
        (data / name).unlink(missing_ok=True)
    for name in _EMPTIED_DIRS:
        if (data / name).is_dir():
            clone.empty_directory(data / name)


def _write_private(path: Path, text: str) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(text)
    owner = path.parent.stat()
    os.chown(path, owner.st_uid, owner.st_gid)  # the copy's server runs as the data directory's owner


def _label_start(label: str) -> tuple[int, str]:
    """The timeline and start LSN a backup_label records (``START WAL LOCATION: 0/E000028 (file 00000001…)``)."""
    fields = dict(line.split(": ", 1) for line in label.splitlines() if ": " in line)
    return int(fields["START TIMELINE"]), fields["START WAL LOCATION"].split()[0]


def _write_pg_manifest(data: Path, timeline: int, start_lsn: str, end_lsn: str) -> None:
    """``backup_manifest`` as pg_basebackup writes it (so pg_verifybackup reads it): every file but the WAL,
    its size, mtime and SHA-256, the WAL range, and the manifest's own SHA-256 over all lines before it."""
    files = sorted((str(p.relative_to(data)), p) for p in data.rglob("*") if p.is_file() and p.relative_to(data).parts[0] != "pg_wal")
    with ThreadPoolExecutor(max_workers=_CHECKSUM_WORKERS, thread_name_prefix="snapshot-checksum") as pool:
        digests = list(pool.map(sha256_of, (p for _, p in files)))
    entries = []
    for (relative, path), digest in zip(files, digests, strict=True):
        stat = path.stat()
        modified = time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime(stat.st_mtime))
        entries.append(
            "{ "
            + ", ".join(
                [
                    f'"Path": {json.dumps(relative)}',
                    f'"Size": {stat.st_size}',
                    f'"Last-Modified": "{modified}"',
                    '"Checksum-Algorithm": "SHA256"',
                    f'"Checksum": "{digest}"',
                ]
            )
            + " }"
        )
    body = (
        '{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n'
        + ",\n".join(entries)
        + "\n],\n"
        + f'"WAL-Ranges": [\n{{ "Timeline": {timeline}, "Start-LSN": "{start_lsn}", "End-LSN": "{end_lsn}" }}\n],\n'
    )
    checksum = hashlib.sha256(body.encode()).hexdigest()
    _write_private(data / PG_MANIFEST, body + f'"Manifest-Checksum": "{checksum}"}}\n')
