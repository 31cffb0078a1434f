"""The monitoring window after the switch: the new color watched against the old one's baseline.

What users saw is in the proxy's access log (per color: requests, 5xx, latency); what the
team would see in Sentry is in the app's own output (its error signatures). The baseline is
the serving color's traffic and errors in the ``baseline_s`` before the switch; the window
judges the new color against it (``window_judge``). Health is polled through the proxy as
well. A rollback reason that needs no more evidence (too many 5xx, a new error signature,
failing health) ends the window at once; otherwise it runs to its end and is judged there.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from deploygate import app_errors, window_judge
from deploygate.app_errors import AppError, Signature
from deploygate.health import HealthSample
from deploygate.policy import percentile
from deploygate.proxy import AccessRecord, ProxyCount
from deploygate.window_judge import FAIL, INCONCLUSIVE, PASS, Judgement, Limits, TrafficSample

Tick = Callable[["MonitorState"], None]
ON_INCONCLUSIVE = ("extend", "rollback", "accept")
# The app's output is read less often than the proxy's log: each read asks the engine for every line since the switch.
ERRORS_EVERY_S = 5.0
SERIES_POINTS = 60


@dataclass(frozen=True)
class Sources:
    """Where the window looks: the proxy's records since an epoch time, the health URL through the proxy,
    and a color's app errors between two epoch times."""

    records: Callable[[float], Iterable[AccessRecord]]
    health: Callable[[], HealthSample]
    app_errors: Callable[[str, float, float | None], Sequence[AppError]]
    # The proxies' own counters for a color (None: not available); they catch what a dropped log line hides.
    counts: Callable[[str], ProxyCount | None] = lambda color: None


@dataclass(frozen=True)
class WindowPlan:
    """What to watch and how: the new color against ``baseline_color`` over the ``baseline_s`` before ``switched_at``."""

    color: str
    baseline_color: str
    switched_at: float
    window_s: float
    baseline_s: float
    limits: Limits
    on_inconclusive: str = "extend"
    interval_s: float = 1.0
    max_health_failures: int = 3


@dataclass(frozen=True)
class SeriesPoint:
    """One color over one interval of the timeline: requests, 5xx rate and p95 (None without requests)."""

    start: float
    color: str
    requests: int
    error_rate_pct: float
    p95_ms: float | None


@dataclass
class MonitorState:
    """What the window saw so far; ``decision`` is None while it runs, then "ok" or "rollback: <reason>"."""

    color: str
    started: float
    window_s: float
    threshold: int
    requests_by_color: Counter = field(default_factory=Counter)
    errors_by_color: Counter = field(default_factory=Counter)
    health_checks: int = 0
    health_failures: int = 0
    baseline: TrafficSample | None = None
    current: TrafficSample | None = None
    signatures: list[Signature] = field(default_factory=list)
    new_signatures: list[Signature] = field(default_factory=list)
    judgement: Judgement | None = None
    proxy_counted: ProxyCount | None = None  # the new color's requests and 5xx by the proxies' counters, this window
    unlogged_errors: int = 0  # 5xx the counters saw that the access log lacks (judged all the same)
    extended_s: float = 0.0
    extended: bool = False
    decision: str | None = None

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.started + self.window_s + self.extended_s - time.time())

    def line(self) -> str:
        current = self.current.describe() if self.current else "no requests"
        return (
            f"monitoring {self.color}: {self.remaining_s:5.0f}s left | requests {dict(self.requests_by_color)} | "
            f"5xx {dict(self.errors_by_color)} (limit {self.threshold}) | {self.color}: {current} | "
            f"new error signatures {len(self.new_signatures)} | health failures {self.health_failures}"
        )


def health_reason(consecutive_health_failures: int, max_health_failures: int) -> str | None:
    """The rollback reason of failing health, if any (pure)."""
    if consecutive_health_failures >= max_health_failures:
        return f"health check failed {consecutive_health_failures} times in a row"
    return None


def final_decision(judgement: Judgement, on_inconclusive: str, *, can_extend: bool) -> str | None:
    """The window's decision from its end's judgement: "ok", "rollback: ..." or None (extend the window). Pure."""
    if judgement.verdict == PASS:
        return "ok"
    if judgement.verdict == INCONCLUSIVE:
        if on_inconclusive == "accept":
            return "ok"
        if on_inconclusive == "extend" and can_extend:
            return None
        return f"rollback: inconclusive: {judgement.reason}"
    return f"rollback: {judgement.reason}"


