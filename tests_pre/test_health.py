"""Production health, the seed's baseline: healthy, few errors, fast, a sane connection count.

A 2xx from the health URL is healthy; errors and connections come from its JSON body
when the app reports them, and a check whose detail is not reported says so.
"""

from __future__ import annotations

import pytest

from deploygate.policy import percentile

pytestmark = pytest.mark.health


def test_production_reports_healthy(health_samples, health_url, gate_measure) -> None:
    bad = [s for s in health_samples if not s.ok]
    gate_measure(f"{len(health_samples) - len(bad)}/{len(health_samples)} healthy", "all samples 2xx and healthy")
    assert not bad, f"{len(bad)}/{len(health_samples)} samples of {health_url} not healthy, e.g. {bad[0].describe()} {bad[0].detail}"


def test_error_count_within_limit(health_samples, settings, gate_measure, not_reported) -> None:
    reported = [s.errors for s in health_samples if s.errors is not None]
    if not reported:
        not_reported("the health URL reports no error count")
    errors = max(reported)
    gate_measure(errors, f"<= {settings.health_max_errors}")
    assert errors <= settings.health_max_errors, f"production reports {errors} errors (limit {settings.health_max_errors})"


def test_response_time_p95_under_budget(health_samples, settings, gate_measure) -> None:
    p95 = percentile([s.elapsed_ms for s in health_samples], 95)
    gate_measure(f"{p95:.1f} ms", f"< {settings.health_p95_ms} ms")
    print(f"health p95 {p95:.1f} ms over {len(health_samples)} samples (budget {settings.health_p95_ms} ms)")
    assert p95 < settings.health_p95_ms, f"p95 response time {p95:.0f} ms >= budget {settings.health_p95_ms} ms"


def test_db_connections_in_range(health_samples, settings, gate_measure, not_reported) -> None:
    connections = [s.connections for s in health_samples if s.connections is not None]
    if not connections:
        not_reported("the health URL reports no database connection count")
    low, high = settings.db_connections_min, settings.db_connections_max
    gate_measure(f"{min(connections)}..{max(connections)}", f"{low}..{high}")
    assert all(low <= c <= high for c in connections), f"database connections {min(connections)}..{max(connections)} outside {low}..{high}"
