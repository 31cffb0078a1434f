"""The deploy report: what was decided, what ran, and what users saw while it ran.

``write_report`` turns a ``record.DeployRecord`` plus the traffic probe's responses into
three files under ``logs/``: a markdown report a person reads, a JSON file a program
reads, and a timeline chart (``deploygate.report_chart``) the markdown embeds. The chart
is optional: when it cannot be drawn the report says why, and the deploy's own outcome
stands (the report is written at the end of every deploy, whatever happened).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from deploygate import markdown, report_window, traffic_stats
from deploygate import report_format as fmt
from deploygate.record import DeployRecord
from deploygate.traffic import Response
from deploygate.traffic_stats import PhaseStats

REDACTED = "[redacted]"
OUTSIDE_STAGES = "(outside stages)"


@dataclass(frozen=True)
class ReportPaths:
    """The files one report consists of; ``chart`` is None when it could not be drawn, and ``chart_missing`` says why."""

    markdown: Path
    json: Path
    chart: Path | None
    chart_missing: str | None = None


def write_report(record: DeployRecord, responses: Sequence[Response], logs_dir: Path, *, stamp: str) -> ReportPaths:
    """Write ``deployment_report_<stamp>.md``, ``.json`` and ``deployment_timeline_<stamp>.png`` into ``logs_dir``.

    ``responses`` are the traffic probe's. Any value under a key containing "password" is
    redacted from all three files. Returns their paths. Raises ``ValueError`` for a stamp
    that is not a plain file-name part. Never raises for the chart: the JSON and markdown
    are written before it is drawn, and if it cannot be (matplotlib missing or failing) they
    are written again saying "timeline chart not drawn: <why>".
    """
    if not stamp or any(ch in stamp for ch in "/\\\0") or stamp.startswith("."):
        raise ValueError(f"stamp must be a plain file-name part, got {stamp!r}")
    logs_dir.mkdir(parents=True, exist_ok=True)
    chart_path = logs_dir / f"deployment_timeline_{stamp}.png"
    paths = ReportPaths(
        markdown=logs_dir / f"deployment_report_{stamp}.md",
        json=logs_dir / f"deployment_report_{stamp}.json",
        chart=chart_path,
    )
    responses = sorted(responses, key=lambda r: r.ts)
    phases = traffic_stats.phase_stats(responses, fmt.stage_phases(record, responses))
    phases += _outside_stages(responses, phases)
    totals = traffic_stats.summary(responses)
    document = {
        "stamp": stamp,
        "record": redact(record.to_json()),
        "traffic": {"summary": totals, "phases": [asdict(p) for p in phases], "by_color": by_color(responses)},
    }

    def write(chart_missing: str | None) -> None:
        chart = {"chart": None, "chart_missing": chart_missing} if chart_missing else {"chart": chart_path.name}
        # default=str: the deploy has already happened by now, so an odd value (a Path,
        # a datetime) must not cost the report.
        paths.json.write_text(json.dumps({**document, **chart}, indent=2, default=str) + "\n")
        paths.markdown.write_text(
            render_markdown(record, phases, totals, responses, chart_name=chart_path.name, chart_missing=chart_missing)
        )

    write(None)
    chart_missing = _draw_chart(record, responses, chart_path)
    if chart_missing is None:
        return paths
    write(chart_missing)
    return replace(paths, chart=None, chart_missing=chart_missing)


def _draw_chart(record: DeployRecord, responses: Sequence[Response], path: Path) -> str | None:
    """Draw the timeline into ``path``; None when drawn, else why not (no partial file is left)."""
    try:
        # Imported here: matplotlib is needed for the chart only, never to report or to deploy.
        from deploygate.report_chart import draw_timeline

        draw_timeline(record, responses, path)
    except Exception as exc:  # noqa: BLE001 - the chart is optional: nothing drawing it raises may cost the report or the deploy
        path.unlink(missing_ok=True)
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    return None


def redact(value: Any) -> Any:
    """A deep copy of ``value`` with every value under a key containing "password" (any case) replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if "password" in str(k).lower() else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def _outside_stages(responses: Sequence[Response], phases: Sequence[PhaseStats]) -> list[PhaseStats]:
    """A row for traffic no stage covers (before, between or after), so no request goes uncounted."""
    rest = [r for r in responses if not any(p.start <= r.ts < p.end for p in phases)]
    if not rest:
        return []
    return traffic_stats.phase_stats(rest, [(OUTSIDE_STAGES, rest[0].ts, math.nextafter(rest[-1].ts, math.inf))])


