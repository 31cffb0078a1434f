"""The deploy report: what was decided, what ran, and what users saw while it ran.

``write_report`` turns a ``record.DeployRecord`` plus the traffic probe's responses into
three files under ``logs/``: a markdown report a person reads, a JSON file a program
reads, and a timeline chart the markdown embeds.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from deploygate import markdown
from deploygate import traffic
from deploygate.policy import percentile
from deploygate.proxy import HOLD_COLOR
from deploygate.record import DeployRecord, Outcome
from deploygate.traffic import PhaseStats, Response

REDACTED = "[redacted]"
HELD_FACE = "tab:orange"  # the chart's colour of an accepted hold's answers (failures are tab:red)
OUTSIDE_STAGES = "(outside stages)"


@dataclass(frozen=True)
class ReportPaths:
    """The files one report consists of."""

    markdown: Path
    json: Path
    chart: Path


def write_report(record: DeployRecord, responses: Sequence[Response], logs_dir: Path, *, stamp: str) -> ReportPaths:
    """Write ``deployment_report_<stamp>.md``, ``.json`` and ``deployment_timeline_<stamp>.png`` into ``logs_dir``.

    ``responses`` are the traffic probe's. Any value under a key containing "password" is
    redacted from all three files. Returns their paths. Raises ``ValueError`` for a stamp
    that is not a plain file-name part; errors drawing the chart propagate after the JSON
    and markdown have been written, so the report itself is never lost to the chart.
    """
    if not stamp or any(ch in stamp for ch in "/\\\0") or stamp.startswith("."):
        raise ValueError(f"stamp must be a plain file-name part, got {stamp!r}")
    logs_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        markdown=logs_dir / f"deployment_report_{stamp}.md",
        json=logs_dir / f"deployment_report_{stamp}.json",
        chart=logs_dir / f"deployment_timeline_{stamp}.png",
    )
    data = redact(record.to_json())
    responses = sorted(responses, key=lambda r: r.ts)
    phases = traffic.phase_stats(responses, stage_phases(record, responses))
    outside = _outside_stages(responses, phases)
    totals = traffic.summary(responses)

    document = {
        "stamp": stamp,
        "record": data,
        "traffic": {"summary": totals, "phases": [asdict(p) for p in phases + outside], "by_color": by_color(responses)},
    }
    # default=str: the deploy has already happened by now, so an odd value (a Path,
    # a datetime) must not cost the report.
    paths.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    paths.markdown.write_text(render_markdown(record, phases + outside, totals, responses, chart_name=paths.chart.name))
    draw_timeline(record, responses, paths.chart)
    return paths


def redact(value: Any) -> Any:
    """A deep copy of ``value`` with every value under a key containing "password" (any case) replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if "password" in str(k).lower() else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def outcome_line(record: DeployRecord) -> str:
    """The report's title: DEPLOYMENT SUCCESSFUL, ROLLED BACK, ABORTED, DRY RUN, REFUSED or FAILED."""
    if record.outcome is Outcome.ROLLED_BACK or (record.kind == "rollback" and record.outcome is Outcome.SUCCEEDED):
        return "ROLLED BACK"
    return {
        Outcome.SUCCEEDED: "DEPLOYMENT SUCCESSFUL",
        Outcome.DRY_RUN: "DRY RUN",
        Outcome.REFUSED: "REFUSED",
        Outcome.ABORTED: "ABORTED",
    }.get(record.outcome, "FAILED")


def stage_phases(record: DeployRecord, responses: Sequence[Response] = ()) -> list[tuple[str, float, float]]:
    """``(name, start, end)`` per stage; an unfinished stage ends after the last response."""
    last = max((r.ts for r in responses), default=None)
    phases = []
    for stage in record.stages:
        end = stage.finished
        if end is None:
            end = max(stage.started, math.nextafter(last, math.inf)) if last is not None else stage.started
        phases.append((stage.name, stage.started, end))
    return phases


