"""Production health, the seed's baseline: healthy, few errors, fast, a sane connection count."""

from __future__ import annotations

from deploygate.policy import percentile


def test_production_reports_healthy(health_samples, health_url) -> None:
    bad = [s for s in health_samples if s.status_code != 200 or not s.body or s.body.get("status") != "healthy"]
    assert not bad, f"{len(bad)}/{len(health_samples)} samples of {health_url} not healthy, e.g. HTTP {bad[0].status_code} {bad[0].body}"


def test_error_count_within_limit(health_samples, settings) -> None:
    errors = max(int((s.body or {}).get("errors", 0)) for s in health_samples)
    assert errors <= settings.health_max_errors, f"production reports {errors} errors (limit {settings.health_max_errors})"


def test_response_time_p95_under_budget(health_samples, settings) -> None:
    p95 = percentile([s.elapsed_ms for s in health_samples], 95)
    print(f"health p95 {p95:.1f} ms over {len(health_samples)} samples (budget {settings.health_p95_ms} ms)")
    assert p95 < settings.health_p95_ms, f"p95 response time {p95:.0f} ms >= budget {settings.health_p95_ms} ms"


def test_db_connections_in_range(health_samples, settings) -> None:
    connections = [int(((s.body or {}).get("database") or {}).get("connections", -1)) for s in health_samples]
    low, high = settings.db_connections_min, settings.db_connections_max
    assert all(low <= c <= high for c in connections), f"database connections {min(connections)}..{max(connections)} outside {low}..{high}"
