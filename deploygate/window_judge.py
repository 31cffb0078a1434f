"""The monitoring window's judgement: the new color against the serving color's baseline from before the switch (pure).

What the best rollout controllers do, in small: Argo Rollouts' "inconclusive" below enough
data, Flagger's absolute limits (non-5xx share, p95), Kayenta's comparison with a baseline
from the same production. A verdict is one of ``PASS``, ``FAIL`` and ``INCONCLUSIVE``, and
always comes with its reason: a window with too little traffic is never a silent pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from deploygate.app_errors import Signature
from deploygate.policy import percentile
from deploygate.proxy import AccessRecord, ProxyCount

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
# The p95 judged is that of a typical interval of this length (``typical_p95``), of at least this many requests.
INTERVAL_S = 5.0
MIN_PER_INTERVAL = 20


@dataclass(frozen=True)
class Limits:
    """The window's limits: absolute ones, relative ones (against the baseline), and how much evidence is enough."""

    min_requests: int = 100
    max_errors: int = 10  # 5xx on the new color, however many requests
    max_error_rate_pct: float = 5.0
    error_rate_margin_pct: float = 1.0  # percentage points above the baseline's rate
    max_p95_ms: float = 1000.0
    p95_factor: float = 2.0
    p95_slack_ms: float = 20.0  # below baseline + slack, a p95 is within noise whatever the factor says
    max_new_signatures: int = 0


