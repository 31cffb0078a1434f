"""The deploy report: markdown, JSON and timeline chart from a record and synthetic traffic."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploygate import report, report_chart
from deploygate.record import (
    BackupRecord,
    DeployRecord,
    GateRow,
    ImageRecord,
    LockRecord,
    MigrationRecord,
    MonitoringRecord,
    Outcome,
    PlanRecord,
    ReplicaLagRecord,
    RollbackRecord,
    RouteRecord,
    SeriesRecord,
    SignatureRecord,
    StageRecord,
    TrafficRecord,
)
from deploygate.traffic import Response
from deploygate.window_judge import Limits

T0 = 1_790_000_000.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SQL = 'ALTER TABLE "unified_db_personlink" ADD COLUMN "bm_parliament_member_id" bigint NULL;'


def _record(**overrides: Any) -> DeployRecord:
    record = DeployRecord(
        kind="deploy",
        outcome=Outcome.SUCCEEDED,
        candidate=ImageRecord(ref="v2-safe", tag="deploygate/app:v2-safe", image_id="sha256:" + "ab" * 32),
        previous=RouteRecord(color="blue", release="v1"),
        new_color="green",
        gates=[
            GateRow("predeploy", "compat", "compat", "no incompatible queries", "0", "passed"),
            GateRow("predeploy", "error_rate", "policy", "< 1.0%", "0.25%", "passed"),
        ],
        stages=[
            StageRecord("start_green", T0, T0 + 4, "ok", "healthy in 3.1 s"),
            StageRecord("migrate", T0 + 4, T0 + 6, "ok", "1 migration"),
            StageRecord("switch", T0 + 6, T0 + 7, "ok", "nginx reload | ok"),
            StageRecord("monitor", T0 + 7, T0 + 10, "ok", ""),
        ],
        backup=BackupRecord(path="backups/prod-1.dump", size=5_242_880, sha256="f" * 64, restore_verified="yes"),
        plan=[PlanRecord(label="unified_db.0021_add_member", operations=["AddField personlink.bm_parliament_member"], sql=[SQL])],
        migrations=[MigrationRecord("unified_db.0021_add_member", 0.4, [LockRecord("unified_db_personlink", "AccessExclusiveLock", 0.01)])],
        monitoring=MonitoringRecord(
            window_s=3, threshold=1, requests_by_color={"green": 30}, errors_by_color={"green": 0}, health_failures=0, decision="ok"
        ),
        notes=["seeded demo data"],
        traffic_created_ids=[4242, 4243],
    )
    for name, value in overrides.items():
        setattr(record, name, value)
    return record


def _responses() -> list[Response]:
    """10 requests/s over 10 s: blue until the switch at +6 s, green after, with a few failures mid-switch."""
    out = []
    for i in range(100):
        ts = T0 + i / 10
        color = "blue" if ts < T0 + 6.3 else "green"
        status = 503 if T0 + 6.0 <= ts < T0 + 6.2 else (0 if ts == T0 + 6.5 else 200)
        out.append(
            Response(
                ts=ts,
                method="GET",
                path="/api/links/",
                status=status,
                latency_ms=5.0 + i % 7,
                color=None if status == 0 else color,
                created_id=None,
                error="ConnectionError: reset" if status == 0 else None,
            )
        )
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
    assert "| predeploy | compat | no incompatible queries | 0 | passed |" in md
    assert "| predeploy | error_rate | < 1.0% | 0.25% | passed |" in md
    assert f"```sql\n{SQL}\n```" in md
    assert "| Phase | Requests | Non-2xx | Failed | Held | p50 | p95 | Colors |" in md
    assert "| switch | 10 | 3 | 3 |" in md  # 503s at +6.0 and +6.1, a reset at +6.5
    assert "| monitor | 30 | 0 | 0 |" in md
    assert "| (outside stages) | 1 |" in md
    assert "| unified_db.0021_add_member | 0.40 s | `unified_db_personlink` | AccessExclusiveLock | 10.0 ms |" in md
    assert "| blue | 64 | 2 | 0 | 0 |" in md and "| none | 1 | 0 | 1 | 0 |" in md  # errors per color
    assert "4242" not in md  # created ids stay in the JSON
    assert "nginx reload \\| ok" in md  # a pipe in a cell does not break the table
    assert "No rollback" in md
    assert "- seeded demo data" in md
    for section in (
        "## Gates",
        "## Stages",
        "## Backup",
        "## Migration plan",
        "## Migrations applied to production",
        "## Traffic per phase",
        "### Errors per color",
        "## Monitoring window",
        "## Rollback decision",
        "## Notes",
    ):
        assert section in md


def test_redact_replaces_every_password_value() -> None:
    redacted = report.redact({"user": "app", "db_password": "hunter2", "nested": [{"PASSWORD": "s3cret"}]})
    assert redacted == {"user": "app", "db_password": report.REDACTED, "nested": [{"PASSWORD": report.REDACTED}]}


def test_json_has_record_and_traffic(tmp_path: Path) -> None:
    paths = report.write_report(_record(), _responses(), tmp_path, stamp="s1")
    data = json.loads(paths.json.read_text())
    assert data["record"]["candidate"]["ref"] == "v2-safe"
    assert data["record"]["outcome"] == "succeeded"
    assert data["record"]["traffic_created_ids"] == [4242, 4243]
    assert data["traffic"]["summary"]["requests"] == 101
    phases = {p["name"]: p for p in data["traffic"]["phases"]}
    assert list(phases) == ["start_green", "migrate", "switch", "monitor", "(outside stages)"]
    assert sum(p["requests"] for p in phases.values()) == 101
    assert phases["switch"]["colors"] == {"blue": 3, "green": 6}


@pytest.mark.parametrize(
    ("kind", "outcome", "rollback", "line"),
    [
        (
            "deploy",
            Outcome.ROLLED_BACK,
            RollbackRecord(
                reason="5xx on green",
                trigger_ts=T0 + 8,
                traffic_on_previous_ts=T0 + 8.4,
                rows_exported=12,
                export_path="logs/rows.csv",
                method="proxy switch",
            ),
            "# ROLLED BACK: v2-safe",
        ),
        ("rollback", Outcome.SUCCEEDED, None, "# ROLLED BACK: v2-safe"),
        ("deploy", Outcome.FAILED, None, "# FAILED: v2-safe"),
        ("deploy", Outcome.REFUSED, None, "# REFUSED: v2-safe"),
    ],
)
def test_outcome_line_and_rollback_section(tmp_path: Path, kind: str, outcome: Outcome, rollback: RollbackRecord | None, line: str) -> None:
    paths = report.write_report(_record(kind=kind, outcome=outcome, rollback=rollback), _responses(), tmp_path, stamp="x")
    md = paths.markdown.read_text()
    assert md.splitlines()[0].startswith(line)
    if rollback:
        assert "| reason | 5xx on green |" in md
        assert "| trigger → previous | 0.40 s |" in md
        assert "| rows exported | 12 |" in md
    assert paths.chart.read_bytes().startswith(PNG_SIGNATURE)


def test_report_with_nothing_recorded(tmp_path: Path) -> None:
    paths = report.write_report(
        DeployRecord(kind="deploy", outcome=Outcome.FAILED, stages=[StageRecord("gate", T0)]), [], tmp_path, stamp="empty"
    )
    md = paths.markdown.read_text()
    assert md.startswith("# FAILED")
    assert "No traffic was recorded." in md
    assert paths.chart.read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads(paths.json.read_text())["traffic"]["summary"]["requests"] == 0


def test_sql_containing_backticks_keeps_its_block_closed() -> None:
    record = DeployRecord(kind="deploy", outcome=Outcome.FAILED, plan=[PlanRecord("x", ["op"], ["SELECT '```';"])])
    md = report.render_markdown(record, [], {"requests": 0}, chart_name="c.png")
    assert "````sql\nSELECT '```';\n````" in md


def test_bad_stamp_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        report.write_report(_record(), [], tmp_path, stamp="../escape")


def test_stage_labels_never_overlap() -> None:
    # Three labels close together, then one far away, and one overlapping the far one.
    spans = [(0.0, 40.0), (5.0, 45.0), (10.0, 50.0), (300.0, 340.0), (310.0, 360.0)]
    levels = report_chart.label_levels(spans)
    assert levels == [0, 1, 2, 0, 1]
    for i, (start, end) in enumerate(spans):
        for j, (other_start, other_end) in enumerate(spans[i + 1 :], start=i + 1):
            assert levels[i] != levels[j] or end <= other_start or other_end <= start


def test_chart_labels_of_close_stages_do_not_overlap(tmp_path: Path) -> None:
    """The drawn chart: labels of stages a fraction of a second apart end up on different rows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 7))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_xlim(0, 60)
    texts = [
        ax.text(at, 0.99, f" {name} ", transform=ax.get_xaxis_transform(), fontsize=7, va="top")
        for at, name in ((24.5, "backup"), (24.6, "window"), (25.0, "green"), (59.0, "rollback_cleanup"))
    ]
    rows = report_chart.place_labels(fig, ax, texts)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert rows == 3
    for i, box in enumerate(boxes):
        assert box.x1 <= ax.get_window_extent(renderer).x1 + 0.5, "a label runs past the axes"
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other), (box, other)