def series(records: Iterable[AccessRecord], colors: Sequence[str], start: float, end: float) -> list[SeriesPoint]:
    """Per color, requests, 5xx rate and p95 in at most ``SERIES_POINTS`` equal intervals from ``start`` to ``end``."""
    if end <= start:
        return []
    records = list(records)  # read once per color: an iterator (the proxy's log) would be spent on the first
    step = max(1.0, (end - start) / SERIES_POINTS)
    buckets: dict[tuple[int, str], list[AccessRecord]] = {}
    for color in colors:
        for record in window_judge.user_requests(records, color, start, end):
            buckets.setdefault((int((record.ts - start) // step), color), []).append(record)
    points = []
    for (index, color), rows in sorted(buckets.items()):
        latencies = [r.request_time * 1000.0 for r in rows]
        errors = sum(r.status >= 500 for r in rows)
        points.append(SeriesPoint(start + index * step, color, len(rows), 100.0 * errors / len(rows), percentile(latencies, 95)))
    return points


def _read_signatures(state: MonitorState, sources: Sources, plan: WindowPlan, baseline_errors: list[AppError]) -> None:
    """The new color's app errors since the switch, grouped with the baseline's into signatures, into ``state``."""
    new_errors = list(sources.app_errors(plan.color, plan.switched_at, None))
    state.signatures = app_errors.group({plan.baseline_color: baseline_errors, plan.color: new_errors})
    state.new_signatures = app_errors.new_signatures(state.signatures, plan.color, plan.baseline_color)


def watch(sources: Sources, plan: WindowPlan, *, on_tick: Tick | None = None) -> MonitorState:
    """Watch for ``plan.window_s`` seconds from now (longer when an inconclusive window is extended); returns with
    ``decision`` set, early on a reason that needs no more evidence."""
    state = MonitorState(color=plan.color, started=time.time(), window_s=plan.window_s, threshold=plan.limits.max_errors)
    baseline_start = plan.switched_at - plan.baseline_s
    baseline_records = [*sources.records(baseline_start)]
    state.baseline = window_judge.sample_of(
        window_judge.user_requests(baseline_records, plan.baseline_color, baseline_start, plan.switched_at)
    )
    baseline_errors = list(sources.app_errors(plan.baseline_color, baseline_start, plan.switched_at))
    consecutive, errors_read = 0, 0.0
    counted_from = sources.counts(plan.color)
    while True:
        records = [*sources.records(plan.switched_at)]
        counted_now = sources.counts(plan.color)
        state.requests_by_color = Counter(r.color for r in records)
        state.errors_by_color = Counter(r.color for r in records if r.status >= 500)
        logged = window_judge.sample_of(window_judge.user_requests(records, plan.color, plan.switched_at, float("inf")))
        state.proxy_counted = counted_now.since(counted_from) if counted_now and counted_from else None
        state.current, state.unlogged_errors = window_judge.reconciled(
            logged, state.proxy_counted, state.health_checks, state.health_failures
        )
        ending = state.remaining_s <= 0
        read_now = ending or time.time() - errors_read >= ERRORS_EVERY_S
        if read_now:
            errors_read = time.time()
            _read_signatures(state, sources, plan, baseline_errors)
        state.health_checks += 1
        healthy = sources.health().ok
        consecutive = 0 if healthy else consecutive + 1
        state.health_failures += not healthy
        unhealthy = health_reason(consecutive, plan.max_health_failures)
        early = window_judge.judge_early(state.current, state.new_signatures, plan.limits, plan.color)
        if unhealthy or early:
            state.judgement = Judgement(FAIL, unhealthy) if unhealthy else early
            state.decision = f"rollback: {state.judgement.reason}"
        elif ending:
            state.judgement = window_judge.judge(state.baseline, state.current, state.new_signatures, plan.limits, plan.color)
            state.decision = final_decision(state.judgement, plan.on_inconclusive, can_extend=not state.extended)
            if state.decision is None:
                state.extended, state.extended_s = True, plan.window_s
        if state.decision and not read_now:
            _read_signatures(state, sources, plan, baseline_errors)  # decided on 5xx or health: the report lists the errors too
        if on_tick:
            on_tick(state)
        if state.decision:
            return state
        time.sleep(min(plan.interval_s, max(state.remaining_s, 0.05)))
