"""Numbers from the traffic probe's recorded responses, per deploy stage and in total (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deploygate.policy import percentile
from deploygate.traffic import Response


@dataclass(frozen=True)
class PhaseStats:
    """Traffic during one phase (a deploy stage) of the deploy."""

    name: str
    start: float
    end: float
    requests: int
    failed: int  # status 0 or >= 500, hold answers excepted
    non_2xx: int  # every status outside 200-299, 0 included
    p50_ms: float | None  # over requests that got an HTTP answer; None if none did
    p95_ms: float | None
    colors: dict[str, int]  # X-Deploygate-Color -> requests it served
    held: int = 0  # answered by an accepted maintenance hold (see Response.held)


def _stats(name: str, start: float, end: float, responses: Sequence[Response]) -> PhaseStats:
    # A refused connection "answers" in microseconds and a timeout in exactly
    # timeout_s: neither is a latency users saw, so percentiles use real answers.
    latencies = [r.latency_ms for r in responses if r.status != 0]
    colors = Counter(r.color for r in responses if r.color)
    return PhaseStats(
        name=name,
        start=start,
        end=end,
        requests=len(responses),
        failed=sum(r.failed for r in responses),
        non_2xx=sum(not 200 <= r.status < 300 for r in responses),
        p50_ms=percentile(latencies, 50) if latencies else None,
        p95_ms=percentile(latencies, 95) if latencies else None,
        colors=dict(sorted(colors.items())),
        held=sum(r.held for r in responses),
    )


def phase_stats(responses: Iterable[Response], phases: Sequence[tuple[str, float, float]]) -> list[PhaseStats]:
    """Stats per phase, in the order given.

    ``phases`` are ``(name, start_ts, end_ts)`` in epoch seconds; a response belongs
    to every phase with ``start_ts <= ts < end_ts`` (phases are normally disjoint).
    """
    responses = list(responses)
    return [_stats(name, start, end, [r for r in responses if start <= r.ts < end]) for name, start, end in phases]


def summary(responses: Iterable[Response]) -> dict:
    """JSON-ready totals of a probe run.

    Keys: requests, failed, held, non_2xx, writes, created, rate_per_s (achieved: intervals
    between the first and last send per second; None for fewer than two requests),
    p50_ms, p95_ms, by_color, by_status (status as a string key), errors (the most
    common status-0 error lines), first_ts, last_ts.
    """
    responses = sorted(responses, key=lambda r: r.ts)
    first = responses[0].ts if responses else None
    last = responses[-1].ts if responses else None
    span = (last - first) if first is not None and last is not None else 0.0
    stats = _stats("all", first or 0.0, last or 0.0, responses)
    errors = Counter(r.error for r in responses if r.error)
    return {
        "requests": stats.requests,
        "failed": stats.failed,
        "held": stats.held,
        "non_2xx": stats.non_2xx,
        "writes": sum(r.method == "POST" for r in responses),
        "created": sum(r.created_id is not None for r in responses),
        "rate_per_s": (len(responses) - 1) / span if len(responses) > 1 and span > 0 else None,
        "p50_ms": stats.p50_ms,
        "p95_ms": stats.p95_ms,
        "by_color": stats.colors,
        "by_status": {str(k): v for k, v in sorted(Counter(r.status for r in responses).items())},
        "errors": dict(errors.most_common(5)),
        "first_ts": first,
        "last_ts": last,
    }
