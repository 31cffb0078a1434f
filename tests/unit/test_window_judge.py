"""The monitoring window's judgement (pure): error signatures, the new color against the baseline, inconclusive."""

from __future__ import annotations

import time

import pytest

from deploygate import app_errors, monitor, window_judge
from deploygate.health import HealthSample
from deploygate.proxy import AccessRecord, ProxyCount
from deploygate.window_judge import FAIL, INCONCLUSIVE, PASS, Limits, TrafficSample

OUTPUT = """\
2024-05-01T10:00:00.100000000Z 2024-05-01 10:00:00,100 INFO gunicorn.access: "GET / HTTP/1.1" 200
2024-05-01T10:00:01.123456789Z 2024-05-01 10:00:01,123 ERROR unified_db.views: the page's summary failed
2024-05-01T10:00:01.123456789Z Traceback (most recent call last):
2024-05-01T10:00:01.123456789Z   File "/app/unified_db/views.py", line 80, in link_list_page
2024-05-01T10:00:01.123456789Z     summary = _summary(rows)
2024-05-01T10:00:01.123456789Z               ^^^^^^^^^^^^^
2024-05-01T10:00:01.123456789Z   File "/app/unified_db/views.py", line 70, in _summary
2024-05-01T10:00:01.123456789Z     return rows[0]["membre"]
2024-05-01T10:00:01.123456789Z   File "/usr/local/lib/python3.11/site-packages/django/utils/functional.py", line 57, in __get__
2024-05-01T10:00:01.123456789Z     res = instance.__dict__[self.name] = self.func(instance)
2024-05-01T10:00:01.123456789Z KeyError: 'membre'
2024-05-01T10:00:02.000000000Z 2024-05-01 10:00:02,000 ERROR django.request: Internal Server Error: /api/links/17/
2024-05-01T10:00:03.000000000Z 2024-05-01 10:00:03,000 ERROR django.request: Internal Server Error: /api/links/
2024-05-01T10:00:03.000000000Z Traceback (most recent call last):
2024-05-01T10:00:03.000000000Z   File "/usr/local/lib/python3.11/site-packages/psycopg/cursor.py", line 723, in execute
2024-05-01T10:00:03.000000000Z     raise ex.with_traceback(None)
2024-05-01T10:00:03.000000000Z psycopg.errors.UndefinedColumn: column "x" does not exist
2024-05-01T10:00:03.000000000Z
2024-05-01T10:00:03.000000000Z The above exception was the direct cause of the following exception:
2024-05-01T10:00:03.000000000Z
2024-05-01T10:00:03.000000000Z Traceback (most recent call last):
2024-05-01T10:00:03.000000000Z   File "/app/unified_db/views.py", line 95, in _list_links
2024-05-01T10:00:03.000000000Z     found = list(queryset[offset : offset + page_size + 1])
2024-05-01T10:00:03.000000000Z   File "/usr/local/lib/python3.11/site-packages/django/db/backends/utils.py", line 89, in _execute
2024-05-01T10:00:03.000000000Z     return self.cursor.execute(sql, params)
2024-05-01T10:00:03.000000000Z django.db.utils.ProgrammingError: column "x" (postgres://app:s3cret@db/app password=hunter2 key=k-42)
2024-05-01T10:00:04.000000000Z 2024-05-01 10:00:04,000 INFO gunicorn.access: "GET / HTTP/1.1" 200
"""


