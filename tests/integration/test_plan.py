"""`deploygate plan` as a pull request's job runs it, against the isolated test production.

v2 (the seed's plain rename) must show the failing direction and the rename's SQL and exit 1;
v2-safe must pass and exit 0; a second plan of the same image on the same production reuses
the gate's result. Production's content is never changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploygate.fingerprint import compare, fingerprint
from fixtures.stack import Production

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plan(production: Production, tmp_path: Path):
    """Run ``python -m deploygate plan`` on the test production; returns (exit code, stderr, body, step summary)."""
    s = production.settings
    summary = tmp_path / "step_summary.md"

    def run(candidate: str, fmt: str = "markdown") -> tuple[int, str, str, str]:
        sets = {
            "project": s.project,
            "proxy_port": str(s.proxy_port),
            "state_dir": str(s.state_dir),
            "seed_rows": str(s.seed_rows),
            "backup_dir": str(tmp_path / "backups"),
            "reports_dir": str(tmp_path / "reports"),
            "logs_dir": str(tmp_path / "logs"),
        }
        output = tmp_path / f"plan_{candidate}.{fmt}"
        argv = [sys.executable, "-m", "deploygate", "plan", "--candidate", candidate, "--format", fmt, "--output", str(output)]
        for name, value in sets.items():
            argv += ["--set", f"{name}={value}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPLOYGATE_", "GITHUB_"))}
        done = subprocess.run(
            argv, cwd=ROOT, env={**env, "GITHUB_STEP_SUMMARY": str(summary)}, capture_output=True, text=True, timeout=1200
        )
        body = output.read_text() if output.exists() else ""
        return done.returncode, done.stderr, body, summary.read_text() if summary.exists() else ""

    before = fingerprint(production.db)
    yield run
    assert compare(before, fingerprint(production.db)).identical, "the plan changed production"


def test_plan_of_v2_shows_the_failing_direction_and_the_renames_sql(plan) -> None:
    code, stderr, body, summary = plan("v2")
    assert code == 1, stderr[-3000:]
    print(body)
    assert "## deploygate plan: `v2` ❌ fails" in body
    assert "| production release on the migrated schema | ❌" in body
    assert 'relation "members_fahaniecaresmember" does not exist' in body
    assert "fahanie_cares_member_id does not exist" in body
    assert 'RENAME COLUMN "fahanie_cares_member_id" TO "bm_parliament_member_id"' in body
    assert "ACCESS EXCLUSIVE" in body and "`public.unified_db_personlink`" in body
    assert "**Fix:**" in body and "SeparateDatabaseAndState" in body
    assert summary == body + "\n", "the step summary holds the same markdown"
    # The same image on the same production: the gate's result is reused, and JSON says the same.
    code, stderr, body, _ = plan("v2", "json")
    assert code == 1 and "reused" in stderr, stderr[-2000:]
    view = json.loads(body)
    assert view["verdict"] == "fails" and view["gate_result_reused"]
    failing = [d for d in view["compat"]["directions"] if d["items"]]
    assert {d["direction"] for d in failing} >= {"production release on the migrated schema"}


def test_plan_of_v2_safe_passes(plan) -> None:
    code, stderr, body, _ = plan("v2-safe")
    assert code == 0, stderr[-3000:] + body
    print(body)
    assert "## deploygate plan: `v2-safe` ✅ passes" in body
    assert "| production release on the migrated schema | ✅ works |" in body
    assert "| candidate on the schema before migrating | ✅ works |" in body
    assert "content identical to production's" in body
    assert "password" not in body.lower() or "[redacted]" in body
