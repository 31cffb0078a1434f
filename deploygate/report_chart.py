"""The deploy report's timeline chart: requests/s, failures, p95 latency and the serving color over time.

The one module of deploygate that imports matplotlib (and numpy); ``deploygate.report``
imports it only to draw, so the report is written, and says why, when it cannot be.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The Agg canvas is used without pyplot: no display is needed, and the process-wide backend is left alone.
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import is_color_like
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from deploygate import report_format as fmt
from deploygate.policy import percentile
from deploygate.proxy import HOLD_COLOR
from deploygate.record import DeployRecord
from deploygate.traffic import Response

HELD_FACE = "tab:orange"  # the chart's color of an accepted hold's answers (failures are tab:red)


def draw_timeline(record: DeployRecord, responses: Sequence[Response], path: Path) -> Path:
    """A PNG of requests/s and failed/s, p95 latency/s and the serving color against seconds since t0.

    t0 is the first stage's start (else the first response). Stage starts (and the
    last stage's end) and the rollback's trigger are marked with labelled lines.
    """
    origin = fmt.origin(record)
    if origin is None:
        origin = responses[0].ts if responses else 0.0
    # A row for the replicas' lag only when the deploy had replicas to sample.
    heights = [3, 2, 1.5, 1.5] + ([1.5] if record.replica_lag else []) + [0.6]
    fig = Figure(figsize=(12, 10 + (1.5 if record.replica_lag else 0)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    ax_rate, ax_p95, ax_errors, ax_latency, ax_color = *axes[:4], axes[-1]
    _draw_window(record, origin, ax_errors, ax_latency)
    if record.replica_lag:
        _draw_replica_lag(record, origin, axes[4])
    title = fmt.outcome_line(record)
    ref = record.candidate.ref if record.candidate else None
    fig.suptitle(f"{title}: {ref}" if ref else title, fontsize=11)

    if responses:
        rel = np.array([r.ts - origin for r in responses])
        first_s = int(math.floor(rel.min()))
        bins = np.floor(rel).astype(int) - first_s
        n_bins = int(bins.max()) + 1
        x = np.arange(n_bins) + first_s
        total = np.bincount(bins, minlength=n_bins)
        failed = np.bincount(bins, weights=[float(r.failed) for r in responses], minlength=n_bins)
        held = np.bincount(bins, weights=[float(r.held) for r in responses], minlength=n_bins)
        ax_rate.bar(x, total, width=1.0, align="edge", color="0.75", label="requests/s")
        ax_rate.bar(x, failed, width=1.0, align="edge", color="tab:red", label="failed/s (no answer or 5xx)")
        if held.any():  # an accepted hold's answers: announced downtime, drawn apart from failures
            ax_rate.bar(
                x, held, bottom=failed, width=1.0, align="edge", color=HELD_FACE, label="held/s (maintenance hold: 503 + Retry-After)"
            )
        # Legends sit outside the axes; headroom for the stage labels is added once they are placed.
        ax_rate.set_ylim(0, max(1, int(total.max())))
        ax_rate.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)

        p95 = np.full(n_bins, np.nan)
        latencies: dict[int, list[float]] = {}
        colors: dict[int, Counter] = {}
        for b, r in zip(bins.tolist(), responses, strict=True):
            if r.status != 0:
                latencies.setdefault(b, []).append(r.latency_ms)
            colors.setdefault(b, Counter())[r.color or "none"] += 1
        for b, values in latencies.items():
            p95[b] = percentile(values, 95)
        ax_p95.plot(x + 0.5, p95, color="tab:purple", marker=".", markersize=3, linewidth=1)

        # Runs of seconds served (mostly) by one color, drawn as one bar each.
        runs: list[tuple[str, int, int]] = []
        for b in sorted(colors):
            color = colors[b].most_common(1)[0][0]
            if runs and runs[-1][0] == color and runs[-1][2] == b:
                runs[-1] = (color, runs[-1][1], b + 1)
            else:
                runs.append((color, b, b + 1))
        shown: dict[str, str] = {}
        for color, start, end in runs:
            face = serving_face(color)
            shown[color] = face
            ax_color.broken_barh([(start + first_s, end - start)], (0, 1), facecolors=face)
        ax_color.legend(
            handles=[Patch(facecolor=f, label=c) for c, f in shown.items()], loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7
        )
    else:
        ax_rate.text(0.5, 0.5, "no traffic recorded", transform=ax_rate.transAxes, ha="center", va="center")

    stages = fmt.stage_phases(record, responses)
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
        for ax in axes:
            ax.axvline(at, linewidth=0.8, **style)
        labels.append(ax_rate.text(at, 0.99, f" {label} ", transform=top, fontsize=7, ha="left", va="top", color=style["color"]))
    rows = place_labels(fig, ax_rate, labels)
    # The bars stay below the lowest row of labels (each row 0.09 of the axes, from the top).
    ax_rate.set_ylim(0, ax_rate.get_ylim()[1] / max(0.2, 0.88 - 0.09 * (rows - 1)))

    ax_rate.set_ylabel("requests / s")
    ax_p95.set_ylabel("p95 latency (ms)\nthe deploy's probe")
    ax_color.set_yticks([])
    ax_color.set_ylabel("color", rotation=0, ha="right", va="center")
    ax_color.set_xlabel(f"seconds since {fmt.utc(origin)}")
    for ax in axes[:-1]:
        ax.grid(axis="y", linewidth=0.3)
    fig.savefig(path, format="png", dpi=110)
    return path


def _draw_window(record: DeployRecord, origin: float, ax_errors: Any, ax_latency: Any) -> None:
    """Per color, the 5xx rate and p95 the monitoring window judged (the proxy's log, baseline and window)."""
    ax_errors.set_ylabel("5xx % per color\n(proxy log)")
    ax_latency.set_ylabel("p95 ms per color\n(proxy log)")
    series = record.monitoring.series if record.monitoring else []
    if not series:
        ax_errors.text(0.5, 0.5, "no monitoring window series recorded", transform=ax_errors.transAxes, ha="center", va="center")
        return
    for color in sorted({p.color for p in series}):
        points = [p for p in series if p.color == color]
        x = [p.start - origin for p in points]
        face = serving_face(color)
        ax_errors.step(x, [p.error_rate_pct for p in points], where="post", color=face, label=color, linewidth=1)
        p95 = [p.p95_ms if p.p95_ms is not None else np.nan for p in points]
        ax_latency.plot(x, p95, color=face, marker=".", markersize=3, linewidth=1, label=color)
    ax_errors.set_ylim(bottom=0)
    ax_latency.set_ylim(bottom=0)
    ax_latency.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)


