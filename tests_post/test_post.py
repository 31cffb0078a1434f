"""After the migration: the plan is applied, the ORM works on the new names, the new color is healthy and error-free."""

from __future__ import annotations

import time

import pytest
import requests

from deploygate import differential, health
from deploygate.migrations import parse_expected_plan
from deploygate.policy import percentile
from deploygate.proxy import COLOR_HEADER

pytestmark = pytest.mark.post


def test_plan_is_applied(production_probe, settings, gate_measure) -> None:
    state = production_probe.plan()
    missing = [label for label in parse_expected_plan(settings.expected_plan) if label not in state.applied]
    # Names a squash replaces, or of apps no longer installed, are shown, never counted as a mismatch.
    history = f"; {state.outside.explained()}" if state.outside.replaced_by_squash or state.outside.of_removed_apps else ""
    gate_measure(f"{len(state.steps)} pending, {len(missing)} expected missing{history}", "0 pending")
    assert not state.steps, f"unapplied migrations: {state.labels}"
    assert not missing, f"expected migrations not applied: {missing}"


def test_orm_reads_and_writes_on_the_new_names(production_probe, plan_scope, gate_measure, gate_results) -> None:
    # Why classification and not a comparison: by now the rehearsal copy (where the same release ran the
    # same seeded operations) is gone, and production's schema is the release's own. On its own schema an
    # operation fails either because the schema lacks what the model names (an undefined column or table,
    # a type mismatch, a NOT NULL or length the model does not declare): what this check exists to catch,
    # after a migration on production's real state; or because the app's own code cannot work with the
    # probe's rows (save() needing related rows, signals, settings): a coverage gap, which the rehearsal
    # already judged differentially on a copy of the same data.
    models = production_probe.exercise("current", scope=plan_scope)
    judged = differential.on_own_schema(models)
    gate_measure(f"{len(judged.failed)} failed ORM operations on {len(models)} models, {len(judged.gaps)} not exercisable", "0 failed")
    for line in judged.gaps:
        print(line)
    if judged.gaps:
        gate_results.notes.append(f"orm on the new names: {len(judged.gaps)} operations not exercisable: " + "; ".join(judged.gaps))
    # Scoped to what the plan changed there may be nothing to exercise; over every model there must be something.
    assert models or plan_scope is not None, "no model was exercised"
    assert not judged.failed, "; ".join(judged.failed[:5])


def test_new_color_is_healthy(target, settings, gate_measure) -> None:
    # Every replica of the color (several on a cluster), or every proxy in front of it.
    samples = [health.sample(f"{url}{settings.health_path}", timeout=10) for url in target.urls]
    bad = [sample for sample in samples if not sample.ok]
    gate_measure(
        samples[0].describe() if len(samples) == 1 else f"{len(samples) - len(bad)}/{len(samples)} 2xx and healthy", "2xx, healthy"
    )
    assert not bad, f"{bad[0].url} answered {bad[0].describe()} {bad[0].detail or ''}"
    if target.via_proxy:
        for url in target.urls:
            served_by = requests.get(f"{url}{settings.health_path}", timeout=10).headers.get(COLOR_HEADER)
            assert served_by == target.color, f"the proxy at {url} does not route to the new color"


def test_error_rate_of_new_color(target, settings, pytestconfig, proxy, gate_measure, not_reported) -> None:
    if target.via_proxy:
        since = pytestconfig.getoption("--since") or 0.0
        records = [r for r in proxy.records(since=since) if r.color == target.color]
        errors = sum(r.status >= 500 for r in records)
        gate_measure(f"{errors} 5xx in {len(records)} requests", f"<= {settings.monitor_max_errors}")
        print(f"{target.color}: {errors} errors in {len(records)} requests since the switch")
        assert errors <= settings.monitor_max_errors, (
            f"{errors} errors on {target.color} since the switch (limit {settings.monitor_max_errors})"
        )
    else:
        errors = health.sample(f"{target.url}{settings.health_path}", timeout=10).errors
        if errors is None:
            not_reported(f"{target.color}'s health URL reports no error count")
        gate_measure(errors, f"<= {settings.health_max_errors}")
        assert errors <= settings.health_max_errors, f"{target.color} reports {errors} errors (limit {settings.health_max_errors})"


def test_new_color_responds_within_budget(target, settings, gate_measure) -> None:
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        requests.get(f"{target.url}{settings.health_path}", timeout=10)
        latencies.append((time.perf_counter() - started) * 1000)
    p95 = percentile(latencies, 95)
    gate_measure(f"{p95:.1f} ms", f"<= {settings.post_p95_ms} ms")
    assert p95 <= settings.post_p95_ms, f"p95 {p95:.0f} ms on {target.color} > budget {settings.post_p95_ms} ms"