def _outside_stages(responses: Sequence[Response], phases: Sequence[PhaseStats]) -> list[PhaseStats]:
    """A row for traffic no stage covers (before, between or after), so no request goes uncounted."""
    rest = [r for r in responses if not any(p.start <= r.ts < p.end for p in phases)]
    if not rest:
        return []
    return traffic.phase_stats(rest, [(OUTSIDE_STAGES, rest[0].ts, math.nextafter(rest[-1].ts, math.inf))])


def by_color(responses: Sequence[Response]) -> dict[str, dict[str, int]]:
    """Per serving colour (or "none" for no answer): requests, 5xx, requests that got no answer, and hold answers."""
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
    record: DeployRecord, phases: Sequence[PhaseStats], totals: dict, responses: Sequence[Response] = (), *, chart_name: str
) -> str:
    """The markdown report."""
    origin = _origin(record)
    out: list[str] = []
    title = outcome_line(record)
    candidate = record.candidate
    what = _join(candidate.ref, _paren(candidate.tag, _short_id(candidate.image_id))) if candidate else ""
    out.append(f"# {title}: {what}" if what else f"# {title}")
    out.append("")
    facts = [f"kind: {record.kind}", f"outcome: {record.outcome.value}"]
    if record.previous:
        facts.append(f"previous: {record.previous.release} ({record.previous.color})")
    if record.new_color:
        facts.append(f"new colour: {record.new_color}")
    if origin is not None:
        facts.append(f"t0 = {_utc(origin)}")
    out += [" · ".join(facts), "", f"![timeline]({chart_name})", ""]
    out += _gates(record)
    out += _stages(record, origin)
    out += _backup(record)
    out += _plan(record)
    out += _migrations(record)
    out += _traffic(phases, totals, responses)
    out += _monitoring(record)
    out += _rollback(record, origin)
    out += _exceptions_and_notes(record)
    return "\n".join(out).rstrip() + "\n"


def _gates(record: DeployRecord) -> list[str]:
    out = ["## Gates", ""]
    if not record.gates:
        return out + ["No gates recorded.", ""]
    rows = [[g.gate, g.name, g.threshold, g.value, g.verdict, g.message] for g in record.gates]
    return out + _table(["Gate", "Check", "Threshold", "Measured", "Verdict", "Why"], rows) + [""]


def _stages(record: DeployRecord, origin: float | None) -> list[str]:
    out = ["## Stages", ""]
    if not record.stages:
        return out + ["No stages recorded.", ""]
    rows = [
        [s.name, _clock(s.started, origin), _clock(s.finished, origin),
         _seconds(s.finished - s.started) if s.finished is not None else None, s.outcome, s.detail]
        for s in record.stages
    ]  # fmt: skip
    return out + _table(["Stage", "Started", "Finished", "Duration", "Outcome", "Detail"], rows) + [""]


def _backup(record: DeployRecord) -> list[str]:
    out = ["## Backup", ""]
    backup = record.backup
    if not backup:
        return out + ["No backup recorded.", ""]
    rows = [
        ["path", _code(backup.path)],
        ["size", _bytes(backup.size)],
        ["sha256", _code(backup.sha256)],
        ["restore verified", backup.restore_verified],
    ]
    return out + _table(["", ""], rows) + [""]


def _plan(record: DeployRecord) -> list[str]:
    out = ["## Migration plan", ""]
    if not record.plan:
        return out + ["No migrations to apply.", ""]
    for step in record.plan:
        count = len(step.operations)
        out += [f"### {_cell(step.label)} ({count} {'operation' if count == 1 else 'operations'})", ""]
        if step.operations:
            out += [f"- {_cell(op)}" for op in step.operations] + [""]
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
            rows.append([m.label, _seconds(m.duration_s), "—", "—", "—", m.error])
        for lock in m.locks:
            rows.append([m.label, _seconds(m.duration_s), _code(lock.table), lock.mode, _ms(lock.held_s * 1000), m.error])
    return out + _table(["Migration", "Duration", "Table", "Strongest lock", "Held", "Error"], rows) + [""]


