"""The rollback path for a plan that cannot be reversed: restore the backup, then put the window's rows back."""

from __future__ import annotations

import pytest
import requests

from deploygate import window
from deploygate.backup import restore_production, take_backup
from deploygate.database import connect
from deploygate.fingerprint import compare, fingerprint
from fixtures.stack import Production


@pytest.mark.parametrize("dump_jobs", [1, 2], ids=["custom-format file", "directory format, 2 jobs"])
def test_restore_then_reapply_loses_no_row(production: Production, tmp_path, dump_jobs: int) -> None:
    settings = production.settings.replace(backup_dir=str(tmp_path / "backups"), backup_dump_jobs=dump_jobs)
    floors = window.max_ids(production.db)
    backup = take_backup(production.platform, settings, production.db, say=lambda m: None)
    assert backup.path.is_dir() == (dump_jobs > 1), backup.path
    created = []
    for n in range(5):
        answer = requests.post(f"{production.url}/api/links/", json={"full_name": f"Window {n}", "email": f"w{n}@x.test"}, timeout=10)
        assert answer.status_code == 201, answer.text
        created.append(answer.json()["id"])
    expected = fingerprint(production.db)

    export = tmp_path / "rollback_data.csv"
    with connect(production.db) as conn:
        # each create also writes an audit row: every row above its table's floor is the window's
        written = sum(
            conn.execute(f'SELECT count(*) FROM "{table}" WHERE id > %s', [floor]).fetchone()[0]
            for table, floor in floors.items()
            if table != "django_migrations"
        )
    assert written >= 5
    assert window.export_rows(production.db, floors, export) == written
    assert oct(export.stat().st_mode & 0o777) == "0o600"

    restore_production(production.platform, production.db, backup)
    with connect(production.db) as conn:
        assert conn.execute("SELECT count(*) FROM unified_db_personlink WHERE id = ANY(%s)", [created]).fetchone()[0] == 0

    assert window.reapply_rows(production.db, export) == written
    diff = compare(expected, fingerprint(production.db))
    assert diff.data_intact and not diff.renamed_tables, diff.problems()
    body = requests.get(f"{production.url}/api/links/{created[-1]}/", timeout=10).json()
    assert body["full_name"] == "Window 4"
    # ...and the id sequence moved past them: new writes do not collide with re-applied rows.
    after = requests.post(f"{production.url}/api/links/", json={"full_name": "After", "email": "after@x.test"}, timeout=10)
    assert after.status_code == 201 and after.json()["id"] > max(created), after.text