def by_color(responses: Sequence[Response]) -> dict[str, dict[str, int]]:
    """Per serving color (or "none" for no answer): requests, 5xx, requests that got no answer, and hold answers."""
    table: dict[str, dict[str, int]] = {}
    for r in responses:
        row = table.setdefault(r.color or "none", {"requests": 0, "5xx": 0, "no_answer": 0, "held": 0})
        row["requests"] += 1
        row["5xx"] += r.status >= 500 and not r.held
        row["no_answer"] += r.status == 0
        row["held"] += r.held
    return dict(sorted(table.items()))


# -- markdown -------------------------------------------------------------------


def render_markdown(
    record: DeployRecord,
    phases: Sequence[PhaseStats],
    totals: dict,
    responses: Sequence[Response] = (),
    *,
    chart_name: str,
    chart_missing: str | None = None,
) -> str:
    """The markdown report, embedding the chart ``chart_name`` (or, given ``chart_missing``, saying why there is none)."""
    origin = fmt.origin(record)
    out: list[str] = []
    title = fmt.outcome_line(record)
    candidate = record.candidate
    what = fmt.join(candidate.ref, fmt.paren(candidate.tag, fmt.short_id(candidate.image_id))) if candidate else ""
    out.append(f"# {title}: {what}" if what else f"# {title}")
    out.append("")
    facts = [f"kind: {record.kind}", f"outcome: {record.outcome.value}"]
    if record.previous:
        facts.append(f"previous: {record.previous.release} ({record.previous.color})")
    if record.new_color:
        facts.append(f"new color: {record.new_color}")
    if origin is not None:
        facts.append(f"t0 = {fmt.utc(origin)}")
    chart = f"timeline chart not drawn: {chart_missing}" if chart_missing else f"![timeline]({chart_name})"
    out += [" · ".join(facts), "", chart, ""]
    out += _gates(record)
    out += _stages(record, origin)
    out += _backup(record)
    out += _plan(record)
    out += _migrations(record)
    out += _traffic(phases, totals, responses)
    out += report_window.monitoring_section(record)
    out += report_window.replica_lag_section(record)
    out += _rollback(record, origin)
    out += _exceptions_and_notes(record)
    return "\n".join(out).rstrip() + "\n"


def _gates(record: DeployRecord) -> list[str]:
    out = ["## Gates", ""]
    if not record.gates:
        return out + ["No gates recorded.", ""]
    rows = [[g.gate, g.name, g.threshold, g.value, g.verdict, g.message] for g in record.gates]
    return out + markdown.table(["Gate", "Check", "Threshold", "Measured", "Verdict", "Why"], rows, fmt.cell) + [""]


def _stages(record: DeployRecord, origin: float | None) -> list[str]:
    out = ["## Stages", ""]
    if not record.stages:
        return out + ["No stages recorded.", ""]
    rows = [
        [
            s.name,
            fmt.clock(s.started, origin),
            fmt.clock(s.finished, origin),
            fmt.seconds(s.finished - s.started) if s.finished is not None else None,
            s.outcome,
            s.detail,
        ]
        for s in record.stages
    ]
    return out + markdown.table(["Stage", "Started", "Finished", "Duration", "Outcome", "Detail"], rows, fmt.cell) + [""]


def _backup(record: DeployRecord) -> list[str]:
    out = ["## Backup", ""]
    backup = record.backup
    if not backup:
        return out + ["No backup recorded.", ""]
    rows = [
        ["path", fmt.code(backup.path)],
        ["size", fmt.size(backup.size)],
        ["sha256", fmt.code(backup.sha256)],
        ["restore verified", backup.restore_verified],
    ]
    return out + markdown.table(["", ""], rows, fmt.cell) + [""]