def _traffic(phases: Sequence[PhaseStats], totals: dict, responses: Sequence[Response]) -> list[str]:
    out = ["## Traffic per phase", ""]
    if not totals.get("requests"):
        return out + ["No traffic was recorded.", ""]
    rows = [
        [p.name, p.requests, p.non_2xx, p.failed, p.held, _ms(p.p50_ms), _ms(p.p95_ms), _colors(p.colors)]
        for p in phases
    ]
    rows.append([
        "**total**", totals["requests"], totals["non_2xx"], totals["failed"], totals.get("held", 0),
        _ms(totals["p50_ms"]), _ms(totals["p95_ms"]), _colors(totals["by_color"]),
    ])  # fmt: skip
    out += _table(["Phase", "Requests", "Non-2xx", "Failed", "Held", "p50", "p95", "Colors"], rows)
    rate = totals.get("rate_per_s")
    out += [
        "",
        "Failed means no answer or a 5xx; held, a 503 + Retry-After of the accepted maintenance hold (announced, not a failure). "
        f"Achieved rate: {_fmt(rate)} req/s; "
        f"{totals.get('writes', 0)} writes, {totals.get('created', 0)} created; "
        f"statuses: {_colors(totals.get('by_status') or {})}.",
        "",
        "### Errors per colour",
        "",
    ]
    colour_rows = [[color, row["requests"], row["5xx"], row["no_answer"], row["held"]] for color, row in by_color(responses).items()]
    out += _table(["Colour", "Requests", "5xx", "No answer", "Held"], colour_rows)
    errors = totals.get("errors") or {}
    if errors:
        out += ["", "Most common errors without an answer:", ""]
        out += [f"- {count} × `{_cell(error)}`" for error, count in errors.items()]
    return out + [""]


def _monitoring(record: DeployRecord) -> list[str]:
    out = ["## Monitoring window", ""]
    monitoring = record.monitoring
    if not monitoring:
        return out + ["No monitoring window recorded.", ""]
    out += [f"{_seconds(monitoring.window_s)} watched; rollback above {monitoring.threshold} errors on the new colour; "
            f"health failures: {monitoring.health_failures}; decision: {monitoring.decision}.", ""]  # fmt: skip
    colours = sorted(set(monitoring.requests_by_color) | set(monitoring.errors_by_color))
    rows = [[c, monitoring.requests_by_color.get(c, 0), monitoring.errors_by_color.get(c, 0)] for c in colours]
    return out + _table(["Colour", "Requests (proxy log)", "5xx"], rows) + [""]


def _rollback(record: DeployRecord, origin: float | None) -> list[str]:
    out = ["## Rollback decision", ""]
    rollback = record.rollback
    if not rollback:
        return out + ["No rollback: the candidate kept serving.", ""]
    back = rollback.traffic_on_previous_ts
    rows = [
        ["reason", rollback.reason],
        ["triggered", _clock(rollback.trigger_ts, origin)],
        ["traffic back on the previous colour", _clock(back, origin)],
        ["trigger → previous", _seconds(back - rollback.trigger_ts) if back is not None else None],
        ["rows exported", rollback.rows_exported],
        ["export", _code(rollback.export_path)],
        ["method", rollback.method],
    ]
    if rollback.error:
        rows.append(["the rollback failed", rollback.error])
    return out + _table(["", ""], rows) + [""]


def _exceptions_and_notes(record: DeployRecord) -> list[str]:
    out = []
    if record.exceptions:
        out += ["## Exceptions granted", ""] + _table(["What", "Reason"], [[k, v] for k, v in record.exceptions.items()]) + [""]
    if record.notes:
        out += ["## Notes", ""] + [f"- {_cell(n)}" for n in record.notes] + [""]
    return out


# -- chart ----------------------------------------------------------------------


