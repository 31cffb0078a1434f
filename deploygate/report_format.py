"""How the deploy report writes what a record says, for its markdown and its chart alike.

The record's title and clock (t0, each stage's span) and the values in its tables
(numbers, sizes, durations, times of day), each written one way wherever it appears.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

from deploygate.record import DeployRecord, Outcome
from deploygate.traffic import Response


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


def origin(record: DeployRecord) -> float | None:
    """t0: the first stage's start (None: no stage was recorded)."""
    return min((s.started for s in record.stages), default=None)


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


def text(value: Any) -> str:
    """Any value as the report writes it: "—" for none, yes/no, floats to a few significant digits, JSON for collections."""
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


def cell(value: Any) -> str:
    """A value safe inside a markdown table cell (one line, pipes escaped)."""
    return " ".join(text(value).split()).replace("|", "\\|")


def seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f} s"


def ms(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} ms"


def size(value: Any) -> str | None:
    """A byte count in B, KiB, MiB or GiB (with the exact count beside the larger units)."""
    amount = _number(value)
    if amount is None:
        return None if value is None else str(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit} ({int(value):,} bytes)"
        amount /= 1024
    return None  # unreachable: the loop returns at GiB


def counts(by_name: dict) -> str:
    """``blue: 3, green: 6`` ("—" for none)."""
    return ", ".join(f"{k}: {v}" for k, v in by_name.items()) or "—"


def utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def clock(ts: float | None, since: float | None) -> str | None:
    """A time of day to a tenth of a second, with its offset from t0 (``since``) when there is one."""
    if ts is None:
        return None
    time_of_day = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M:%S.%f")[:-5]
    return f"{time_of_day} (+{ts - since:.1f} s)" if since is not None else time_of_day


def code(value: Any) -> str | None:
    return None if value is None else f"`{value}`"


def short_id(image_id: Any) -> str | None:
    """An image id as docker prints it: ``sha256:`` and 12 hex digits."""
    if not image_id:
        return None
    id_text = str(image_id)
    return id_text[:19] if id_text.startswith("sha256:") else id_text[:12]


def paren(*parts: Any) -> str | None:
    """The non-empty parts in parentheses, comma-separated (None: all empty)."""
    inner = ", ".join(str(p) for p in parts if p)
    return f"({inner})" if inner else None


def join(*parts: Any) -> str:
    """The non-empty parts, space-separated."""
    return " ".join(str(p) for p in parts if p)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
