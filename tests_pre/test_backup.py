"""The backup: the server's own pg_basebackup or pg_dump, private, described by a manifest, and proven by a copy.

A physical backup (``backup.method`` physical, or auto where the role may replicate) is proven by
pg_verifybackup when taken, its files as it left them, and a copy that starts on it holding every
table; a logical one by a restore whose row counts match those taken in pg_dump's own snapshot.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from deploygate.backup import DATA_DIR, PG_MANIFEST, dump_sha256, sha256_of

pytestmark = pytest.mark.backup


def _modes(paths: list[Path]) -> dict[Path, int]:
    return {path: stat.S_IMODE(path.stat().st_mode) for path in paths}


def test_backup_is_private_and_matches_its_manifest(backup_archive, gate_measure) -> None:
    if backup_archive.path.is_dir():  # a base backup, or a dump in the directory format (backup.dump_jobs)
        inside = [p for p in backup_archive.path.rglob("*")]
        files = _modes([p for p in inside if p.is_file()] + [backup_archive.manifest_path])
        dirs = _modes([backup_archive.path] + [p for p in inside if p.is_dir()])
        size = sum(p.stat().st_size for p in inside if p.is_file())
    else:
        files, dirs = _modes([backup_archive.path, backup_archive.manifest_path]), {}
        size = backup_archive.path.stat().st_size
    physical = backup_archive.method == "physical"
    digest = sha256_of(backup_archive.path / DATA_DIR / PG_MANIFEST) if physical else dump_sha256(backup_archive.path)
    gate_measure(
        f"{backup_archive.method}: files {', '.join(sorted({oct(m) for m in files.values()}))}"
        + (f", folders {', '.join(sorted({oct(m) for m in dirs.values()}))}" if dirs else "")
        + f", {backup_archive.size:,} bytes, sha256 {backup_archive.sha256[:12]}",
        "files 0o600 and folders 0o700, as the manifest says",
    )
    loose = {str(p): oct(m) for p, m in files.items() if m != 0o600} | {str(p): oct(m) for p, m in dirs.items() if m != 0o700}
    assert not loose, f"readable beyond their owner: {loose}"
    assert backup_archive.path.name.startswith("pre_migration_")
    assert backup_archive.size == size > 0
    assert digest == backup_archive.sha256
    assert backup_archive.tables, "the manifest lists no tables"


def test_backup_uses_the_servers_major_version(backup_archive, gate_measure) -> None:
    server_major = backup_archive.server_version.split(".")[0]
    # "pg_dump (PostgreSQL) 15.18 (Debian ...)", "pg_basebackup (PostgreSQL) 15.18 ..."
    client, rest = backup_archive.pg_dump_version.split(" (", 1)
    client_major = rest.split(")")[1].strip().split(".")[0]
    gate_measure(f"{client} {client_major}", f"server {server_major}")
    assert client_major == server_major, f"{client} {client_major} against server {server_major}"


def test_backup_restores(db_copy, backup_archive, gate_measure) -> None:
    if backup_archive.method == "physical":
        started = db_copy.started_tables
        gate_measure(
            f"a copy started on it in {db_copy.ready_s:.2f}s holds {len(started)} tables", f"{len(backup_archive.tables)} tables (manifest)"
        )
        assert set(backup_archive.tables) <= set(started), f"missing: {sorted(set(backup_archive.tables) - set(started))}"
        return
    # Counted right after the restore: later checks migrate the copy, and its rows with it.
    restored = db_copy.restored_rows
    gate_measure(f"{sum(restored.values()):,} rows in {len(restored)} tables", f"{sum(backup_archive.tables.values()):,} rows (manifest)")
    assert {t: restored.get(t) for t in backup_archive.tables} == backup_archive.tables
    print(f"restored {sum(restored.values()):,} rows in {len(restored)} tables from {backup_archive.path.name}")
