"""The pre-deploy gate run as a user runs it (pytest on tests_pre), against the isolated test production.

Every bad input must give a failing gate with a one-line cause and leave production's
content exactly as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploygate.backup import BackupError, check_integrity, load_backup, take_backup
from deploygate.fingerprint import compare, fingerprint
from deploygate.rehearsal import database_copy
from fixtures.stack import Production
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gate_dirs(tmp_path: Path) -> dict[str, Path]:
    return {"backup_dir": tmp_path / "backups", "reports_dir": tmp_path / "reports"}


class GateRun:
    """The outcome of one gate run: exit code, output and its JSON result."""

    def __init__(self, done: subprocess.CompletedProcess, reports: Path) -> None:
        self.code = done.returncode
        self.output = done.stdout + done.stderr
        results = sorted((reports / "predeploy").glob("*.json"))
        self.result = json.loads(results[-1].read_text()) if results else None

    def check(self, name: str) -> dict:
        assert self.result is not None, f"the gate wrote no result:\n{self.output[-2000:]}"
        return next(c for c in self.result["checks"] if c["name"] == name)


@pytest.fixture
def run_gate(production: Production, gate_dirs: dict[str, Path]):
    """Run tests_pre against the test production with ``args``; settings follow the outer test's."""

    def run(*args: str, settings: dict[str, str] | None = None, env: dict[str, str] | None = None) -> GateRun:
        s = production.settings
        overrides = {
            "project": s.project,
            "proxy_port": str(s.proxy_port),
            "state_dir": str(s.state_dir),
            "seed_rows": str(s.seed_rows),
            "backup_dir": str(gate_dirs["backup_dir"]),
            "reports_dir": str(gate_dirs["reports_dir"]),
            "expected_plan": s.expected_plan,
            "replay_max_requests": str(s.replay_max_requests),
            **(settings or {}),
        }
        argv = [sys.executable, "-m", "pytest", "tests_pre", "--gate", "predeploy", "-p", "no:cacheprovider", "-q"]
        for name, value in overrides.items():
            argv += ["--dg-set", f"{name}={value}"]
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYGATE_")}
        done = subprocess.run([*argv, *args], cwd=ROOT, env={**clean_env, **(env or {})}, capture_output=True, text=True, timeout=900)
        return GateRun(done, gate_dirs["reports_dir"])

    return run


@pytest.fixture
def untouched(production: Production) -> Iterator[None]:
    """Production's content (every table, row and column checksum) is the same after the test as before."""
    before = fingerprint(production.db)
    yield
    diff = compare(before, fingerprint(production.db))
    assert diff.identical, f"production changed: {diff.problems() or diff}"


def test_v2_safe_passes_the_whole_gate(run_gate, untouched) -> None:
    run = run_gate("--candidate", "v2-safe")
    assert run.code == 0, run.output[-3000:]
    assert run.result["passed"] and run.result["candidate"]["ref"] == "v2-safe"
    outcomes = {c["name"]: c["outcome"] for c in run.result["checks"]}
    # The replay is off on this tier's production (conftest): its checks say so, the rest pass.
    replay_off = {name for name, outcome in outcomes.items() if name.startswith("test_replay_") and outcome == "not reported"}
    assert len(replay_off) == 3, outcomes
    assert len(outcomes) >= 15 and all(outcome == "passed" for name, outcome in outcomes.items() if name not in replay_off), outcomes
    # The content check says how it proved each table: the plan's own row by row, the rest by statistics.
    # v2-safe's renames are state-only (the database names are kept): no table is the SQL's, none is hashed.
    proof = run.result["details"]["rehearsal"]["content_proof"]
    assert not proof["rows"] and "public.unified_db_personlink" in proof["statistics"], proof
    assert "untouched by statistics" in run.check("test_no_row_lost_or_altered")["value"]


def test_a_logical_backup_in_parallel_is_a_private_folder_the_copy_restores(run_gate, untouched) -> None:
    run = run_gate("--candidate", "v2-safe", "-k", "backup", settings={"backup_method": "logical", "backup_dump_jobs": "2"})
    assert run.code == 0, run.output[-3000:]
    assert "folders 0o700" in run.check("test_backup_is_private_and_matches_its_manifest")["value"]
    assert run.check("test_backup_restores")["outcome"] == "passed"


def test_v2_is_stopped_by_the_compatibility_checks(run_gate, untouched) -> None:
    run = run_gate("--candidate", "v2", "-k", "compat")
    assert run.code == 1
    message = run.check("test_production_release_works_on_the_new_schema")["message"]
    assert 'relation "members_fahaniecaresmember" does not exist' in message
    assert "fahanie_cares_member_id does not exist" in message


