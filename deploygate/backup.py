"""Backups of production: pg_dump of the server's own major version, a manifest, retention.

The dump runs in a one-off job of the production database's own image, so the client is
never older or newer than the server; restoring production runs that image's pg_restore
the same way. Row counts in the manifest are taken
inside the very snapshot pg_dump uses (``pg_export_snapshot`` + ``--snapshot``), so a
restore can be checked against them exactly even while production keeps writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import sql

from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect
from deploygate.errors import DeployGateError
from deploygate.log import Say

if TYPE_CHECKING:
    from deploygate.platform.base import Platform
DUMP_SUFFIX = ".dump"
# A logical backup with backup.dump_jobs > 1: pg_dump's directory format, a folder of one file per table.
DUMP_DIR_SUFFIX = ".dumpdir"
MANIFEST_SUFFIX = ".json"
# A physical backup (backup_physical): ``<prefix><stamp>.base/data``, a data directory with pg_basebackup's manifest.
BASE_SUFFIX = ".base"
DATA_DIR = "data"
PG_MANIFEST = "backup_manifest"
BACKUP_PREFIX = "pre_migration_"
_IN_CONTAINER = "/backup"


class BackupError(DeployGateError):
    """A backup could not be taken, or one on disk is not what its manifest says."""


@dataclass(frozen=True)
class Backup:
    """A backup on disk and what its manifest records about it: a pg_dump file (``method`` logical), or a
    pg_basebackup directory (physical; ``sha256`` is its backup_manifest's, ``tables`` the planner's estimates)."""

    path: Path
    size: int
    sha256: str
    server_version: str
    pg_dump_version: str
    created_at: str
    tables: dict[str, int]
    duration_s: float
    method: str = "logical"
    rows_exact: bool = True  # tables holds exact counts, taken in pg_dump's own snapshot

    @property
    def manifest_path(self) -> Path:
        return self.path.with_suffix(MANIFEST_SUFFIX)

    def to_json(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


# Every ordinary table outside the system schemas, with the planner's estimate of its rows.
_USER_TABLES = """SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"""


def user_tables(conn) -> list[str]:
    """Every ordinary table outside the system schemas, as ``schema.table``."""
    return [name for name, _ in conn.execute(_USER_TABLES).fetchall()]


def estimated_rows(conn) -> dict[str, int]:
    """Every ordinary table with the planner's estimate of its rows (read from the catalog, no row read)."""
    return dict(conn.execute(_USER_TABLES).fetchall())


