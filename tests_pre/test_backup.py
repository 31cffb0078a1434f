"""The backup: the server's own pg_dump, private, described by a manifest, and proven by a restore."""

from __future__ import annotations

import stat

import pytest

from deploygate.backup import sha256_of

pytestmark = pytest.mark.backup


def test_backup_is_private_and_matches_its_manifest(backup_archive, gate_measure) -> None:
    modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in (backup_archive.path, backup_archive.manifest_path)}
    gate_measure(
        f"mode {', '.join(sorted(modes))}, {backup_archive.size:,} bytes, sha256 {backup_archive.sha256[:12]}",
        "0o600, as the manifest says",
    )
    for path in (backup_archive.path, backup_archive.manifest_path):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path.name} has mode {oct(mode)}, expected 0o600"
    assert backup_archive.path.name.startswith("pre_migration_")
    assert backup_archive.size == backup_archive.path.stat().st_size > 0
    assert sha256_of(backup_archive.path) == backup_archive.sha256
    assert backup_archive.tables, "the manifest lists no tables"


def test_backup_uses_the_servers_major_version(backup_archive, gate_measure) -> None:
    server_major = backup_archive.server_version.split(".")[0]
    # "pg_dump (PostgreSQL) 15.18 (Debian ...)"
    dump_major = backup_archive.pg_dump_version.split(")")[1].strip().split(".")[0]
    gate_measure(f"pg_dump {dump_major}", f"server {server_major}")
    assert dump_major == server_major, f"pg_dump {dump_major} against server {server_major}"


def test_backup_restores(db_copy, backup_archive, gate_measure) -> None:
    # Counted right after the restore: later checks migrate the copy, and its rows with it.
    restored = db_copy.restored_rows
    gate_measure(f"{sum(restored.values()):,} rows in {len(restored)} tables", f"{sum(backup_archive.tables.values()):,} rows (manifest)")
    assert {t: restored.get(t) for t in backup_archive.tables} == backup_archive.tables
    print(f"restored {sum(restored.values()):,} rows in {len(restored)} tables from {backup_archive.path.name}")
