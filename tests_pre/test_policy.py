"""Deploy policy: the window, time since the last deploy, the recent error rate. Each can be overridden, recorded."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from deploygate import ledger, policy

pytestmark = pytest.mark.policy


def test_inside_deploy_window(settings, now, policy_gate, gate_measure) -> None:
    ok = policy.in_window(now, settings.deploy_window, settings.deploy_timezone)
    local = now.astimezone(ZoneInfo(settings.deploy_timezone)).strftime("%H:%M")
    gate_measure(f"{local} {settings.deploy_timezone}", settings.deploy_window)
    policy_gate("deploy_window", ok, f"{local} {settings.deploy_timezone} is outside the deploy window {settings.deploy_window}")


def test_no_deploy_in_recent_hours(production_db, settings, now, policy_gate, gate_measure) -> None:
    last = ledger.last_deploy(production_db)
    if last is None:
        gate_measure("no deploy yet", f">= {settings.min_hours_between_deploys} h")
        print("no deploy in the ledger yet")
        return
    hours = policy.hours_since(last.at, now)
    gate_measure(f"{hours:.1f} h", f">= {settings.min_hours_between_deploys} h")
    policy_gate(
        "recent_deploy",
        hours >= settings.min_hours_between_deploys,
        f"last deploy ({last.release}) was {hours:.1f} h ago, less than {settings.min_hours_between_deploys} h",
    )


def test_error_rate_under_limit(settings, now, policy_gate, health_samples, gate_results, proxy, gate_measure) -> None:
    since = now.timestamp() - settings.error_window_hours * 3600
    if any(log.exists() for log in proxy.access_logs):
        rate = policy.error_rate(proxy.records(since=since))
        source = f"proxy access log, last {settings.error_window_hours} h: {rate.errors}/{rate.requests} requests"
        percent = rate.percent
    else:
        # Without the access log the app's own count is all there is; say so in the result.
        errors = health_samples[-1].errors or 0
        percent = 100.0 * errors / max(1, len(health_samples))
        source = "health endpoint (access log unavailable)"
        gate_results.notes.append(f"error rate taken from the health endpoint: no proxy access log under {proxy.base}")
    print(f"error rate {percent:.2f}% from {source}")
    gate_measure(f"{percent:.2f}%", f"< {settings.max_error_rate_pct}%")
    policy_gate(
        "error_rate",
        percent < settings.max_error_rate_pct,
        f"error rate {percent:.1f}% >= {settings.max_error_rate_pct}% ({source})",
    )