def test_errors_are_grouped_by_type_and_innermost_app_frame_with_their_counts_per_color() -> None:
    lines = app_errors.parse_timestamped(OUTPUT)
    errors = app_errors.find_errors(lines)
    assert [e.signature for e in errors] == [
        "KeyError at /app/unified_db/views.py in _summary",  # the innermost frame of the app, not django's below it
        "django.request at Internal Server Error: /api/links/<n>/",  # a 5xx without a traceback: its path, ids folded
        "django.db.utils.ProgrammingError at /app/unified_db/views.py in _list_links",  # a chain: the last exception raised
    ]
    assert errors[0].ts == pytest.approx(1714557601.123456)
    # The same error twice on green, once on blue (another line number: the same signature).
    blue = app_errors.find_errors(app_errors.parse_timestamped(OUTPUT.replace("line 70", "line 71"))[:11])
    signatures = app_errors.group({"blue": blue, "green": errors + errors[:1]})
    assert [(s.signature.split(" at ")[0], s.counts) for s in signatures] == [
        ("KeyError", {"blue": 1, "green": 2}),
        ("django.db.utils.ProgrammingError", {"green": 1}),
        ("django.request", {"green": 1}),
    ]
    assert signatures[0].sample.startswith("2024-05-01 10:00:01,123 ERROR unified_db.views: the page's summary failed\nTraceback")
    new = app_errors.new_signatures(signatures, "green", "blue")
    assert [s.signature.split(" at ")[0] for s in new] == ["django.db.utils.ProgrammingError", "django.request"]


def test_a_sample_never_shows_a_secret() -> None:
    errors = app_errors.find_errors(app_errors.parse_timestamped(OUTPUT))
    sample = app_errors.group({"green": errors}, redact=lambda t: app_errors.redact_text(t, ["k-42"]))[1].sample
    assert "s3cret" not in sample and "hunter2" not in sample and "k-42" not in sample
    assert "postgres://app:***@db/app password=*** key=***" in sample


def test_a_traceback_cut_off_at_the_end_of_a_period_is_no_error() -> None:
    lines = app_errors.parse_timestamped(OUTPUT)[:8]
    assert app_errors.find_errors(lines) == []


def _sample(requests: int, errors: int = 0, p95: float | None = 20.0) -> TrafficSample:
    return TrafficSample(requests, errors, p95, p95)


def test_the_new_color_is_judged_against_the_baseline_by_relative_and_absolute_limits() -> None:
    limits = Limits(min_requests=100, max_error_rate_pct=5, error_rate_margin_pct=1, max_p95_ms=1000, p95_factor=2, p95_slack_ms=20)
    baseline = _sample(500, errors=5, p95=40.0)  # 1 % 5xx
    assert window_judge.judge(baseline, _sample(400, errors=8, p95=79.0), [], limits).verdict == PASS  # 2.0 %, 79 ms
    rate = window_judge.judge(baseline, _sample(400, errors=9, p95=40.0), [], limits)
    assert rate.verdict == FAIL and "5xx rate 2.2 % on the new color above 2.0 %" in rate.reason
    slow = window_judge.judge(baseline, _sample(400, p95=120.0), [], limits)
    assert slow.verdict == FAIL and "p95 120 ms on the new color above 80 ms" in slow.reason
    # A fast baseline: doubling 5 ms is noise below the slack; the absolute limits cap a slow baseline's budget.
    assert window_judge.judge(_sample(500, p95=5.0), _sample(400, p95=24.0), [], limits).verdict == PASS
    assert window_judge.p95_limit(_sample(500, p95=5.0), limits) == 25.0
    assert window_judge.p95_limit(_sample(500, p95=900.0), limits) == 1000.0
    assert window_judge.error_rate_limit(_sample(100, errors=10), limits) == 5.0


def test_too_few_requests_is_inconclusive_but_a_failure_needs_no_minimum() -> None:
    limits = Limits(min_requests=100, max_errors=10)
    short = window_judge.judge(_sample(500), _sample(40), [], limits)
    assert short.verdict == INCONCLUSIVE and short.reason == "the new color had 40 requests, fewer than the 100 needed to judge"
    no_baseline = window_judge.judge(_sample(3), _sample(400), [], limits)
    assert no_baseline.verdict == INCONCLUSIVE and "the baseline had 3 requests" in no_baseline.reason
    assert window_judge.judge(_sample(500), _sample(40, errors=11), [], limits).verdict == FAIL
    signature = app_errors.Signature("KeyError at /app/views.py in page", {"green": 1}, "...")
    new = window_judge.judge(_sample(500), _sample(40), [signature], limits)
    assert new.verdict == FAIL and "1 new error signature(s)" in new.reason and "KeyError at /app/views.py in page" in new.reason
    assert window_judge.judge(_sample(500), _sample(400), [signature], Limits(max_new_signatures=1)).verdict == PASS


