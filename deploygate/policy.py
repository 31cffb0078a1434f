"""Deploy policy as pure functions: the deploy window, time since the last deploy, recent error rate.

Kept free of I/O so each rule is unit-tested exactly; the gate suite feeds them the
clock, the ledger and the proxy's access log.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from deploygate.errors import ConfigError
from deploygate.proxy import HOLD_COLOR, AccessRecord


def parse_window(window: str) -> tuple[dt.time, dt.time | None]:
    """``"02:00-04:00"`` -> (02:00, 04:00); an end of ``24:00`` means end of day (None)."""
    try:
        start_text, end_text = (part.strip() for part in window.split("-"))
        start = dt.time.fromisoformat(start_text)
        end = None if end_text == "24:00" else dt.time.fromisoformat(end_text)
    except ValueError:
        raise ConfigError(f"deploy window {window!r} is not HH:MM-HH:MM") from None
    return start, end


def in_window(now: dt.datetime, window: str, timezone: str) -> bool:
    """Whether aware ``now`` falls in ``window`` in ``timezone``; a window may wrap past midnight."""
    try:
        local = now.astimezone(ZoneInfo(timezone)).time()
    except ZoneInfoNotFoundError:
        raise ConfigError(f"unknown time zone {timezone!r}") from None
    start, end = parse_window(window)
    if end is None:
        return local >= start
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def hours_since(then: dt.datetime, now: dt.datetime) -> float:
    return (now - then).total_seconds() / 3600


@dataclass(frozen=True)
class ErrorRate:
    requests: int
    errors: int

    @property
    def percent(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0


def error_rate(records: Iterable[AccessRecord]) -> ErrorRate:
    """Share of 5xx among the requests the app served (what users saw at the proxy).

    A planned maintenance hold's 503s are the proxy's own answer, not the app's health: left out.
    """
    total = errors = 0
    for record in records:
        if record.color == HOLD_COLOR:
            continue
        total += 1
        errors += record.status >= 500
    return ErrorRate(requests=total, errors=errors)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: the answer is a latency that was observed)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
