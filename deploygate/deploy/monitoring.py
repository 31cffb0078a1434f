"""The monitoring window after the switch: a narrow context in (``MonitorWindow``), a typed verdict out.

The first step given the shape every converted step now has (as nox's Session is all a
session may use of its SessionRunner): ``MonitorWindow.of(run)`` is the only place that
reads the deploy's run, so ``watch_window`` can be called with a hand-built context.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from deploygate import app_errors, cache, monitor, replicas, window_judge
from deploygate.app_errors import AppError
from deploygate.deploy.services import Switch
from deploygate.health import HealthSample
from deploygate.log import Say
from deploygate.platform import OTHER_COLOR
from deploygate.record import MonitoringRecord, SeriesRecord, SignatureRecord, TrafficRecord
from deploygate.replicas import LagSample
from deploygate.window_judge import Limits, TrafficSample

if TYPE_CHECKING:
    from deploygate.config import Settings
    from deploygate.deploy.state import DeployRun


def limits_of(settings: Settings) -> Limits:
    """The window's limits as configured (percentages of the factor turned into a factor)."""
    return Limits(
        min_requests=settings.monitor_min_requests,
        max_errors=settings.monitor_max_errors,
        max_error_rate_pct=settings.monitor_max_error_rate_pct,
        error_rate_margin_pct=settings.monitor_error_rate_margin_pct,
        max_p95_ms=settings.monitor_max_p95_ms,
        p95_factor=settings.monitor_p95_factor_pct / 100,
        p95_slack_ms=settings.monitor_p95_slack_ms,
        max_new_signatures=settings.monitor_max_new_signatures,
    )


@dataclass(frozen=True)
class MonitorWindow:
    """All the monitoring window may use (as nox's Session is all a session may use of its runner): the proxy's
    access records and health URL, the colors' output, whether each proxy runs, the colors, the limits, the log."""

    switch: Switch
    health: Callable[[str], HealthSample]
    proxy_running: Callable[[str], bool]
    color_output: Callable[[str, float, float | None], str]
    color: str
    switched_at: float
    window_s: int
    baseline_s: int
    limits: Limits
    on_inconclusive: str
    health_path: str
    say: Say
    redact: Callable[[str], str] = app_errors.redact_text
    replica_lag: Callable[[float], Sequence[LagSample]] = lambda since: ()  # the replicas' lag sampled since a time
    cache_ping: Callable[[], str | None] | None = None  # None when the cache answers, else why not; None: no cache

    @classmethod
    def of(cls, run: DeployRun) -> MonitorWindow:
        s = run.settings
        return cls(
            switch=run.proxy,
            health=run.services.health,
            proxy_running=run.platform.proxy_running,
            color_output=run.platform.color_output,
            color=run.new_color,
            switched_at=run.switched_at or time.time(),
            window_s=s.monitor_window_s,
            baseline_s=s.monitor_baseline_s,
            limits=limits_of(s),
            on_inconclusive=s.on_inconclusive,
            health_path=s.health_path,
            say=run.log,
            redact=lambda text: app_errors.redact_text(run.log.redact(text)),
            replica_lag=run.replica_lag.samples if run.replica_lag is not None else lambda since: (),
            cache_ping=cache_ping_of(run),
        )

    def app_errors(self, color: str, since: float, until: float | None) -> list[AppError]:
        """``color``'s errors in its output from ``since`` to ``until`` (now when None)."""
        lines = app_errors.parse_timestamped(self.color_output(color, since, until))
        return [e for e in app_errors.find_errors(lines) if since <= e.ts and (until is None or e.ts < until)]


def cache_ping_of(run: DeployRun) -> Callable[[], str | None] | None:
    urls = run.platform.cache_urls()
    return functools.partial(cache.ping, urls.host) if urls is not None else None


@dataclass
class CacheWatch:
    """The cache asked every ``every_s`` through the window: when it did not answer, and why (the last reason)."""

    ping: Callable[[], str | None]
    every_s: float = 2.0
    checks: int = 0
    failed_at: list[float] = field(default_factory=list)
    reason: str = ""
    _last: float = 0.0

    def observe(self) -> None:
        if time.time() - self._last < self.every_s:
            return
        self._last = time.time()
        failure = self.ping()
        self.checks += 1
        if failure:
            self.failed_at.append(self._last)
            self.reason = failure

    def note(self, switched_at: float) -> str | None:
        """The window's note when the cache failed to answer (not a reason to roll back: the release is not its cause)."""
        if not self.failed_at:
            return None
        first, last = self.failed_at[0] - switched_at, self.failed_at[-1] - switched_at
        return (
            f"monitoring: the cache did not answer {len(self.failed_at)} of {self.checks} checks "
            f"(from {first:.0f}s to {last:.0f}s after the switch): {self.reason}; the app's answers decided the verdict"
        )