@pytest.mark.parametrize(
    "verdict, on_inconclusive, can_extend, decision",
    [
        (PASS, "rollback", True, "ok"),
        (FAIL, "accept", True, "rollback: why"),
        (INCONCLUSIVE, "accept", True, "ok"),
        (INCONCLUSIVE, "rollback", True, "rollback: inconclusive: why"),
        (INCONCLUSIVE, "extend", True, None),
        (INCONCLUSIVE, "extend", False, "rollback: inconclusive: why"),
    ],
)
def test_an_inconclusive_window_follows_on_inconclusive(verdict: str, on_inconclusive: str, can_extend: bool, decision: str | None) -> None:
    judgement = window_judge.Judgement(verdict, "why")
    assert monitor.final_decision(judgement, on_inconclusive, can_extend=can_extend) == decision


def test_the_user_requests_leave_the_monitors_own_health_polls_and_other_colors_out() -> None:
    records = [
        AccessRecord(10.0, "blue", "GET", "/api/links/?page=2", 200, 0.010),
        AccessRecord(11.0, "blue", "GET", "/health/?deploygate=monitor", 200, 0.001),
        AccessRecord(11.5, "blue", "GET", "/health/", 200, 0.002),  # a user's (or the traffic probe's): judged
        AccessRecord(12.0, "green", "GET", "/", 502, 0.030),
        AccessRecord(20.0, "blue", "GET", "/", 500, 0.020),
    ]
    kept = window_judge.user_requests(records, "blue", 0.0, 20.0)
    assert [r.ts for r in kept] == [10.0, 11.5]
    assert window_judge.monitor_poll_url("http://p/health/?full=1") == "http://p/health/?full=1&deploygate=monitor"
    sample = window_judge.sample_of(window_judge.user_requests(records, "green", 0.0, 30.0))
    assert (sample.requests, sample.errors, sample.p95_ms) == (1, 1, pytest.approx(30.0))


def test_the_series_gives_each_color_its_error_rate_and_p95_per_interval() -> None:
    records = [AccessRecord(100.0 + i, "blue", "GET", "/", 200, 0.010) for i in range(60)]
    records += [AccessRecord(160.0 + i, "green", "GET", "/", 500 if i % 4 == 0 else 200, 0.030) for i in range(60)]
    points = monitor.series(iter(records), ("blue", "green"), 100.0, 220.0)  # as the proxy gives them: an iterator
    assert len({p.start for p in points}) == 60 and {p.color for p in points[:30]} == {"blue"}
    green = [p for p in points if p.color == "green"]
    assert sum(p.requests for p in green) == 60 and green[0].error_rate_pct == 50.0 and green[0].p95_ms == pytest.approx(30.0)


def _watch(on_inconclusive: str, green_requests: int, window_s: float = 0.2) -> monitor.MonitorState:
    now = time.time()
    baseline = [AccessRecord(now - 30 + i * 0.1, "blue", "GET", "/", 200, 0.010) for i in range(200)]
    window = [AccessRecord(now + 0.001 * i, "green", "GET", "/", 200, 0.012) for i in range(green_requests)]
    sources = monitor.Sources(
        records=lambda since: [r for r in baseline + window if r.ts >= since],
        health=lambda: HealthSample("u", 200, 1.0, None),
        app_errors=lambda color, since, until: [],
    )
    plan = monitor.WindowPlan(
        "green", "blue", now, window_s, 60, Limits(min_requests=100), on_inconclusive=on_inconclusive, interval_s=0.05
    )
    return monitor.watch(sources, plan)


def test_the_window_passes_on_enough_evidence_and_extends_once_without_it() -> None:
    passed = _watch("rollback", 150)
    assert passed.decision == "ok" and passed.judgement.verdict == PASS and not passed.extended
    assert passed.baseline.requests == 200 and passed.current.requests == 150
    started = time.time()
    extended = _watch("extend", 20)
    assert extended.extended and extended.extended_s == 0.2 and time.time() - started >= 0.4
    assert extended.decision == "rollback: inconclusive: green had 20 requests, fewer than the 100 needed to judge"


