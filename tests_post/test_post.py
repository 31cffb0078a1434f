"""After the migration: the plan is applied, the ORM works on the new names, the new colour is healthy and error-free."""

from __future__ import annotations

import time

import requests

from deploygate import stack
from deploygate.policy import percentile
from deploygate.migrations import parse_expected_plan
from deploygate.proxy import read_access_log


def test_plan_is_applied(production_probe, settings) -> None:
    state = production_probe("plan")
    assert not state["plan"], f"unapplied migrations: {[s['app'] + '.' + s['name'] for s in state['plan']]}"
    missing = [label for label in parse_expected_plan(settings.expected_plan) if label not in state["applied"]]
    assert not missing, f"expected migrations not applied: {missing}"


def test_orm_reads_and_writes_on_the_new_names(production_probe) -> None:
    models = production_probe("exercise", {"state": "current"})["models"]
    failures = [f"{m['model']}: {c['op']} {c.get('field', '')}: {c['error']}" for m in models for c in m["checks"] if not c["ok"]]
    assert models and not failures, "; ".join(failures[:5])


def test_new_colour_is_healthy(target, settings) -> None:
    response = requests.get(f"{target.url}/health/detailed/", timeout=10)
    assert response.status_code == 200, f"{target.url}/health/detailed/ answered {response.status_code}"
    assert response.json().get("status") == "healthy"
    if target.via_proxy:
        assert response.headers.get("X-Deploygate-Color") == target.color, "the proxy does not route to the new colour"


def test_error_rate_of_new_colour(target, settings, pytestconfig) -> None:
    if target.via_proxy:
        since = pytestconfig.getoption("--since") or 0.0
        records = [r for r in read_access_log(stack.proxy_paths(settings).access_log, since=since) if r.color == target.color]
        errors = sum(r.status >= 500 for r in records)
        print(f"{target.color}: {errors} errors in {len(records)} requests since the switch")
        assert errors <= settings.monitor_max_errors, f"{errors} errors on {target.color} since the switch (limit {settings.monitor_max_errors})"
    else:
        errors = int(requests.get(f"{target.url}/health/detailed/", timeout=10).json().get("errors", 0))
        assert errors <= settings.health_max_errors, f"{target.color} reports {errors} errors (limit {settings.health_max_errors})"


def test_new_colour_responds_within_budget(target, settings) -> None:
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        requests.get(f"{target.url}{settings.health_path}", timeout=10)
        latencies.append((time.perf_counter() - started) * 1000)
    p95 = percentile(latencies, 95)
    assert p95 <= settings.post_p95_ms, f"p95 {p95:.0f} ms on {target.color} > budget {settings.post_p95_ms} ms"
