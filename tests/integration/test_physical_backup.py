"""Physical backups and the copies started on them, on the test production's real server.

What only a real server and engine can show: pg_basebackup and pg_verifybackup of the server's own
version, a copy that starts on the backup without copying it and never writes it, a copy's
password of its own, nothing left behind, a damaged backup refused, and the gate's logical path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploygate import rehearsal
from deploygate.backup import DATA_DIR, PG_MANIFEST, BackupError, check_integrity, sha256_of
from deploygate.backup_physical import take_physical
from deploygate.database import connect
from deploygate.platform.scratch import COPIES_DIR
from fixtures.stack import Production


@pytest.fixture
def base_backup(production: Production, tmp_path: Path):
    settings = production.settings.replace(backup_dir=str(tmp_path / "b"))
    lines: list[str] = []
    return settings, take_physical(production.platform, settings, production.db, say=lines.append, prefix="pre_migration_"), lines


def _files(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*") if p.is_file()}


def test_a_copy_starts_on_the_backup_and_never_writes_it(production: Production, base_backup) -> None:
    settings, backup, lines = base_backup
    assert backup.method == "physical" and backup.path.is_dir()
    assert any("every checksum verified" in line for line in lines), lines
    check_integrity(backup)
    data = backup.path / DATA_DIR
    before = _files(data)
    with connect(production.db) as conn:
        expected = conn.execute("SELECT count(*) FROM unified_db_personlink").fetchone()[0]
    with rehearsal.physical_copy(production.platform, settings, production.platform.database_image(), backup, say=lambda m: None) as copy:
        assert copy.host_address.password != production.db.password, "the copy must not answer to production's password"
        assert set(backup.tables) <= set(copy.started_tables)
        with connect(copy.host_address) as conn:
            assert conn.execute("SELECT count(*) FROM unified_db_personlink").fetchone()[0] == expected
            conn.execute("UPDATE unified_db_personlink SET id = id")
            conn.execute("CREATE TABLE written_by_the_copy AS SELECT * FROM unified_db_personlink")
            conn.commit()
        copies = Path(settings.path(settings.backup_dir)) / COPIES_DIR
        written = sum(p.stat().st_size for p in copies.rglob("*") if p.is_file())
        assert written > 0, "the copy's writes must land in its own directory"
        name = copy.scratch.database.name
    assert _files(data) == before, "the backup's files changed under a copy"
    check_integrity(backup)
    assert not any(copies.iterdir()), f"a copy's directory was left behind: {list(copies.iterdir())}"
    assert not [v for v in production.platform.client.volumes.list() if v.name == name], "the copy's volume was left behind"


def test_two_copies_of_one_backup_do_not_see_each_others_writes(production: Production, base_backup) -> None:
    settings, backup, _ = base_backup
    image = production.platform.database_image()
    with rehearsal.physical_copy(production.platform, settings, image, backup, say=lambda m: None) as first:
        with rehearsal.physical_copy(production.platform, settings, image, backup, say=lambda m: None) as second:
            with connect(first.host_address) as conn:
                conn.execute("DELETE FROM unified_db_personlink")
                conn.commit()
            with connect(second.host_address) as conn:
                assert conn.execute("SELECT count(*) FROM unified_db_personlink").fetchone()[0] > 0


def test_a_truncated_data_file_is_refused(production: Production, base_backup) -> None:
    settings, backup, _ = base_backup
    biggest = max((p for p in (backup.path / DATA_DIR / "base").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with biggest.open("r+b") as handle:
        handle.truncate(biggest.stat().st_size // 2)
    with pytest.raises(BackupError, match="pg_basebackup wrote"):
        with rehearsal.database_copy(production.platform, settings, production.platform.database_image(), backup, say=lambda m: None):
            pass


def test_an_altered_backup_manifest_is_refused(production: Production, base_backup) -> None:
    _, backup, _ = base_backup
    manifest = backup.path / DATA_DIR / PG_MANIFEST
    os.chmod(manifest, 0o600)
    manifest.write_text(manifest.read_text().replace('"Size"', '"Size" ', 1))
    assert sha256_of(manifest) != backup.sha256
    with pytest.raises(BackupError, match="does not match its manifest"):
        check_integrity(backup)
