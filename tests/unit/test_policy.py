"""Deploy-window, error-rate and percentile rules (pure logic)."""

from __future__ import annotations

import datetime as dt

import pytest

from deploygate import policy
from deploygate.errors import ConfigError
from deploygate.proxy import AccessRecord

UTC = dt.UTC


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        ("2026-11-23T18:00:00", True),  # 02:00 Manila (UTC+8): first minute of the window
        ("2026-11-23T19:59:00", True),  # 03:59 Manila
        ("2026-11-23T20:00:00", False),  # 04:00 Manila: the window is closed at its end
        ("2026-11-23T17:59:00", False),  # 01:59 Manila
        ("2026-11-23T02:00:00", False),  # 10:00 Manila, 02:00 UTC: the zone matters
    ],
)
def test_seed_window_in_manila(utc: str, expected: bool) -> None:
    now = dt.datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert policy.in_window(now, "02:00-04:00", "Asia/Manila") is expected


def test_window_wrapping_midnight_and_whole_day() -> None:
    late = dt.datetime(2026, 1, 1, 23, 30, tzinfo=UTC)
    early = dt.datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    noon = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert policy.in_window(late, "23:00-01:00", "UTC") and policy.in_window(early, "23:00-01:00", "UTC")
    assert not policy.in_window(noon, "23:00-01:00", "UTC")
    assert all(policy.in_window(t, "00:00-24:00", "UTC") for t in (late, early, noon))


def test_bad_window_and_zone_are_config_errors() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="HH:MM-HH:MM"):
        policy.in_window(now, "2am-4am", "UTC")
    with pytest.raises(ConfigError, match="unknown time zone"):
        policy.in_window(now, "02:00-04:00", "Mars/Olympus")


def test_error_rate_counts_only_5xx() -> None:
    def rec(status: int) -> AccessRecord:
        return AccessRecord(ts=0, color="blue", method="GET", uri="/", status=status, request_time=0.0)

    rate = policy.error_rate([rec(200), rec(404), rec(500), rec(503)])
    assert (rate.requests, rate.errors, rate.percent) == (4, 2, 50.0)
    held = AccessRecord(ts=0, color="hold", method="GET", uri="/", status=503, request_time=0.0)
    assert policy.error_rate([rec(200), held]).errors == 0
    assert policy.error_rate([]).percent == 0.0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert policy.percentile(values, 95) == 19.0
    assert policy.percentile(values, 100) == 20.0
    assert policy.percentile([7.0], 95) == 7.0