@dataclass(frozen=True)
class MonitorVerdict:
    """What the window saw, for the record, and the notes that go with it."""

    monitoring: MonitoringRecord
    notes: list[str]

    @property
    def ok(self) -> bool:
        return self.monitoring.decision == "ok"


def _traffic(sample: TrafficSample | None) -> TrafficRecord | None:
    if sample is None:
        return None
    return TrafficRecord(sample.requests, sample.errors, round(sample.error_rate_pct, 2), sample.p50_ms, sample.p95_ms)


def watch_window(window: MonitorWindow) -> MonitorVerdict:
    """The new color against the serving color's baseline (proxy log, app errors) and health, for the configured window."""
    last = [0.0]
    baseline_color = OTHER_COLOR[window.color]
    cache_watch = CacheWatch(window.cache_ping) if window.cache_ping is not None else None

    def tick(state: monitor.MonitorState) -> None:
        if cache_watch is not None:
            cache_watch.observe()
        if time.time() - last[0] >= 5 or state.decision:
            last[0] = time.time()
            window.say("   " + state.line())

    sources = monitor.Sources(
        records=lambda since: window.switch.records(since=since),
        health=lambda: window.health(window_judge.monitor_poll_url(f"{window.switch.url}{window.health_path}")),
        app_errors=window.app_errors,
        counts=window.switch.counts,
    )
    plan = monitor.WindowPlan(
        color=window.color,
        baseline_color=baseline_color,
        switched_at=window.switched_at,
        window_s=window.window_s,
        baseline_s=window.baseline_s,
        limits=window.limits,
        on_inconclusive=window.on_inconclusive,
    )
    state = monitor.watch(sources, plan, on_tick=tick)
    notes = []
    judgement = state.judgement
    if judgement:
        window.say(f"   monitoring verdict: {judgement.verdict}: {judgement.reason}")
    if judgement and judgement.verdict == "inconclusive" and state.decision == "ok":
        notes.append(f"monitoring: inconclusive ({judgement.reason}); accepted by gates.on_inconclusive")
    if state.unlogged_errors:
        notes.append(
            f"monitoring: HAProxy counted {state.unlogged_errors} 5xx on {window.color} that its access log lacks "
            f"({state.proxy_counted.dropped_logs if state.proxy_counted else 0} log lines dropped); judged with them"
        )
    lag = replicas.lag_summary(window.replica_lag(window.switched_at))
    if lag:
        # Watched and said, not a reason to roll back: the previous release would read from the same replicas.
        notes.append("monitoring: replica lag in the window: " + "; ".join(lag))
    cache_note = cache_watch.note(window.switched_at) if cache_watch is not None else None
    if cache_note:
        notes.append(cache_note)
    if state.extended:
        notes.append(f"monitoring: the window was inconclusive and extended by {window.window_s}s (gates.on_inconclusive = extend)")
    # A node lost in the window takes its proxy with it: the verdict is the other proxies'. Said, not hidden.
    down = [name for name in window.switch.instances if not window.proxy_running(name)]
    if down:
        notes.append(
            f"monitoring: the proxy on {', '.join(down)} did not run at the end of the window; {state.decision} through the others"
        )
    for note in notes:
        window.say(f"   {note}")
    baseline_start = window.switched_at - window.baseline_s
    points = monitor.series(
        window.switch.records(since=baseline_start),
        (baseline_color, window.color),
        baseline_start,
        time.time(),
    )
    new = {s.signature for s in state.new_signatures}
    monitoring = MonitoringRecord(
        window_s=window.window_s,
        threshold=window.limits.max_errors,
        requests_by_color=dict(state.requests_by_color),
        errors_by_color=dict(state.errors_by_color),
        health_failures=state.health_failures,
        decision=state.decision or "",
        verdict=judgement.verdict if judgement else "",
        reason=judgement.reason if judgement else "",
        baseline_color=baseline_color,
        baseline_s=window.baseline_s,
        baseline=_traffic(state.baseline),
        new=_traffic(state.current),
        limits=asdict(window.limits),
        signatures=[SignatureRecord(s.signature, s.counts, s.signature in new, window.redact(s.sample)) for s in state.signatures],
        series=[SeriesRecord(p.start, p.color, p.requests, round(p.error_rate_pct, 2), p.p95_ms) for p in points],
        extended_s=state.extended_s,
        proxy_counted=asdict(state.proxy_counted) | {"unlogged_errors": state.unlogged_errors} if state.proxy_counted else {},
    )
    return MonitorVerdict(monitoring, notes)