def draw_timeline(record: DeployRecord, responses: Sequence[Response], path: Path) -> Path:
    """A PNG of requests/s and failed/s, p95 latency/s and the serving colour against seconds since t0.

    t0 is the first stage's start (else the first response). Stage starts (and the
    last stage's end) and the rollback's trigger are marked with labelled lines.
    """
    # Imported here, and the Agg canvas used without pyplot: importing deploygate
    # stays fast, no display is needed, and the process-wide backend is left alone.
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import is_color_like
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    origin = _origin(record)
    if origin is None:
        origin = responses[0].ts if responses else 0.0
    fig = Figure(figsize=(12, 7), layout="constrained")
    FigureCanvasAgg(fig)
    ax_rate, ax_p95, ax_color = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 0.6]})
    title = outcome_line(record)
    ref = record.candidate.ref if record.candidate else None
    fig.suptitle(f"{title}: {ref}" if ref else title, fontsize=11)

    if responses:
        rel = np.array([r.ts - origin for r in responses])
        first_s = int(math.floor(rel.min()))
        bins = (np.floor(rel).astype(int) - first_s)
        n_bins = int(bins.max()) + 1
        x = np.arange(n_bins) + first_s
        total = np.bincount(bins, minlength=n_bins)
        failed = np.bincount(bins, weights=[float(r.failed) for r in responses], minlength=n_bins)
        held = np.bincount(bins, weights=[float(r.held) for r in responses], minlength=n_bins)
        ax_rate.bar(x, total, width=1.0, align="edge", color="0.75", label="requests/s")
        ax_rate.bar(x, failed, width=1.0, align="edge", color="tab:red", label="failed/s (no answer or 5xx)")
        if held.any():  # an accepted hold's answers: announced downtime, drawn apart from failures
            ax_rate.bar(x, held, bottom=failed, width=1.0, align="edge", color=HELD_FACE, label="held/s (maintenance hold: 503 + Retry-After)")
        # Legends sit outside the axes; headroom for the stage labels is added once they are placed.
        ax_rate.set_ylim(0, max(1, int(total.max())))
        ax_rate.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)

        p95 = np.full(n_bins, np.nan)
        latencies: dict[int, list[float]] = {}
        colors: dict[int, Counter] = {}
        for b, r in zip(bins.tolist(), responses):
            if r.status != 0:
                latencies.setdefault(b, []).append(r.latency_ms)
            colors.setdefault(b, Counter())[r.color or "none"] += 1
        for b, values in latencies.items():
            p95[b] = percentile(values, 95)
        ax_p95.plot(x + 0.5, p95, color="tab:purple", marker=".", markersize=3, linewidth=1)

        # Runs of seconds served (mostly) by one colour, drawn as one bar each.
        runs: list[tuple[str, int, int]] = []
        for b in sorted(colors):
            color = colors[b].most_common(1)[0][0]
            if runs and runs[-1][0] == color and runs[-1][2] == b:
                runs[-1] = (color, runs[-1][1], b + 1)
            else:
                runs.append((color, b, b + 1))
        shown: dict[str, str] = {}
        for color, start, end in runs:
            face = _face(color, is_color_like)
            shown[color] = face
            ax_color.broken_barh([(start + first_s, end - start)], (0, 1), facecolors=face)
        ax_color.legend(handles=[Patch(facecolor=f, label=c) for c, f in shown.items()],
                        loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)  # fmt: skip
    else:
        ax_rate.text(0.5, 0.5, "no traffic recorded", transform=ax_rate.transAxes, ha="center", va="center")

    stages = stage_phases(record, responses)
    stage_style = {"color": "0.3", "linestyle": ":"}
    rollback_style = {"color": "tab:red", "linestyle": "--"}
    marks = [(start - origin, name, stage_style) for name, start, _ in stages]
    if stages:
        marks.append((stages[-1][2] - origin, "end", stage_style))
    rollback = record.rollback
    if rollback is not None:
        for ts, label in ((rollback.trigger_ts, "rollback trigger"), (rollback.traffic_on_previous_ts, "traffic back")):
            if ts is not None:
                marks.append((ts - origin, label, rollback_style))
    top = blended_transform_factory(ax_rate.transData, ax_rate.transAxes)
    labels = []
    for at, label, style in marks:
        for ax in (ax_rate, ax_p95, ax_color):
            ax.axvline(at, linewidth=0.8, **style)
        labels.append(ax_rate.text(at, 0.99, f" {label} ", transform=top, fontsize=7, ha="left", va="top", color=style["color"]))
    rows = place_labels(fig, ax_rate, labels)
    # The bars stay below the lowest row of labels (each row 0.09 of the axes, from the top).
    ax_rate.set_ylim(0, ax_rate.get_ylim()[1] / max(0.2, 0.88 - 0.09 * (rows - 1)))

    ax_rate.set_ylabel("requests / s")
    ax_p95.set_ylabel("p95 latency (ms)")
    ax_color.set_yticks([])
    ax_color.set_ylabel("color", rotation=0, ha="right", va="center")
    ax_color.set_xlabel(f"seconds since {_utc(origin)}")
    for ax in (ax_rate, ax_p95):
        ax.grid(axis="y", linewidth=0.3)
    fig.savefig(path, format="png", dpi=110)
    return path