def test_a_new_error_signature_ends_the_window_at_once() -> None:
    error = app_errors.AppError(time.time(), "KeyError", "/app/views.py in page", "Traceback ...")
    sources = monitor.Sources(
        records=lambda since: [],
        health=lambda: HealthSample("u", 200, 1.0, None),
        app_errors=lambda color, since, until: [error] if color == "green" else [],
    )
    started = time.time()
    state = monitor.watch(sources, monitor.WindowPlan("green", "blue", started, 60, 60, Limits()))
    assert time.time() - started < 5 and state.decision.startswith("rollback: 1 new error signature(s)")
    assert [s.signature for s in state.new_signatures] == ["KeyError at /app/views.py in page"]


def test_the_p95_judged_is_a_typical_intervals_so_a_burst_of_load_does_not_set_the_baseline() -> None:
    steady = [AccessRecord(1000.0 + i * 0.05, "blue", "GET", "/", 200, 0.010 + 0.001 * (i % 10)) for i in range(1000)]  # 50 s
    burst = [AccessRecord(1050.0 + i * 0.05, "blue", "GET", "/", 200, 0.200) for i in range(200)]  # then 10 s at 200 ms
    assert window_judge.percentile([r.request_time * 1000 for r in steady + burst], 95) == pytest.approx(200.0)
    assert window_judge.typical_p95(steady + burst) == pytest.approx(19.0)
    slow = [AccessRecord(r.ts, "green", "GET", "/", 200, r.request_time * 3) for r in steady]
    assert window_judge.typical_p95(slow) == pytest.approx(57.0)
    assert window_judge.typical_p95(steady[:5]) == pytest.approx(14.0)  # too few for an interval: the p95 of all


def test_what_the_proxy_counted_but_did_not_log_is_added_and_polls_are_not() -> None:
    logged = TrafficSample(requests=100, errors=1, p50_ms=5.0, p95_ms=9.0)
    # The counters include the monitor's 10 polls (2 failed): nothing beyond them is missing from the log.
    assert window_judge.reconciled(logged, ProxyCount(110, 3), polls=10, failed_polls=2) == (logged, 0)
    # 40 requests and 6 5xx the log lacks (dropped lines): judged with them, the latency stays the log's.
    sample, unlogged = window_judge.reconciled(logged, ProxyCount(150, 9), polls=10, failed_polls=2)
    assert (sample.requests, sample.errors, sample.p95_ms, unlogged) == (140, 7, 9.0, 6)
    # Counted from after the window began, the counters may have fewer: they never take a logged 5xx away.
    assert window_judge.reconciled(logged, ProxyCount(50, 0), polls=10, failed_polls=0) == (logged, 0)
    assert window_judge.reconciled(logged, None, polls=10, failed_polls=0) == (logged, 0)
    assert ProxyCount(150, 9, 4).since(ProxyCount(100, 2, 1)) == ProxyCount(50, 7, 3)
    assert ProxyCount(10, 0).since(ProxyCount(100, 2)) is None, "a restarted proxy's counters give no delta"


def test_5xx_the_proxy_counted_but_never_logged_fail_the_window() -> None:
    counted = iter(ProxyCount(n * 10, n * 3, n) for n in range(1000))  # 3 unlogged 5xx more at every look
    sources = monitor.Sources(
        records=lambda since: [],
        health=lambda: HealthSample("u", 200, 1.0, None),
        app_errors=lambda color, since, until: [],
        counts=lambda color: next(counted),
    )
    started = time.time()
    state = monitor.watch(sources, monitor.WindowPlan("green", "blue", started, 60, 60, Limits(max_errors=10), interval_s=0.01))
    assert time.time() - started < 5 and state.decision.startswith("rollback: 12 errors on green exceed the limit of 10")
    assert state.unlogged_errors == 12 and state.proxy_counted == ProxyCount(40, 12, 4)
