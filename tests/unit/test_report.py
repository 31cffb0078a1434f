"""The deploy report: markdown, JSON and timeline chart from a record and synthetic traffic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deploygate import report
from deploygate.traffic import Response

T0 = 1_790_000_000.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SQL = 'ALTER TABLE "unified_db_personlink" ADD COLUMN "bm_parliament_member_id" bigint NULL;'


def _record(**overrides: Any) -> dict:
    record: dict[str, Any] = {
        "kind": "deploy",
        "outcome": "success",
        "candidate": {"ref": "v2-safe", "tag": "deploygate/app:v2-safe", "image_id": "sha256:" + "ab" * 32},
        "previous": {"color": "blue", "release": "v1", "image_id": "sha256:" + "cd" * 32},
        "gates": [
            {"name": "compat", "threshold": "no incompatible queries", "value": 0, "verdict": "pass"},
            {"name": "error_rate", "threshold": 1.0, "value": 0.25, "verdict": "pass"},
        ],
        "stages": [
            {"name": "start_green", "started": T0, "finished": T0 + 4, "outcome": "ok", "detail": "healthy in 3.1 s"},
            {"name": "migrate", "started": T0 + 4, "finished": T0 + 6, "outcome": "ok", "detail": "1 migration"},
            {"name": "switch", "started": T0 + 6, "finished": T0 + 7, "outcome": "ok", "detail": "nginx reload | ok"},
            {"name": "monitor", "started": T0 + 7, "finished": T0 + 10, "outcome": "ok", "detail": None},
        ],
        "backup": {"path": "backups/prod-1.dump", "size": 5_242_880, "sha256": "f" * 64, "restore_verified": True},
        "plan": [{"label": "unified_db.0021_add_member", "operations": ["AddField personlink.bm_parliament_member"], "sql": [SQL]}],
        "rehearsal": {
            "timings": {"restore_s": 2.5, "migrate_s": 0.4},
            "migrations": [{"label": "unified_db.0021_add_member", "duration_s": 0.4,
                            "locks": {"unified_db_personlink": {"mode": "AccessExclusiveLock", "held_s": 0.01}}}],
        },  # fmt: skip
        "monitoring": {"window_s": 3, "threshold": 1.0, "errors_by_color": {"green": 0}, "health_failures": 0,
                       "decision": "keep green"},  # fmt: skip
        "rollback": None,
        "notes": ["seeded demo data"],
        "database": {"user": "app", "db_password": "hunter2", "nested": [{"PASSWORD": "s3cret"}]},
    }
    record.update(overrides)
    return record


def _responses() -> list[Response]:
    """10 requests/s over 10 s: blue until the switch at +6 s, green after, with a few failures mid-switch."""
    out = []
    for i in range(100):
        ts = T0 + i / 10
        color = "blue" if ts < T0 + 6.3 else "green"
        status = 503 if T0 + 6.0 <= ts < T0 + 6.2 else (0 if ts == T0 + 6.5 else 200)
        out.append(Response(ts=ts, method="GET", path="/api/links/", status=status, latency_ms=5.0 + i % 7,
                            color=None if status == 0 else color, created_id=None,
                            error="ConnectionError: reset" if status == 0 else None))  # fmt: skip
    out.append(Response(T0 - 0.5, "GET", "/api/links/", 200, 4.0, "blue", None, None))  # before the first stage
    return out


def test_write_report_writes_three_files(tmp_path: Path) -> None:
    paths = report.write_report(_record(), _responses(), tmp_path / "logs", stamp="20261123T231600Z")
    assert paths == report.ReportPaths(
        markdown=tmp_path / "logs" / "deployment_report_20261123T231600Z.md",
        json=tmp_path / "logs" / "deployment_report_20261123T231600Z.json",
        chart=tmp_path / "logs" / "deployment_timeline_20261123T231600Z.png",
    )
    assert paths.chart.read_bytes().startswith(PNG_SIGNATURE)

    md = paths.markdown.read_text()
    assert md.splitlines()[0].startswith("# DEPLOYMENT SUCCESSFUL: v2-safe")
    assert "![timeline](deployment_timeline_20261123T231600Z.png)" in md
    assert "| compat | no incompatible queries | 0 | pass |" in md
    assert "| error_rate | 1.00 | 0.25 | pass |" in md
    assert f"```sql\n{SQL}\n```" in md
    assert "| Phase | Requests | Non-2xx | Failed | p50 | p95 | Colors |" in md
    assert "| switch | 10 | 3 | 3 |" in md  # 503s at +6.0 and +6.1, a reset at +6.5
    assert "| monitor | 30 | 0 | 0 |" in md
    assert "| (outside stages) | 1 |" in md
    assert "| unified_db.0021_add_member | 0.40 s | `unified_db_personlink` | AccessExclusiveLock | 0.01 s |" in md
    assert "nginx reload \\| ok" in md  # a pipe in a cell does not break the table
    assert "No rollback" in md
    assert "- seeded demo data" in md
    for section in ("## Gates", "## Stages", "## Backup", "## Migration plan", "## Rehearsal",
                    "## Traffic per phase", "## Monitoring window", "## Rollback decision", "## Notes", "## Other"):  # fmt: skip
        assert section in md
    assert "hunter2" not in md and "s3cret" not in md


def test_json_has_record_and_traffic_and_no_password(tmp_path: Path) -> None:
    paths = report.write_report(_record(), _responses(), tmp_path, stamp="s1")
    text = paths.json.read_text()
    assert "hunter2" not in text and "s3cret" not in text
    data = json.loads(text)
    assert data["record"]["database"]["db_password"] == report.REDACTED
    assert data["record"]["database"]["nested"][0]["PASSWORD"] == report.REDACTED
    assert data["record"]["candidate"]["ref"] == "v2-safe"
    assert data["traffic"]["summary"]["requests"] == 101
    phases = {p["name"]: p for p in data["traffic"]["phases"]}
    assert list(phases) == ["start_green", "migrate", "switch", "monitor", "(outside stages)"]
    assert sum(p["requests"] for p in phases.values()) == 101
    assert phases["switch"]["colors"] == {"blue": 3, "green": 6}


@pytest.mark.parametrize(
    ("kind", "outcome", "rollback", "line"),
    [
        ("deploy", "rolled_back", {"reason": "5xx on green", "trigger_ts": T0 + 8, "traffic_on_blue_ts": T0 + 8.4,
                                   "rows_exported": 12, "export_path": "logs/rows.csv", "method": "proxy switch"},
         "# ROLLED BACK: v2-safe"),
        ("rollback", "success", None, "# ROLLED BACK: v2-safe"),
        ("deploy", "failed", None, "# FAILED: v2-safe"),
    ],
)  # fmt: skip
def test_outcome_line_and_rollback_section(tmp_path: Path, kind: str, outcome: str, rollback: dict | None,
                                           line: str) -> None:  # fmt: skip
    paths = report.write_report(_record(kind=kind, outcome=outcome, rollback=rollback), _responses(), tmp_path, stamp="x")
    md = paths.markdown.read_text()
    assert md.splitlines()[0].startswith(line)
    if rollback:
        assert "| reason | 5xx on green |" in md
        assert "| trigger → blue | 0.40 s |" in md
        assert "| rows exported | 12 |" in md
    assert paths.chart.read_bytes().startswith(PNG_SIGNATURE)


def test_report_with_nothing_recorded(tmp_path: Path) -> None:
    paths = report.write_report({"outcome": "failed", "stages": [{"name": "gate", "started": T0, "finished": None}]},
                                [], tmp_path, stamp="empty")  # fmt: skip
    md = paths.markdown.read_text()
    assert md.startswith("# FAILED")
    assert "No traffic was recorded." in md
    assert paths.chart.read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads(paths.json.read_text())["traffic"]["summary"]["requests"] == 0


def test_sql_containing_backticks_keeps_its_block_closed() -> None:
    md = report.render_markdown({"plan": [{"label": "x", "operations": 1, "sql": ["SELECT '```';"]}]}, [],
                                {"requests": 0}, chart_name="c.png")  # fmt: skip
    assert "````sql\nSELECT '```';\n````" in md


def test_bad_stamp_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        report.write_report(_record(), [], tmp_path, stamp="../escape")
