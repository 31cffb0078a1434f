"""The deploy report: what was decided, what ran, and what users saw while it ran.

``write_report`` turns the record the deploy flow builds, plus the traffic probe's
responses, into three files under ``logs/``: a markdown report a person reads, a
JSON file a program reads, and a timeline chart the markdown embeds.

Keys of ``record`` read here (all optional; anything else is rendered generically
as a JSON block under "Other"):

- ``kind``: "deploy" or "rollback"; ``outcome``: "success" (also "successful",
  "succeeded", "ok", "passed", "deployed"), "rolled_back" (also "rolled back",
  "rolled-back", "rollback") or anything else, which reads as FAILED.
- ``candidate``: {ref, tag, image_id}; ``previous``: {color, release, image_id}.
- ``gates``: [{name, threshold, value, verdict}].
- ``stages``: [{name, started, finished, outcome, detail}], times in epoch seconds;
  ``finished`` may be null for a stage that never finished.
- ``backup``: {path, size (bytes), sha256, restore_verified}.
- ``plan``: [{label, operations (a list or a count), sql: [statement, ...]}].
- ``rehearsal``: {timings: {step: seconds}, migrations: [{label, duration_s,
  locks: {table: {mode, held_s}}}]}.
- ``monitoring``: {window_s, threshold, errors_by_color, health_failures, decision}.
- ``rollback``: {reason, trigger_ts, traffic_on_blue_ts, rows_exported,
  export_path, method} or null.
- ``notes``: [str].
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from deploygate import traffic
from deploygate.policy import percentile
from deploygate.traffic import PhaseStats, Response

REDACTED = "[redacted]"
SUCCESS_OUTCOMES = frozenset({"success", "successful", "succeeded", "ok", "passed", "deployed"})
ROLLED_BACK_OUTCOMES = frozenset({"rolled_back", "rolled back", "rolled-back", "rollback"})
KNOWN_KEYS = (
    "kind", "outcome", "candidate", "previous", "gates", "stages", "backup", "plan",
    "rehearsal", "monitoring", "rollback", "notes",
)  # fmt: skip
OUTSIDE_STAGES = "(outside stages)"


@dataclass(frozen=True)
class ReportPaths:
    """The files one report consists of."""

    markdown: Path
    json: Path
    chart: Path


def write_report(record: dict, responses: Sequence[Response], logs_dir: Path, *, stamp: str) -> ReportPaths:
    """Write ``deployment_report_<stamp>.md``, ``.json`` and ``deployment_timeline_<stamp>.png`` into ``logs_dir``.

    ``record`` is described in the module docstring; ``responses`` are the traffic
    probe's. Any value under a key containing "password" is redacted from all three
    files. Returns their paths. Raises ``ValueError`` for a stamp that is not a plain
    file-name part; errors drawing the chart propagate after the JSON and markdown
    have been written, so the report itself is never lost to the chart.
    """
    if not stamp or any(ch in stamp for ch in "/\\\0") or stamp.startswith("."):
        raise ValueError(f"stamp must be a plain file-name part, got {stamp!r}")
    logs_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        markdown=logs_dir / f"deployment_report_{stamp}.md",
        json=logs_dir / f"deployment_report_{stamp}.json",
        chart=logs_dir / f"deployment_timeline_{stamp}.png",
    )
    record = redact(record)
    responses = sorted(responses, key=lambda r: r.ts)
    phases = traffic.phase_stats(responses, stage_phases(record, responses))
    outside = _outside_stages(responses, phases)
    totals = traffic.summary(responses)

    document = {
        "stamp": stamp,
        "record": record,
        "traffic": {"summary": totals, "phases": [asdict(p) for p in phases + outside]},
    }
    # default=str: the deploy has already happened by now, so an odd value (a Path,
    # a datetime) must not cost the report.
    paths.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    paths.markdown.write_text(render_markdown(record, phases + outside, totals, chart_name=paths.chart.name))
    draw_timeline(record, responses, paths.chart)
    return paths


def redact(value: Any) -> Any:
    """A deep copy of ``value`` with every value under a key containing "password" (any case) replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if "password" in str(k).lower() else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def outcome_line(record: dict) -> str:
    """"DEPLOYMENT SUCCESSFUL", "ROLLED BACK" or "FAILED", from ``kind`` and ``outcome``."""
    outcome = str(record.get("outcome") or "").strip().lower()
    if outcome in ROLLED_BACK_OUTCOMES:
        return "ROLLED BACK"
    if outcome in SUCCESS_OUTCOMES:
        return "ROLLED BACK" if record.get("kind") == "rollback" else "DEPLOYMENT SUCCESSFUL"
    return "FAILED"