def _draw_replica_lag(record: DeployRecord, origin: float, ax: Any) -> None:
    """Per replica, how many bytes it was behind the primary (kB); an unanswered sample as a red mark on the axis."""
    ax.set_ylabel("replica lag (kB)\nbehind the primary")
    for index, name in enumerate(dict.fromkeys(s.name for s in record.replica_lag)):
        mine = [s for s in record.replica_lag if s.name == name]
        x = [s.ts - origin for s in mine]
        behind = [s.behind_bytes / 1000 if s.behind_bytes is not None else np.nan for s in mine]
        ax.plot(x, behind, color=f"C{index}", marker=".", markersize=3, linewidth=1, label=name)
        unanswered = [s.ts - origin for s in mine if s.behind_bytes is None]
        if unanswered:
            ax.plot(unanswered, [0] * len(unanswered), "x", color="tab:red", label=f"{name}: unanswered")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)


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
    for text, level in zip(labels, levels, strict=True):
        text.set_y(0.99 - 0.09 * level)
    return max(levels, default=0) + 1


def serving_face(color: str) -> str:
    """The fill for a serving color: matplotlib's softer "tab:" shade when it has one, the hold's own, grey for none or unknown."""
    if color == "none":
        return "0.85"
    if color == HOLD_COLOR:
        return HELD_FACE
    for candidate in (f"tab:{color}", color):
        if is_color_like(candidate):
            return candidate
    return "0.6"