@dataclass(frozen=True)
class TrafficSample:
    """One color's requests over a period, as the proxy logged them: how many, 5xx, latency percentiles."""

    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None

    @property
    def error_rate_pct(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        p95 = f"{self.p95_ms:.0f} ms" if self.p95_ms is not None else "-"
        return f"{self.requests} requests, {self.errors} 5xx ({self.error_rate_pct:.1f} %), p95 {p95}"


def reconciled(logged: TrafficSample, counted: ProxyCount | None, polls: int, failed_polls: int) -> tuple[TrafficSample, int]:
    """``logged`` with the requests and 5xx the proxy counted but its log lacks added, and how many 5xx those were.

    The counters include the monitor's own health polls, which the logged sample leaves out (``polls``, of
    which ``failed_polls`` failed). Counted from the window's start, they may miss its first requests: they
    only ever add to what the log shows, never hide a logged 5xx.
    """
    if counted is None:
        return logged, 0
    unlogged_requests = max(0, counted.requests - polls - logged.requests)
    unlogged_errors = max(0, counted.errors - failed_polls - logged.errors)
    if not unlogged_requests and not unlogged_errors:
        return logged, 0
    return replace(logged, requests=logged.requests + unlogged_requests, errors=logged.errors + unlogged_errors), unlogged_errors


# The query the monitor's own health polls carry through the proxy: no user's traffic, so not judged. Marked rather
# than told by path: users' and a team's own requests to the health path (or the traffic probe's) do count.
MONITOR_POLL = "deploygate=monitor"


def monitor_poll_url(url: str) -> str:
    """``url`` (the health URL through the proxy) marked as the monitor's own poll."""
    return f"{url}{'&' if '?' in url else '?'}{MONITOR_POLL}"


def user_requests(records: Iterable[AccessRecord], color: str, start: float, end: float) -> list[AccessRecord]:
    """``color``'s records with ``start <= ts < end``, but the monitor's own health polls (``MONITOR_POLL``)."""
    return [r for r in records if r.color == color and start <= r.ts < end and MONITOR_POLL not in urlsplit(r.uri).query]


def typical_p95(records: Sequence[AccessRecord], interval_s: float = INTERVAL_S) -> float | None:
    """The median of the p95s of ``interval_s`` intervals with at least ``MIN_PER_INTERVAL`` requests (the p95 of all
    ``records`` when none has as many; None without records).

    Why not the p95 of the whole period: the baseline runs while the deploy backs up and rehearses on the same
    machine, and a few seconds of that load would set the p95 of the whole period, hiding a release that is
    slower all the time; a slow release is slow in every interval, a hiccup in a few.
    """
    by_interval: dict[int, list[float]] = {}
    for r in records:
        by_interval.setdefault(int(r.ts // interval_s), []).append(r.request_time * 1000.0)
    p95s = sorted(percentile(v, 95) for v in by_interval.values() if len(v) >= MIN_PER_INTERVAL)
    if not p95s:
        latencies = [r.request_time * 1000.0 for r in records]
        return percentile(latencies, 95) if latencies else None
    middle = len(p95s) // 2
    return p95s[middle] if len(p95s) % 2 else (p95s[middle - 1] + p95s[middle]) / 2


def sample_of(records: Sequence[AccessRecord]) -> TrafficSample:
    """Counts and latency of ``records`` (latency from the proxy's request_time; p95 as ``typical_p95``)."""
    latencies = [r.request_time * 1000.0 for r in records]
    return TrafficSample(
        requests=len(records),
        errors=sum(r.status >= 500 for r in records),
        p50_ms=percentile(latencies, 50) if latencies else None,
        p95_ms=typical_p95(records),
    )


@dataclass(frozen=True)
class Judgement:
    verdict: str  # PASS | FAIL | INCONCLUSIVE
    reason: str


def p95_limit(baseline: TrafficSample, limits: Limits) -> float:
    """The new color's p95 budget: the baseline's × factor (never closer to it than the slack), capped by the absolute limit."""
    if baseline.p95_ms is None:
        return limits.max_p95_ms
    relative = max(baseline.p95_ms * limits.p95_factor, baseline.p95_ms + limits.p95_slack_ms)
    return min(relative, limits.max_p95_ms)


def error_rate_limit(baseline: TrafficSample, limits: Limits) -> float:
    """The new color's 5xx share budget, in percent: the baseline's + margin, capped by the absolute limit."""
    return min(baseline.error_rate_pct + limits.error_rate_margin_pct, limits.max_error_rate_pct)


def judge_early(new: TrafficSample, new_signatures: Sequence[Signature], limits: Limits, color: str = "the new color") -> Judgement | None:
    """A failure that needs no more evidence, at any moment of the window: too many 5xx, new error signatures."""
    if new.errors > limits.max_errors:
        return Judgement(FAIL, f"{new.errors} errors on {color} exceed the limit of {limits.max_errors}")
    if len(new_signatures) > limits.max_new_signatures:
        shown = "; ".join(s.signature for s in new_signatures[:3])
        return Judgement(
            FAIL, f"{len(new_signatures)} new error signature(s) the baseline did not show (limit {limits.max_new_signatures}): {shown}"
        )
    return None


def judge(
    baseline: TrafficSample, new: TrafficSample, new_signatures: Sequence[Signature], limits: Limits, color: str = "the new color"
) -> Judgement:
    """The verdict at the window's end: an early failure, else inconclusive below ``min_requests`` on either side,
    else the new color's 5xx rate and p95 against the baseline's (relative and absolute limits)."""
    early = judge_early(new, new_signatures, limits, color)
    if early:
        return early
    short = [
        f"{name} had {sample.requests} requests"
        for name, sample in (("the baseline", baseline), (color, new))
        if sample.requests < limits.min_requests
    ]
    if short:
        return Judgement(INCONCLUSIVE, f"{' and '.join(short)}, fewer than the {limits.min_requests} needed to judge")
    rate_limit = error_rate_limit(baseline, limits)
    if new.error_rate_pct > rate_limit:
        return Judgement(
            FAIL,
            f"5xx rate {new.error_rate_pct:.1f} % on {color} above {rate_limit:.1f} % "
            f"(baseline {baseline.error_rate_pct:.1f} % + {limits.error_rate_margin_pct:g}, at most {limits.max_error_rate_pct:g})",
        )
    budget = p95_limit(baseline, limits)
    if new.p95_ms is not None and new.p95_ms > budget:
        return Judgement(
            FAIL,
            f"p95 {new.p95_ms:.0f} ms on {color} above {budget:.0f} ms "
            f"(baseline {baseline.p95_ms or 0:.0f} ms × {limits.p95_factor:g}, at most {limits.max_p95_ms:g} ms)",
        )
    return Judgement(
        PASS,
        f"{color}: {new.describe()} within {rate_limit:.1f} % and {budget:.0f} ms of a baseline of {baseline.describe()}",
    )