def stage_phases(record: dict, responses: Sequence[Response] = ()) -> list[tuple[str, float, float]]:
    """``(name, start, end)`` per stage with a start time; an unfinished stage ends after the last response."""
    last = max((r.ts for r in responses), default=None)
    phases = []
    for stage in record.get("stages") or []:
        start = _number(stage.get("started"))
        if start is None:
            continue
        end = _number(stage.get("finished"))
        if end is None:
            end = max(start, math.nextafter(last, math.inf)) if last is not None else start
        phases.append((str(stage.get("name", "?")), start, end))
    return phases


def _outside_stages(responses: Sequence[Response], phases: Sequence[PhaseStats]) -> list[PhaseStats]:
    """A row for traffic no stage covers (before, between or after), so no request goes uncounted."""
    rest = [r for r in responses if not any(p.start <= r.ts < p.end for p in phases)]
    if not rest:
        return []
    return traffic.phase_stats(rest, [(OUTSIDE_STAGES, rest[0].ts, math.nextafter(rest[-1].ts, math.inf))])


# -- markdown -------------------------------------------------------------------


def render_markdown(record: dict, phases: Sequence[PhaseStats], totals: dict, *, chart_name: str) -> str:
    """The markdown report (``record`` already redacted)."""
    candidate = record.get("candidate") or {}
    origin = _origin(record)
    out: list[str] = []
    title = outcome_line(record)
    what = _join(candidate.get("ref"), _paren(candidate.get("tag"), _short_id(candidate.get("image_id"))))
    out.append(f"# {title}: {what}" if what else f"# {title}")
    out.append("")
    previous = record.get("previous") or {}
    facts = [
        f"kind: {_cell(record.get('kind', 'deploy'))}",
        f"outcome: {_cell(record.get('outcome', '—'))}",
    ]
    if previous:
        detail = _paren(previous.get("color"), _short_id(previous.get("image_id")))
        facts.append("previous: " + _join(previous.get("release"), detail))
    if origin is not None:
        facts.append(f"t0 = {_utc(origin)}")
    out += [" · ".join(facts), "", f"![timeline]({chart_name})", ""]

    out += _gates(record.get("gates") or [])
    out += _stages(record.get("stages") or [], origin)
    out += _backup(record.get("backup"))
    out += _plan(record.get("plan") or [])
    out += _rehearsal(record.get("rehearsal"))
    out += _traffic(phases, totals)
    out += _monitoring(record.get("monitoring"))
    out += _rollback(record.get("rollback"), origin)
    out += _notes(record.get("notes") or [])
    other = {k: v for k, v in record.items() if k not in KNOWN_KEYS}
    if other:
        out += ["## Other", ""]
        for key, value in other.items():
            out += [f"### {_cell(key)}", "", "```json", json.dumps(value, indent=2, default=str), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _gates(gates: list) -> list[str]:
    out = ["## Gates", ""]
    if not gates:
        return out + ["No gates recorded.", ""]
    out += _table(["Gate", "Threshold", "Value", "Verdict"],
                  [[g.get("name"), g.get("threshold"), g.get("value"), g.get("verdict")] for g in gates])  # fmt: skip
    return out + [""]


def _stages(stages: list, origin: float | None) -> list[str]:
    out = ["## Stages", ""]
    if not stages:
        return out + ["No stages recorded.", ""]
    rows = []
    for s in stages:
        started, finished = _number(s.get("started")), _number(s.get("finished"))
        rows.append([
            s.get("name"),
            _clock(started, origin),
            _clock(finished, origin),
            _seconds(finished - started) if started is not None and finished is not None else None,
            s.get("outcome"),
            s.get("detail"),
        ])  # fmt: skip
    return out + _table(["Stage", "Started", "Finished", "Duration", "Outcome", "Detail"], rows) + [""]


def _backup(backup: dict | None) -> list[str]:
    out = ["## Backup", ""]
    if not backup:
        return out + ["No backup recorded.", ""]
    rows = [
        ["path", _code(backup.get("path"))],
        ["size", _bytes(backup.get("size"))],
        ["sha256", _code(backup.get("sha256"))],
        ["restore verified", backup.get("restore_verified")],
    ]
    rows += [[k, v] for k, v in backup.items() if k not in ("path", "size", "sha256", "restore_verified")]
    return out + _table(["", ""], rows) + [""]


def _plan(plan: list) -> list[str]:
    out = ["## Migration plan", ""]
    if not plan:
        return out + ["No migrations to apply.", ""]
    for step in plan:
        operations = step.get("operations")
        count = len(operations) if isinstance(operations, (list, tuple)) else operations
        noun = "operation" if count == 1 else "operations"
        out += [f"### {_cell(step.get('label', '?'))}" + (f" ({count} {noun})" if count is not None else ""), ""]
        if isinstance(operations, (list, tuple)) and operations:
            out += [f"- {_cell(op)}" for op in operations] + [""]
        sql = step.get("sql") or []
        text = "\n".join(str(s) for s in sql) if isinstance(sql, (list, tuple)) else str(sql)
        if text.strip():
            fence = _fence(text)
            out += [f"{fence}sql", text, fence, ""]
        else:
            out += ["(no SQL)", ""]
    return out


def _rehearsal(rehearsal: dict | None) -> list[str]:
    out = ["## Rehearsal", ""]
    if not rehearsal:
        return out + ["No rehearsal recorded.", ""]
    timings = rehearsal.get("timings") or {}
    if timings:
        out += _table(["Step", "Seconds"], [[k, _seconds(_number(v)) if _number(v) is not None else v]
                                             for k, v in timings.items()]) + [""]  # fmt: skip
    migrations = rehearsal.get("migrations") or []
    if migrations:
        rows = []
        for m in migrations:
            locks = m.get("locks") or {}
            if not locks:
                rows.append([m.get("label"), _seconds(_number(m.get("duration_s"))), "—", "—", "—"])
            for table, lock in locks.items():
                lock = lock if isinstance(lock, dict) else {"mode": lock}
                rows.append([m.get("label"), _seconds(_number(m.get("duration_s"))), _code(table),
                             lock.get("mode"), _seconds(_number(lock.get("held_s")))])  # fmt: skip
        out += _table(["Migration", "Duration", "Table", "Lock mode", "Held"], rows) + [""]
    rest = {k: v for k, v in rehearsal.items() if k not in ("timings", "migrations")}
    if rest:
        out += ["```json", json.dumps(rest, indent=2, default=str), "```", ""]
    return out


def _traffic(phases: Sequence[PhaseStats], totals: dict) -> list[str]:
    out = ["## Traffic per phase", ""]
    if not totals.get("requests"):
        return out + ["No traffic was recorded.", ""]
    rows = [
        [p.name, p.requests, p.non_2xx, p.failed, _ms(p.p50_ms), _ms(p.p95_ms), _colors(p.colors)]
        for p in phases
    ]
    rows.append([
        "**total**", totals["requests"], totals["non_2xx"], totals["failed"],
        _ms(totals["p50_ms"]), _ms(totals["p95_ms"]), _colors(totals["by_color"]),
    ])  # fmt: skip
    out += _table(["Phase", "Requests", "Non-2xx", "Failed", "p50", "p95", "Colors"], rows)
    rate = totals.get("rate_per_s")
    out += [
        "",
        f"Failed means no answer or a 5xx. Achieved rate: {_fmt(rate)} req/s; "
        f"{totals.get('writes', 0)} writes, {totals.get('created', 0)} created; "
        f"statuses: {_colors(totals.get('by_status') or {})}.",
    ]
    errors = totals.get("errors") or {}
    if errors:
        out += ["", "Most common errors without an answer:", ""]
        out += [f"- {count} × `{_cell(error)}`" for error, count in errors.items()]
    return out + [""]


def _monitoring(monitoring: dict | None) -> list[str]:
    out = ["## Monitoring window", ""]
    if not monitoring:
        return out + ["No monitoring window recorded.", ""]
    rows = [
        ["window", _seconds(_number(monitoring.get("window_s")))],
        ["threshold", monitoring.get("threshold")],
        ["errors by color", _colors(monitoring.get("errors_by_color") or {})],
        ["health failures", monitoring.get("health_failures")],
        ["decision", monitoring.get("decision")],
    ]
    known = ("window_s", "threshold", "errors_by_color", "health_failures", "decision")
    rows += [[k, v] for k, v in monitoring.items() if k not in known]
    return out + _table(["", ""], rows) + [""]


def _rollback(rollback: dict | None, origin: float | None) -> list[str]:
    out = ["## Rollback decision", ""]
    if not rollback:
        return out + ["No rollback: the candidate kept serving.", ""]
    trigger, back = _number(rollback.get("trigger_ts")), _number(rollback.get("traffic_on_blue_ts"))
    rows = [
        ["reason", rollback.get("reason")],
        ["triggered", _clock(trigger, origin)],
        ["traffic back on blue", _clock(back, origin)],
        ["trigger → blue", _seconds(back - trigger) if trigger is not None and back is not None else None],
        ["rows exported", rollback.get("rows_exported")],
        ["export", _code(rollback.get("export_path"))],
        ["method", rollback.get("method")],
    ]
    known = ("reason", "trigger_ts", "traffic_on_blue_ts", "rows_exported", "export_path", "method")
    rows += [[k, v] for k, v in rollback.items() if k not in known]
    return out + _table(["", ""], rows) + [""]


def _notes(notes: list) -> list[str]:
    if not notes:
        return []
    return ["## Notes", ""] + [f"- {_cell(n)}" for n in notes] + [""]


# -- chart ----------------------------------------------------------------------


def draw_timeline(record: dict, responses: Sequence[Response], path: Path) -> Path:
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
    ref = (record.get("candidate") or {}).get("ref")
    fig.suptitle(f"{title}: {ref}" if ref else title, fontsize=11)

    if responses:
        rel = np.array([r.ts - origin for r in responses])
        first_s = int(math.floor(rel.min()))
        bins = (np.floor(rel).astype(int) - first_s)
        n_bins = int(bins.max()) + 1
        x = np.arange(n_bins) + first_s
        total = np.bincount(bins, minlength=n_bins)
        failed = np.bincount(bins, weights=[float(r.failed) for r in responses], minlength=n_bins)
        ax_rate.bar(x, total, width=1.0, align="edge", color="0.75", label="requests/s")
        ax_rate.bar(x, failed, width=1.0, align="edge", color="tab:red", label="failed/s (no answer or 5xx)")
        # Headroom above the bars for the stage labels; legends sit outside the axes.
        ax_rate.set_ylim(0, max(1, int(total.max())) * 1.4)
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
    rollback = record.get("rollback") or {}
    for key, label in (("trigger_ts", "rollback trigger"), ("traffic_on_blue_ts", "traffic on blue")):
        ts = _number(rollback.get(key))
        if ts is not None:
            marks.append((ts - origin, label, rollback_style))
    top = blended_transform_factory(ax_rate.transData, ax_rate.transAxes)
    for i, (at, label, style) in enumerate(marks):
        for ax in (ax_rate, ax_p95, ax_color):
            ax.axvline(at, linewidth=0.8, **style)
        # Staggered over three heights so labels of short stages do not overprint.
        ax_rate.text(at, 0.99 - 0.08 * (i % 3), f" {label}", transform=top, fontsize=7,
                     ha="left", va="top", color=style["color"])  # fmt: skip

    ax_rate.set_ylabel("requests / s")
    ax_p95.set_ylabel("p95 latency (ms)")
    ax_color.set_yticks([])
    ax_color.set_ylabel("color", rotation=0, ha="right", va="center")
    ax_color.set_xlabel(f"seconds since {_utc(origin)}")
    for ax in (ax_rate, ax_p95):
        ax.grid(axis="y", linewidth=0.3)
    fig.savefig(path, format="png", dpi=110)
    return path


# -- formatting -----------------------------------------------------------------


def _face(color: str, is_color_like: Callable[[str], bool]) -> str:
    """The fill for a serving colour: matplotlib's softer "tab:" shade when it has one, grey for none or unknown."""
    if color == "none":
        return "0.85"
    for candidate in (f"tab:{color}", color):
        if is_color_like(candidate):
            return candidate
    return "0.6"


def _origin(record: dict) -> float | None:
    starts = [_number(s.get("started")) for s in record.get("stages") or []]
    starts = [s for s in starts if s is not None]
    return min(starts) if starts else None


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
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``, so SQL can never close its own block."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


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