def backup_paths(settings: Settings, prefix: str, suffix: str) -> tuple[Path, Path, Path]:
    """The backup folder (made private), and a new backup's final and partial paths, by the current time."""
    backup_dir = settings.path(settings.backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(backup_dir, 0o700)
    final = backup_dir / f"{prefix}{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}{suffix}"
    return backup_dir, final, final.with_name(final.name + ".partial")


def count_rows(conn, tables: list[str]) -> dict[str, int]:
    """Exact row count of each table (within the caller's transaction/snapshot)."""
    counts = {}
    for name in tables:
        schema, table = name.split(".", 1)
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[name] = conn.execute(query).fetchone()[0]
    return counts


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_room(backup_dir: Path, database_bytes: int) -> None:
    # A compressed custom-format dump is far smaller than the database's on-disk size,
    # so needing that much free space leaves a safe margin without guessing a ratio.
    free = shutil.disk_usage(backup_dir).free
    if free < database_bytes:
        raise BackupError(
            f"no room for the backup in {backup_dir}: {free / 1e6:.0f} MB free, the database takes {database_bytes / 1e6:.0f} MB"
        )


def pg_environment(platform: Platform, db: DatabaseAddress) -> dict[str, str]:
    """libpq's variables for a job reaching production's database (the password never on a command line)."""
    host, port = platform.database_endpoint()
    return {"PGHOST": host, "PGPORT": str(port), "PGUSER": db.user, "PGPASSWORD": db.password, "PGDATABASE": db.name}


def take_backup(
    platform: Platform,
    settings: Settings,
    db: DatabaseAddress,
    *,
    say: Say = print,
    prefix: str = BACKUP_PREFIX,
) -> Backup:
    """Dump production to ``<backup_dir>/<prefix><timestamp>.dump`` (0600) beside its manifest; with
    ``backup.dump_jobs`` > 1, to the folder ``<prefix><timestamp>.dumpdir`` (0700, files 0600) in parallel.

    Raises ``BackupError`` when there is no room, pg_dump fails, or the database is unreachable.
    A failed dump leaves no partial file behind.
    """
    db_image = platform.database_image()
    jobs = settings.backup_dump_jobs
    if jobs < 1:
        raise BackupError(f"backup.dump_jobs must be 1 or more, got {jobs}")
    backup_dir, final, partial = backup_paths(settings, prefix, DUMP_DIR_SUFFIX if jobs > 1 else DUMP_SUFFIX)
    # One custom-format file; or, with jobs, the directory format (the only one pg_dump writes in parallel).
    layout = f"--format=directory --jobs={jobs}" if jobs > 1 else "--format=custom"

    started = time.monotonic()
    with connect(db) as conn:
        database_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        check_room(backup_dir, database_bytes)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        tables = count_rows(conn, user_tables(conn))
        say(
            f"dumping {db.name} ({database_bytes / 1e6:.0f} MB on disk, {sum(tables.values()):,} rows) with the server's own pg_dump"
            + (f", {jobs} jobs..." if jobs > 1 else "...")
        )
        # The exported snapshot lives while this transaction is open: pg_dump must run now.
        result = platform.run_job(
            db_image,
            [
                "sh",
                "-c",
                # umask: the dump holds every row of production; only its owner may read it.
                # --compress=1: most of gzip's gain for a fraction of level 6's CPU time.
                f"umask 077 && pg_dump --version && exec pg_dump {layout} --compress=1 --no-password "
                '--snapshot="$SNAPSHOT" --file="$TARGET"',
            ],
            environment={**pg_environment(platform, db), "SNAPSHOT": snapshot, "TARGET": f"{_IN_CONTAINER}/{partial.name}"},
            mounts={str(backup_dir): _IN_CONTAINER},
            writable=[str(backup_dir)],
        )
        conn.execute("ROLLBACK")
    if result.exit_code != 0:
        _remove(partial)
        raise BackupError(f"pg_dump exited {result.exit_code}: {result.last_line}")
    os.chmod(partial, 0o700 if partial.is_dir() else 0o600)
    os.replace(partial, final)
    backup = Backup(
        path=final,
        size=_dump_size(final),
        sha256=dump_sha256(final),
        server_version=server_version,
        pg_dump_version=result.output.splitlines()[0].strip() if result.output else "unknown",
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        tables=tables,
        duration_s=round(time.monotonic() - started, 3),
    )
    write_manifest(backup)
    say(f"backup {final.name}: {backup.size / 1e6:.1f} MB, sha256 {backup.sha256[:12]}..., {backup.duration_s:.1f}s")
    return backup


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _dump_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size


def dump_sha256(path: Path) -> str:
    """The sha256 of a dump file; of a directory-format dump, the sha256 of its files' names and sha256s, sorted."""
    if not path.is_dir():
        return sha256_of(path)
    listing = "".join(f"{f.name} {sha256_of(f)}\n" for f in sorted(path.iterdir()))
    return hashlib.sha256(listing.encode()).hexdigest()


def record_base_backup(
    final: Path, *, server_version: str, tool_version: str, tables: dict[str, int], started: float
) -> tuple[Backup, int]:
    """The Backup of a base backup directory just put in place (its manifest written beside it), and how many
    files its backup_manifest lists. ``started``: ``time.monotonic()`` when taking it began."""
    manifest_file = final / DATA_DIR / PG_MANIFEST
    backup = Backup(
        path=final,
        size=sum(f.stat().st_size for f in final.rglob("*") if f.is_file()),
        sha256=sha256_of(manifest_file),
        server_version=server_version,
        pg_dump_version=tool_version,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        tables=tables,
        duration_s=round(time.monotonic() - started, 3),
        method="physical",
        rows_exact=False,
    )
    write_manifest(backup)
    return backup, len(json.loads(manifest_file.read_text())["Files"])


def write_manifest(backup: Backup) -> None:
    """deploygate's manifest beside the backup, readable by its owner only."""
    fd = os.open(backup.manifest_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(backup.to_json(), handle, indent=2, sort_keys=True)


def load_backup(manifest_path: Path) -> Backup:
    """The backup described by ``manifest_path``; raises ``BackupError`` if the file is missing or unreadable."""
    try:
        data = json.loads(manifest_path.read_text())
        data["path"] = Path(data["path"])
        return Backup(**data)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BackupError(f"cannot read backup manifest {manifest_path}: {exc}") from None


def check_integrity(backup: Backup) -> None:
    """The backup on disk is the one the manifest describes: a dump present, same size, same sha256; a base
    backup as ``_check_base_backup`` says."""
    if backup.method == "physical":
        _check_base_backup(backup)
        return
    if not backup.path.exists():
        raise BackupError(f"backup {backup.path} is missing")
    size = _dump_size(backup.path)
    if size != backup.size:
        raise BackupError(f"backup {backup.path.name} is {size} bytes, its manifest says {backup.size} (truncated?)")
    digest = dump_sha256(backup.path)
    if digest != backup.sha256:
        raise BackupError(f"backup {backup.path.name} sha256 {digest[:12]}... does not match its manifest {backup.sha256[:12]}...")


def _check_base_backup(backup: Backup) -> None:
    """The base backup on disk is the one verified when it was taken: its backup_manifest has the recorded
    sha256, and every file the manifest lists is there with its size (no data file is read)."""
    manifest_file = backup.path / DATA_DIR / PG_MANIFEST
    if not manifest_file.exists():
        raise BackupError(f"backup {backup.path} is missing (or has no {PG_MANIFEST})")
    digest = sha256_of(manifest_file)
    if digest != backup.sha256:
        raise BackupError(
            f"backup {backup.path.name}: {PG_MANIFEST} sha256 {digest[:12]}... does not match its manifest {backup.sha256[:12]}..."
        )
    for entry in json.loads(manifest_file.read_text())["Files"]:
        path = backup.path / DATA_DIR / entry["Path"]
        size = path.stat().st_size if path.exists() else None
        if size != entry["Size"]:
            found = "missing" if size is None else f"{size} bytes"
            raise BackupError(
                f"backup {backup.path.name}: {entry['Path']} is {found}, pg_basebackup wrote {entry['Size']} (changed since?)"
            )


def apply_retention(settings: Settings, keep: int | None = None, prefix: str = BACKUP_PREFIX) -> list[Path]:
    """Delete all but the newest ``keep`` backups (dump or base backup, and its manifest); returns what was deleted."""
    keep = settings.backup_keep if keep is None else keep
    backup_dir = settings.path(settings.backup_dir)
    # Dumps and base backups alike, oldest first (the stamp in the name sorts by time).
    kept = sorted(
        [*(p for suffix in (DUMP_SUFFIX, DUMP_DIR_SUFFIX, BASE_SUFFIX) for p in backup_dir.glob(f"{prefix}*{suffix}"))],
        key=lambda p: p.stem,
    )
    deleted = []
    for backup in kept[: max(0, len(kept) - keep)]:
        for path in (backup, backup.with_suffix(MANIFEST_SUFFIX)):
            if path.is_dir():
                shutil.rmtree(path)
                deleted.append(path)
            elif path.exists():
                path.unlink()
                deleted.append(path)
    return deleted


def restore_production(platform: Platform, db: DatabaseAddress, backup: Backup) -> None:
    """pg_restore --clean of ``backup`` into production's database, all or nothing (one transaction).

    Runs the server's own pg_restore (a job of the database's image) over the network.
    Raises ``BackupError`` if the backup is not what its manifest says or the restore fails.
    """
    check_integrity(backup)
    result = platform.run_job(
        platform.database_image(),
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--no-password",
            f"--dbname={db.name}",
            f"{_IN_CONTAINER}/{backup.path.name}",
        ],
        environment=pg_environment(platform, db),
        mounts={str(backup.path.parent): _IN_CONTAINER},
    )
    if result.exit_code != 0:
        raise BackupError(f"restoring {backup.path.name} into production failed: {result.last_line}")