def label_levels(spans: Sequence[tuple[float, float]]) -> list[int]:
    """For labels spanning ``(start, end)`` on one axis, the row each goes on so that none overlaps another.

    Greedy, in order of start: a label takes the first row whose last label ends before it starts.
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    row_ends: list[float] = []
    levels = [0] * len(spans)
    for i in order:
        start, end = spans[i]
        row = next((r for r, last in enumerate(row_ends) if last <= start), len(row_ends))
        if row == len(row_ends):
            row_ends.append(end)
        else:
            row_ends[row] = end
        levels[i] = row
    return levels


def place_labels(fig: Any, ax: Any, labels: list) -> int:
    """Move the stage labels onto rows where none overprints another (widths measured by the renderer).

    A label that would run past the axes' right edge is drawn to the left of its line instead.
    Returns how many rows were used.
    """
    renderer = fig.canvas.get_renderer()
    right_edge = ax.get_window_extent(renderer).x1
    spans = []
    for text in labels:
        box = text.get_window_extent(renderer)
        if box.x1 > right_edge:
            text.set_horizontalalignment("right")
            box = text.get_window_extent(renderer)
        spans.append((box.x0, box.x1))
    levels = label_levels(spans)
    for text, level in zip(labels, levels):
        text.set_y(0.99 - 0.09 * level)
    return max(levels, default=0) + 1


# -- formatting -----------------------------------------------------------------


def _face(color: str, is_color_like: Callable[[str], bool]) -> str:
    """The fill for a serving colour: matplotlib's softer "tab:" shade when it has one, the hold's own, grey for none or unknown."""
    if color == "none":
        return "0.85"
    if color == HOLD_COLOR:
        return HELD_FACE
    for candidate in (f"tab:{color}", color):
        if is_color_like(candidate):
            return candidate
    return "0.6"


def _origin(record: DeployRecord) -> float | None:
    return min((s.started for s in record.stages), default=None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def _cell(value: Any) -> str:
    """A value safe inside a markdown table cell (one line, pipes escaped)."""
    return " ".join(_fmt(value).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return markdown.table(header, rows, _cell)


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f} s"


def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} ms"


def _bytes(value: Any) -> str | None:
    size = _number(value)
    if size is None:
        return None if value is None else str(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit} ({int(value):,} bytes)"
        size /= 1024
    return None  # unreachable: the loop returns at GiB


def _colors(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "—"


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(ts: float | None, origin: float | None) -> str | None:
    if ts is None:
        return None
    clock = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-5]
    return f"{clock} (+{ts - origin:.1f} s)" if origin is not None else clock


def _code(value: Any) -> str | None:
    return None if value is None else f"`{value}`"


def _short_id(image_id: Any) -> str | None:
    if not image_id:
        return None
    text = str(image_id)
    return text[:19] if text.startswith("sha256:") else text[:12]


def _paren(*parts: Any) -> str | None:
    inner = ", ".join(str(p) for p in parts if p)
    return f"({inner})" if inner else None


def _join(*parts: Any) -> str:
    return " ".join(str(p) for p in parts if p)