def test_an_accepted_holds_answers_are_held_not_failed(tmp_path: Path) -> None:
    responses = [
        Response(T0 + 1.0, "GET", "/", 200, 5.0, "blue", None, None),
        Response(T0 + 2.0, "GET", "/", 503, 1.0, "hold", None, None),
        Response(T0 + 2.5, "POST", "/api/links/", 503, 1.0, "hold", None, None),
        Response(T0 + 3.0, "GET", "/", 503, 1.0, "green", None, None),  # a release's own 503: a failure
    ]
    paths = report.write_report(_record(), responses, tmp_path, stamp="held")
    md = paths.markdown.read_text()
    assert "| hold | 2 | 0 | 0 | 2 |" in md and "| green | 1 | 1 | 0 | 0 |" in md
    assert "held, a 503 + Retry-After of the accepted maintenance hold" in md
    data = json.loads(paths.json.read_text())
    assert (data["traffic"]["summary"]["failed"], data["traffic"]["summary"]["held"]) == (1, 2)
    assert report_chart.serving_face("hold") == report_chart.HELD_FACE


def _chart_cannot_import_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without matplotlib: importing it (or any of its modules) raises ImportError."""
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "deploygate.report_chart", raising=False)


def test_without_matplotlib_the_report_is_written_and_says_why_there_is_no_chart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _chart_cannot_import_matplotlib(monkeypatch)
    paths = report.write_report(_record(), _responses(), tmp_path, stamp="nochart")
    assert paths.chart is None and "matplotlib" in paths.chart_missing
    assert paths.chart_missing.startswith(("ImportError: ", "ModuleNotFoundError: "))
    assert not (tmp_path / "deployment_timeline_nochart.png").exists()
    md = paths.markdown.read_text()
    assert md.startswith("# DEPLOYMENT SUCCESSFUL: v2-safe")
    assert f"timeline chart not drawn: {paths.chart_missing}" in md
    assert "![timeline]" not in md
    assert "| switch | 10 | 3 | 3 |" in md  # the rest of the report is all there
    data = json.loads(paths.json.read_text())
    assert (data["chart"], data["chart_missing"]) == (None, paths.chart_missing)
    assert data["traffic"]["summary"]["requests"] == 101


def test_a_chart_that_fails_to_draw_costs_neither_the_report_nor_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_drawn(record: DeployRecord, responses: list[Response], path: Path) -> Path:
        path.write_bytes(PNG_SIGNATURE)
        raise RuntimeError("renderer gave up\nhalfway")

    monkeypatch.setattr(report_chart, "draw_timeline", half_drawn)
    paths = report.write_report(_record(), _responses(), tmp_path, stamp="failed")
    assert paths.chart_missing == "RuntimeError: renderer gave up halfway"
    assert "timeline chart not drawn: RuntimeError: renderer gave up halfway" in paths.markdown.read_text()
    assert not (tmp_path / "deployment_timeline_failed.png").exists()


def test_the_report_module_does_not_import_matplotlib() -> None:
    """The chart is the only part that needs it: the report (and the deploy writing it) must import without it."""
    code = "import sys, deploygate.report; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_monitoring_window_shows_its_verdict_the_baseline_and_each_new_error_signature(tmp_path: Path) -> None:
    sample = "ERROR unified_db.views: the page failed\nTraceback (most recent call last):\n  File \"/app/views.py\", line 3, in page\nKeyError: 'x'"
    series = [
        SeriesRecord(T0 + i, color, 20, 5.0 if color == "green" else 0.0, 30.0 if color == "green" else 10.0)
        for i in range(10)
        for color in ("blue", "green")
    ]
    monitoring = MonitoringRecord(
        window_s=3,
        threshold=10,
        requests_by_color={"green": 300},
        errors_by_color={},
        health_failures=0,
        decision="rollback: 1 new error signature(s) the baseline did not show (limit 0): KeyError at /app/views.py in page",
        verdict="fail",
        reason="1 new error signature(s) the baseline did not show (limit 0): KeyError at /app/views.py in page",
        baseline_color="blue",
        baseline_s=300,
        baseline=TrafficRecord(500, 0, 0.0, 8.0, 12.0),
        new=TrafficRecord(300, 0, 0.0, 9.0, 14.0),
        limits=dataclasses.asdict(Limits()),
        signatures=[
            SignatureRecord("KeyError at /app/views.py in page", {"green": 7}, True, sample),
            SignatureRecord("django.request at Internal Server Error: /x/", {"blue": 1, "green": 1}, False, "..."),
        ],
        series=series,
    )
    paths = report.write_report(_record(monitoring=monitoring, outcome=Outcome.ROLLED_BACK), _responses(), tmp_path, stamp="w")
    md = paths.markdown.read_text()
    assert "Verdict **fail**: 1 new error signature(s) the baseline did not show (limit 0)" in md
    assert "| blue: baseline, 300.00 s before the switch | 500 | 0 | 0.00 % | 8.0 ms | 12.0 ms |" in md
    assert "| green: the window | 300 | 0 | 0.00 % | 9.0 ms | 14.0 ms |" in md
    assert "| `KeyError at /app/views.py in page` | 0 | 7 | new |" in md
    assert "| `django.request at Internal Server Error: /x/` | 1 | 1 |  |" in md
    assert f"Sample of `KeyError at /app/views.py in page` (secrets redacted):\n\n```\n{sample}\n```" in md
    assert md.count("Sample of") == 1  # only new signatures get one
    assert paths.chart.read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads(paths.json.read_text())["record"]["monitoring"]["series"][1]["p95_ms"] == 30.0


def test_replica_lag_is_tabled_per_stage_and_charted(tmp_path: Path) -> None:
    lag = [ReplicaLagRecord(T0 + 4.5, "db_replica", 480_000, 1.25), ReplicaLagRecord(T0 + 5.5, "db_replica", None, None)]
    lag += [ReplicaLagRecord(T0 + 8 + i, "db_replica", 120 * i, None) for i in range(2)]
    paths = report.write_report(_record(replica_lag=lag), _responses(), tmp_path, stamp="lag")
    md = paths.markdown.read_text()
    assert "## Replica lag" in md and "4 samples" in md
    assert "| Stage | db_replica |" in md
    assert "| migrate | 480,000 B, 1.25s (1 unanswered) |" in md
    assert "| monitor | 120 B |" in md
    assert "| start_green |" not in md.split("## Replica lag")[1].split("## ")[0], "a stage without samples has no row"
    assert paths.chart.read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads(paths.json.read_text())["record"]["replica_lag"][1]["behind_bytes"] is None
    # Without replicas the report has no such section (and the chart no such row).
    assert "## Replica lag" not in report.write_report(_record(), _responses(), tmp_path, stamp="nolag").markdown.read_text()


def test_the_proxy_counters_are_said_with_what_the_log_lacked(tmp_path: Path) -> None:
    counted = {"requests": 410, "errors": 6, "dropped_logs": 2, "unlogged_errors": 2}
    monitoring = dataclasses.replace(_record().monitoring, proxy_counted=counted)
    md = report.write_report(_record(monitoring=monitoring), _responses(), tmp_path, stamp="c").markdown.read_text()
    assert "for green over the window: 410 requests, 6 5xx" in md
    assert "2 5xx are missing from the access log (2 lines dropped) and were judged all the same" in md
    md = report.write_report(_record(), _responses(), tmp_path, stamp="n").markdown.read_text()
    assert "HAProxy's own counters could not be read for the whole window" in md
