"""Snapshot backups: production's data directory on a filesystem that clones, backed up by pg_backup_start/stop
around clones; checked by the real pg_verifybackup (checksums too), a copy started on it, nothing copied."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploygate import production as prod
from deploygate import rehearsal
from deploygate.backup import DATA_DIR, BackupError
from deploygate.backup_physical import take_by_method
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect, db_password
from deploygate.errors import ConfigError
from deploygate.platform.clone import make_clone_filesystem, remove_clone_filesystem
from deploygate.platform.docker_host import DockerHost
from deploygate.platform.specs import database_spec
from fixtures.stack import Production

ROWS = 1_000_000  # about 130 MB: well above the one WAL segment (16 MB) the backup makes production write


def _used_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


@pytest.fixture(scope="module")
def snapshot_production(production: Production, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DockerHost, Settings, Path]]:
    """A database of its own whose data directory is on an XFS with reflinks (a loop device), beside backup.dir."""
    root = tmp_path_factory.mktemp("snapfs")
    image, mount = root / "xfs.img", root / "mnt"
    make_clone_filesystem(image, mount, size_gb=4)
    settings = production.settings.replace(
        project=f"{production.settings.project}snap",
        db_data_dir=str(mount / "pgdata"),
        backup_dir=str(mount / "backups"),
        backup_method="snapshot",
        db_standbys=0,
    )
    platform = DockerHost(production.platform.client, settings)
    try:
        platform.ensure_database(platform.service_image("postgres", say=lambda message: None), db_password(settings, create=True))
        with connect(platform.database()) as conn:
            conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO items (body) SELECT md5(g::text) FROM generate_series(1, %s) g", (ROWS,))
            conn.execute("ANALYZE items")
        yield platform, settings, mount
    finally:
        prod.down(platform, settings, volumes=True)
        remove_clone_filesystem(image, mount)


def _write_while(db: DatabaseAddress, stop: threading.Event, written: list[int]) -> None:
    with connect(db) as conn:
        while not stop.is_set() and len(written) < 100_000:
            written.append(conn.execute("INSERT INTO items (body) VALUES ('during') RETURNING id").fetchone()[0])


def test_a_snapshot_copies_no_data(snapshot_production) -> None:
    platform, settings, mount = snapshot_production
    db = platform.database()
    with connect(db) as conn:
        database_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    used_before = _used_bytes(mount)
    lines: list[str] = []
    backup = take_by_method(platform, settings, db, say=lines.append, prefix="pre_migration_")
    written_bytes = _used_bytes(mount) - used_before
    assert "a snapshot of" in lines[-1], lines
    assert backup.method == "physical" and backup.pg_dump_version.startswith("pg_backup_start (PostgreSQL) 15")
    assert backup.size > database_bytes, "the backup holds every file of the cluster"
    # Blocks shared with production: the backup wrote metadata and its manifest; production a new WAL segment
    # (pg_backup_stop switches segments) and what its checkpoint flushed.
    assert written_bytes < database_bytes / 4, f"{written_bytes:,} bytes written for a {database_bytes:,}-byte database"


def test_a_snapshot_taken_under_writes_passes_pg_verifybackup_and_a_copy_starts_on_it(snapshot_production) -> None:
    platform, settings, _ = snapshot_production
    db = platform.database()
    stop, written = threading.Event(), []
    writer = threading.Thread(target=_write_while, args=(db, stop, written))
    writer.start()  # production keeps writing through the backup: the backup must still be consistent
    try:
        backup = take_by_method(platform, settings, db, say=lambda message: None, prefix="pre_migration_")
    finally:
        stop.set()
        writer.join()
    assert written, "nothing was written during the backup: the test proves nothing"
    with connect(db) as conn:
        slots = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0]
    assert slots == 0, "the backup's temporary slot outlived it (it would hold WAL forever)"
    # The full check, checksums included, by the server's own pg_verifybackup.
    full = platform.run_job(
        platform.database_image(), ["pg_verifybackup", f"/b/{DATA_DIR}"], environment={}, mounts={str(backup.path): "/b"}
    )
    assert full.exit_code == 0 and "successfully verified" in full.output, full.output
    with rehearsal.physical_copy(platform, settings, platform.database_image(), backup, say=lambda message: None) as copy:
        with connect(copy.host_address) as conn:
            before = conn.execute("SELECT count(*) FROM items WHERE body <> 'during'").fetchone()[0]
            during = conn.execute("SELECT count(*) FROM items WHERE body = 'during'").fetchone()[0]
    assert before == ROWS
    assert during <= len(written), "the copy holds rows production never committed"


def test_snapshot_asked_where_it_cannot_be_is_one_line_and_leaves_nothing(production: Production, tmp_path: Path) -> None:
    settings = production.settings.replace(backup_method="snapshot", backup_dir=str(tmp_path / "b"))
    with pytest.raises(BackupError) as raised:
        take_by_method(production.platform, settings, production.db, say=lambda message: None)
    assert "database.data_dir is empty" in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "b").exists(), "nothing made for a refused backup"


def test_a_data_dir_set_after_the_first_start_is_refused(snapshot_production, tmp_path: Path) -> None:
    platform, settings, _ = snapshot_production
    moved = settings.replace(db_data_dir=str(tmp_path / "elsewhere"))
    image = platform.service_image("postgres", say=lambda message: None)
    with pytest.raises(ConfigError, match="keeps production's data in .*pgdata, the configuration asks for .*elsewhere"):
        DockerHost(platform.client, moved).ensure_database(image, db_password(moved))
    assert database_spec(moved, image, "x").mounts[0].volume_options["device"].endswith("elsewhere")
    assert not (tmp_path / "elsewhere").exists(), "nothing created for a refused configuration"
