"""Physical backups and the copies started on them, on the test production's real server.

What only a real server and engine can show: pg_basebackup and pg_verifybackup of the server's own
version, a copy that starts on the backup without copying it and never writes it, a copy's
password of its own, nothing left behind, a damaged backup refused, and the gate's logical path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploygate import rehearsal
from deploygate.backup import DATA_DIR, PG_MANIFEST, BackupError, check_integrity, sha256_of
from deploygate.backup_physical import take_physical
from deploygate.database import connect
from deploygate.platform.clone import CloneError, make_clone_filesystem, remove_clone_filesystem
from deploygate.platform.scratch import COPIES_DIR
from fixtures.stack import Production


@pytest.fixture(scope="module")
def clone_filesystem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An XFS with reflinks on a loop device: this machine's own disk (ext4) cannot clone files."""
    root = tmp_path_factory.mktemp("clonefs")
    image, mount = root / "xfs.img", root / "mnt"
    make_clone_filesystem(image, mount, size_gb=4)
    try:
        yield mount
    finally:
        remove_clone_filesystem(image, mount)


@pytest.fixture(params=["overlay", "clone"])
def base_backup(request: pytest.FixtureRequest, production: Production, tmp_path: Path):
    """A physical backup, on this machine's disk (copies are overlays) or on a filesystem that clones."""
    where = request.getfixturevalue("clone_filesystem") / tmp_path.name if request.param == "clone" else tmp_path
    settings = production.settings.replace(backup_dir=str(where / "b"))
    lines: list[str] = []
    return settings, take_physical(production.platform, settings, production.db, say=lines.append, prefix="pre_migration_"), lines


def _used_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def _files(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*") if p.is_file()}


def test_a_copy_starts_on_the_backup_and_never_writes_it(production: Production, base_backup) -> None:
    settings, backup, lines = base_backup
    kind = "clone" if "clonefs" in str(backup.path) else "overlay"
    assert backup.method == "physical" and backup.path.is_dir()
    assert any("every checksum verified" in line for line in lines), lines
    check_integrity(backup)
    data = backup.path / DATA_DIR
    before = _files(data)
    with connect(production.db) as conn:
        expected = conn.execute("SELECT count(*) FROM unified_db_personlink").fetchone()[0]
    with rehearsal.physical_copy(production.platform, settings, production.platform.database_image(), backup, say=lambda m: None) as copy:
        assert copy.scratch.database.copy_kind == kind
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


def test_a_clone_costs_only_the_blocks_it_writes(production: Production, clone_filesystem: Path, tmp_path: Path) -> None:
    """Reading every row of a table leaves a clone's cost unchanged, where an overlay copies the table up whole."""
    settings = production.settings.replace(backup_dir=str(clone_filesystem / tmp_path.name / "b"))
    backup = take_physical(production.platform, settings, production.db, say=lambda m: None, prefix="pre_migration_")
    size = sum(p.stat().st_size for p in (backup.path / DATA_DIR).rglob("*") if p.is_file())
    before = _used_bytes(clone_filesystem)
    with rehearsal.physical_copy(production.platform, settings, production.platform.database_image(), backup, say=lambda m: None) as copy:
        with connect(copy.host_address) as conn:
            conn.execute("SELECT count(*), max(id) FROM unified_db_personlink").fetchone()
        cost = _used_bytes(clone_filesystem) - before
    assert copy.scratch.database.copy_kind == "clone"
    assert cost < size / 4, f"the clone cost {cost:,} bytes on disk for a {size:,}-byte backup it only read"


def test_clone_asked_where_the_filesystem_cannot_clone_is_one_line_and_leaves_nothing(production: Production, tmp_path: Path) -> None:
    settings = production.settings.replace(backup_dir=str(tmp_path / "b"), backup_copy="clone")
    backup = take_physical(production.platform, settings, production.db, say=lambda m: None, prefix="pre_migration_")
    before = {v.name for v in production.platform.client.volumes.list()}
    with pytest.raises(CloneError, match="cannot clone files") as raised:
        with rehearsal.physical_copy(production.platform, settings, production.platform.database_image(), backup, say=lambda m: None):
            pass
    assert "\n" not in str(raised.value)
    assert {v.name for v in production.platform.client.volumes.list()} == before, "a volume was left behind"
    assert not any((tmp_path / "b" / COPIES_DIR).iterdir()), "a copy's directory was left behind"