def test_checks_skipped_by_name_cost_no_exercise(run_gate, untouched) -> None:
    """The rehearsal still runs for the checks that need it, but the ORM exercises only the skipped checks
    consume are never run (issue 27: skipping them by name used to cost the whole compatibility stage)."""
    consumers = [
        "test_production_release_works_on_the_new_schema",
        "test_candidate_works_on_the_old_schema",
        "test_orm_works_on_the_new_names",
    ]
    skips = [arg for name in consumers for arg in ("--skip-check", name)]
    run = run_gate("--candidate", "v2", "-s", "-k", "every_migration_applies or compat or orm_works", *skips, "--reason", "false positive")
    assert run.code == 0, run.output[-3000:]
    assert run.check("test_every_migration_applies")["outcome"] == "passed"
    assert all(run.check(name)["outcome"] == "skipped on request" for name in consumers), run.result["checks"]
    assert "exercising no model (no check that runs consumes an ORM exercise)" in run.output, run.output[-3000:]


def test_the_apps_own_checks_are_rows_of_the_gate_and_fail_it_with_their_message(run_gate, untouched) -> None:
    run = run_gate("--candidate", "v2-drops-member", "-k", "app_check")
    assert run.code == 1, run.output[-3000:]
    checks = {c["name"]: c for c in run.result["checks"]}
    assert len(checks) == 5 and all(name.startswith("test_app_check[test_seed.py::") for name in checks)
    failed = [name for name, c in checks.items() if c["outcome"] == "failed"]
    assert failed == ["test_app_check[test_seed.py::test_the_api_keeps_the_member_of_a_link_it_creates]"]
    assert "the API dropped the member of the link it created" in checks[failed[0]]["message"]


def test_broken_migration_fails_the_migration_check(run_gate, untouched) -> None:
    run = run_gate("--candidate", "v2-broken-migration", "-k", "every_migration_applies")
    assert run.code == 1
    check = run.check("test_every_migration_applies")
    assert check["outcome"] == "failed"
    assert "unified_db.0023_rename_fahanie_cares_member_personlink_bm_parliament_member failed" in check["message"]
    assert "fails halfway by design" in check["message"]


def test_unreachable_health_url_fails_in_one_line(run_gate, untouched) -> None:
    run = run_gate("-k", "production_reports_healthy", settings={"proxy_port": str(free_port())})
    assert run.code == 1
    message = run.check("test_production_reports_healthy")["message"]
    assert "unreachable" in message and "\n" not in message


def test_wrong_db_credentials_fail_in_one_line(run_gate, untouched) -> None:
    run = run_gate("-k", "backup_is_private", env={"DEPLOYGATE_DB_PASSWORD": "not-the-password"})
    assert run.code == 1
    message = run.check("test_backup_is_private_and_matches_its_manifest")["message"]
    assert "password authentication failed" in message and "not-the-password" not in run.output


def test_missing_candidate_image_fails_in_one_line(run_gate, untouched) -> None:
    run = run_gate("--candidate", "deploygate/no-such-image:1", "-k", "plan_is_the_expected_one")
    assert run.code == 1
    assert "neither a release of demo nor an image the engine has" in run.check("test_plan_is_the_expected_one")["message"]


def test_no_room_for_the_backup(run_gate, untouched, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], check=True)
    try:
        run = run_gate("-k", "backup_is_private", settings={"backup_dir": str(tiny)})
    finally:
        subprocess.run(["umount", str(tiny)], check=True)
    assert run.code == 1
    assert "no room for the backup" in run.check("test_backup_is_private_and_matches_its_manifest")["message"]


@pytest.fixture
def fresh_backup(production: Production, tmp_path: Path):
    settings = production.settings.replace(backup_dir=str(tmp_path / "b"))
    return settings, take_backup(production.platform, settings, production.db, say=lambda m: None)


def _db_image(production: Production) -> str:
    return production.platform.database_image()


def test_truncated_backup_is_refused(production: Production, fresh_backup) -> None:
    settings, backup = fresh_backup
    with backup.path.open("r+b") as handle:
        handle.truncate(backup.size // 2)
    with pytest.raises(BackupError, match=r"truncated\?"):
        with database_copy(production.platform, settings, _db_image(production), backup, say=lambda m: None):
            pass


def test_corrupt_backup_is_refused_by_checksum_and_by_restore(production: Production, fresh_backup) -> None:
    settings, backup = fresh_backup
    data = bytearray(backup.path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    backup.path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="does not match its manifest"):
        check_integrity(backup)
    # Even a manifest rewritten to match the damage does not make it a backup: the restore proves it.
    manifest = json.loads(backup.manifest_path.read_text())
    from deploygate.backup import sha256_of

    manifest["sha256"] = sha256_of(backup.path)
    backup.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="(restoring .* failed|differs from the manifest)"):
        with database_copy(production.platform, settings, _db_image(production), load_backup(backup.manifest_path), say=lambda m: None):
            pass