def _plan(record: DeployRecord) -> list[str]:
    out = ["## Migration plan", ""]
    if not record.plan:
        return out + ["No migrations to apply.", ""]
    for step in record.plan:
        count = len(step.operations)
        out += [f"### {fmt.cell(step.label)} ({count} {'operation' if count == 1 else 'operations'})", ""]
        if step.operations:
            out += [f"- {fmt.cell(op)}" for op in step.operations] + [""]
        text = "\n".join(step.sql)
        if text.strip():
            fence = markdown.fence(text)
            out += [f"{fence}sql", text, fence, ""]
        else:
            out += ["(no SQL)", ""]
    return out


def _migrations(record: DeployRecord) -> list[str]:
    out = ["## Migrations applied to production", ""]
    if not record.migrations:
        return out + ["None applied.", ""]
    rows = []
    for m in record.migrations:
        if not m.locks:
            rows.append([m.label, fmt.seconds(m.duration_s), "—", "—", "—", m.error])
        for lock in m.locks:
            rows.append([m.label, fmt.seconds(m.duration_s), fmt.code(lock.table), lock.mode, fmt.ms(lock.held_s * 1000), m.error])
    return out + markdown.table(["Migration", "Duration", "Table", "Strongest lock", "Held", "Error"], rows, fmt.cell) + [""]


def _traffic(phases: Sequence[PhaseStats], totals: dict, responses: Sequence[Response]) -> list[str]:
    out = ["## Traffic per phase", ""]
    if not totals.get("requests"):
        return out + ["No traffic was recorded.", ""]
    rows = [[p.name, p.requests, p.non_2xx, p.failed, p.held, fmt.ms(p.p50_ms), fmt.ms(p.p95_ms), fmt.counts(p.colors)] for p in phases]
    rows.append(
        [
            "**total**",
            totals["requests"],
            totals["non_2xx"],
            totals["failed"],
            totals.get("held", 0),
            fmt.ms(totals["p50_ms"]),
            fmt.ms(totals["p95_ms"]),
            fmt.counts(totals["by_color"]),
        ]
    )
    out += markdown.table(["Phase", "Requests", "Non-2xx", "Failed", "Held", "p50", "p95", "Colors"], rows, fmt.cell)
    rate = totals.get("rate_per_s")
    out += [
        "",
        "Failed means no answer or a 5xx; held, a 503 + Retry-After of the accepted maintenance hold (announced, not a failure). "
        f"Achieved rate: {fmt.text(rate)} req/s; "
        f"{totals.get('writes', 0)} writes, {totals.get('created', 0)} created; "
        f"statuses: {fmt.counts(totals.get('by_status') or {})}.",
        "",
        "### Errors per color",
        "",
    ]
    color_rows = [[color, row["requests"], row["5xx"], row["no_answer"], row["held"]] for color, row in by_color(responses).items()]
    out += markdown.table(["Color", "Requests", "5xx", "No answer", "Held"], color_rows, fmt.cell)
    errors = totals.get("errors") or {}
    if errors:
        out += ["", "Most common errors without an answer:", ""]
        out += [f"- {count} × `{fmt.cell(error)}`" for error, count in errors.items()]
    return out + [""]


def _rollback(record: DeployRecord, origin: float | None) -> list[str]:
    out = ["## Rollback decision", ""]
    rollback = record.rollback
    if not rollback:
        return out + ["No rollback: the candidate kept serving.", ""]
    back = rollback.traffic_on_previous_ts
    rows = [
        ["reason", rollback.reason],
        ["triggered", fmt.clock(rollback.trigger_ts, origin)],
        ["traffic back on the previous color", fmt.clock(back, origin)],
        ["trigger → previous", fmt.seconds(back - rollback.trigger_ts) if back is not None else None],
        ["rows exported", rollback.rows_exported],
        ["export", fmt.code(rollback.export_path)],
        ["method", rollback.method],
    ]
    if rollback.error:
        rows.append(["the rollback failed", rollback.error])
    return out + markdown.table(["", ""], rows, fmt.cell) + [""]


def _exceptions_and_notes(record: DeployRecord) -> list[str]:
    out = []
    if record.exceptions:
        rows = [[k, v] for k, v in record.exceptions.items()]
        out += ["## Exceptions granted", ""] + markdown.table(["What", "Reason"], rows, fmt.cell) + [""]
    if record.notes:
        out += ["## Notes", ""] + [f"- {fmt.cell(n)}" for n in record.notes] + [""]
    return out
