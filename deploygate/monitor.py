"""The monitoring window after the switch: errors per color from the proxy's access log, plus health.

What users saw is in the access log, so errors are counted there per color; the
health endpoint is polled as well. Rollback is decided when the new color's errors
exceed the threshold or its health fails, otherwise the window runs to its end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from deploygate.health import HealthSample
from deploygate.proxy import AccessRecord

Tick = Callable[["MonitorState"], None]


@dataclass
class MonitorState:
    """Counts so far; ``decision`` is None while the window runs, then "ok" or the reason to roll back."""

    color: str
    started: float
    window_s: float
    threshold: int
    requests_by_color: Counter = field(default_factory=Counter)
    errors_by_color: Counter = field(default_factory=Counter)
    health_checks: int = 0
    health_failures: int = 0
    decision: str | None = None

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.started + self.window_s - time.time())

    def line(self) -> str:
        return (
            f"monitoring {self.color}: {self.remaining_s:5.0f}s left | requests {dict(self.requests_by_color)} | "
            f"5xx {dict(self.errors_by_color)} (limit {self.threshold}) | health failures {self.health_failures}"
        )


def judge(state: MonitorState, *, consecutive_health_failures: int, max_health_failures: int) -> str | None:
    """The rollback reason, if any (pure: unit-tested)."""
    if state.errors_by_color[state.color] > state.threshold:
        return f"{state.errors_by_color[state.color]} errors on {state.color} exceed the limit of {state.threshold}"
    if consecutive_health_failures >= max_health_failures:
        return f"health check failed {consecutive_health_failures} times in a row"
    return None


def watch(
    records: Callable[[float], Iterable[AccessRecord] | Iterator[AccessRecord]],
    health: Callable[[], HealthSample],
    color: str,
    *,
    window_s: float,
    threshold: int,
    interval_s: float = 1.0,
    max_health_failures: int = 3,
    on_tick: Tick | None = None,
) -> MonitorState:
    """Watch for ``window_s`` seconds from now; returns with ``decision`` set (early on a rollback reason).

    ``records(since)`` gives the proxy's access records since an epoch time; ``health()`` samples
    the app's health URL through the proxy.
    """
    state = MonitorState(color=color, started=time.time(), window_s=window_s, threshold=threshold)
    consecutive = 0
    while True:
        state.requests_by_color.clear()
        state.errors_by_color.clear()
        for record in records(state.started):
            state.requests_by_color[record.color] += 1
            if record.status >= 500:
                state.errors_by_color[record.color] += 1
        state.health_checks += 1
        healthy = health().ok
        consecutive = 0 if healthy else consecutive + 1
        state.health_failures += not healthy
        reason = judge(state, consecutive_health_failures=consecutive, max_health_failures=max_health_failures)
        if on_tick:
            on_tick(state)
        if reason:
            state.decision = f"rollback: {reason}"
            return state
        if state.remaining_s <= 0:
            state.decision = "ok"
            return state
        time.sleep(min(interval_s, state.remaining_s))
