"""Which backup the predeploy takes (backup.method), and the checks of a base backup that read no data file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploygate import backup_physical, config
from deploygate.backup import DATA_DIR, PG_MANIFEST, Backup, BackupError, apply_retention, check_integrity, dump_sha256, sha256_of


def _base_backup(root: Path, files: dict[str, bytes]) -> Backup:
    data = root / "pre_migration_20260101_000000.base" / DATA_DIR
    for name, content in files.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(content)
    manifest = {"Files": [{"Path": name, "Size": len(content)} for name, content in files.items()]}
    (data / PG_MANIFEST).write_text(json.dumps(manifest))
    return Backup(
        path=data.parent,
        size=0,
        sha256=sha256_of(data / PG_MANIFEST),
        server_version="15",
        pg_dump_version="pg_basebackup (PostgreSQL) 15",
        created_at="",
        tables={},
        duration_s=0,
        method="physical",
        rows_exact=False,
    )


def test_a_base_backup_as_taken_passes(tmp_path: Path) -> None:
    check_integrity(_base_backup(tmp_path, {"base/1/1259": b"x" * 8192, "global/pg_control": b"c" * 100}))


def test_a_missing_or_resized_file_is_named(tmp_path: Path) -> None:
    backup = _base_backup(tmp_path, {"base/1/1259": b"x" * 8192, "global/pg_control": b"c" * 100})
    (backup.path / DATA_DIR / "base/1/1259").write_bytes(b"x" * 4096)
    with pytest.raises(BackupError, match=r"base/1/1259 is 4096 bytes, pg_basebackup wrote 8192"):
        check_integrity(backup)
    (backup.path / DATA_DIR / "global/pg_control").unlink()
    (backup.path / DATA_DIR / "base/1/1259").write_bytes(b"x" * 8192)
    with pytest.raises(BackupError, match=r"global/pg_control is missing"):
        check_integrity(backup)


def test_a_changed_backup_manifest_is_refused(tmp_path: Path) -> None:
    backup = _base_backup(tmp_path, {"base/1/1259": b"x"})
    (backup.path / DATA_DIR / PG_MANIFEST).write_text('{"Files": []}')
    with pytest.raises(BackupError, match="does not match its manifest"):
        check_integrity(backup)


def test_retention_keeps_the_newest_of_dumps_and_base_backups_together(tmp_path: Path) -> None:
    for stamp, kind in (("20260101", ".dump"), ("20260102", ".base"), ("20260103", ".dumpdir"), ("20260104", ".base")):
        path = tmp_path / f"pre_migration_{stamp}_000000{kind}"
        if kind == ".dumpdir":
            path.mkdir()
            (path / "toc.dat").write_bytes(b"toc")
        elif kind == ".base":
            (path / DATA_DIR).mkdir(parents=True)
            (path / DATA_DIR / "PG_VERSION").write_text("15")
        else:
            path.write_bytes(b"dump")
        path.with_suffix(".json").write_text("{}")
    (tmp_path / ".copies").mkdir()
    settings = config.load(root=tmp_path, environ={}).replace(backup_dir=str(tmp_path))
    deleted = apply_retention(settings, keep=2)
    assert sorted(p.name for p in deleted) == sorted(
        ["pre_migration_20260101_000000.dump", "pre_migration_20260101_000000.json", "pre_migration_20260102_000000.base"]
        + ["pre_migration_20260102_000000.json"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".copies",
        "pre_migration_20260103_000000.dumpdir",
        "pre_migration_20260103_000000.json",
        "pre_migration_20260104_000000.base",
        "pre_migration_20260104_000000.json",
    ]


class _Taken:
    """Records which backup was taken (the takers are replaced: this tests the choice alone)."""

    def __init__(self, monkeypatch, *, refusal: str | None = None, physical_error: str | None = None) -> None:
        self.calls: list[str] = []
        monkeypatch.setattr(backup_physical, "replication_refusal", lambda db: refusal)

        def physical(*args, **kwargs):
            self.calls.append("physical")
            if physical_error:
                raise BackupError(physical_error)
            return "physical"

        def logical(*args, **kwargs):
            self.calls.append("logical")
            return "logical"

        monkeypatch.setattr(backup_physical, "take_physical", physical)
        monkeypatch.setattr(backup_physical, "take_backup", logical)


def _take(method: str) -> tuple[object, list[str]]:
    said: list[str] = []
    settings = config.load(root=Path("/nonexistent"), environ={"DEPLOYGATE_BACKUP_METHOD": method})
    return backup_physical.take_by_method(None, settings, None, say=said.append), said


def test_auto_takes_a_base_backup_where_the_role_may_replicate(monkeypatch) -> None:
    taken = _Taken(monkeypatch)
    assert _take("auto")[0] == "physical" and taken.calls == ["physical"]


def test_auto_falls_back_to_a_dump_and_says_why(monkeypatch) -> None:
    taken = _Taken(monkeypatch, refusal="the role app has neither REPLICATION nor superuser")
    result, said = _take("auto")
    assert result == "logical" and taken.calls == ["logical"]
    assert said == ["logical backup (backup.method auto): the role app has neither REPLICATION nor superuser"]
    refused = "pg_basebackup exited 1: FATAL:  no pg_hba.conf entry for replication connection from host"
    taken = _Taken(monkeypatch, physical_error=refused)
    result, said = _take("auto")
    assert result == "logical" and taken.calls == ["physical", "logical"] and "refused a base backup" in said[0]


def test_physical_asked_for_fails_rather_than_falling_back(monkeypatch) -> None:
    _Taken(monkeypatch, physical_error="pg_basebackup exited 1: FATAL:  no pg_hba.conf entry for replication connection")
    with pytest.raises(BackupError, match="no pg_hba.conf entry"):
        _take("physical")


def test_a_broken_base_backup_is_an_error_even_under_auto(monkeypatch) -> None:
    _Taken(monkeypatch, physical_error="pg_basebackup exited 1: could not write file: No space left on device")
    with pytest.raises(BackupError, match="No space left"):
        _take("auto")


def test_logical_takes_a_dump_without_asking_the_server(monkeypatch) -> None:
    taken = _Taken(monkeypatch, refusal="never asked")
    assert _take("logical")[0] == "logical" and taken.calls == ["logical"]


def test_a_directory_format_dump_is_checked_file_by_file(tmp_path: Path) -> None:
    folder = tmp_path / "pre_migration_20260101_000000.dumpdir"
    folder.mkdir()
    (folder / "toc.dat").write_bytes(b"toc")
    (folder / "3001.dat.gz").write_bytes(b"rows")
    backup = Backup(folder, 7, dump_sha256(folder), "15", "pg_dump (PostgreSQL) 15", "", {}, 0)
    check_integrity(backup)
    (folder / "3001.dat.gz").write_bytes(b"ROWS")  # same size, other content
    with pytest.raises(BackupError, match="does not match its manifest"):
        check_integrity(backup)
    (folder / "3001.dat.gz").unlink()
    with pytest.raises(BackupError, match="is 3 bytes, its manifest says 7"):
        check_integrity(backup)
