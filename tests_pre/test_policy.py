"""Deploy policy: the window, time since the last deploy, the recent error rate. Each can be overridden, recorded."""

from __future__ import annotations

from deploygate import ledger, policy, stack
from deploygate.proxy import read_access_log


def test_inside_deploy_window(settings, now, policy_gate) -> None:
    ok = policy.in_window(now, settings.deploy_window, settings.deploy_timezone)
    local = now.astimezone(__import__("zoneinfo").ZoneInfo(settings.deploy_timezone)).strftime("%H:%M")
    policy_gate("deploy_window", ok, f"{local} {settings.deploy_timezone} is outside the deploy window {settings.deploy_window}")


def test_no_deploy_in_recent_hours(production_db, settings, now, policy_gate) -> None:
    last = ledger.last_deploy(production_db)
    if last is None:
        print("no deploy in the ledger yet")
        return
    hours = policy.hours_since(last.at, now)
    policy_gate(
        "recent_deploy",
        hours >= settings.min_hours_between_deploys,
        f"last deploy ({last.release}) was {hours:.1f} h ago, less than {settings.min_hours_between_deploys} h",
    )


def test_error_rate_under_limit(settings, now, policy_gate, health_samples, gate_results) -> None:
    log = stack.proxy_paths(settings).access_log
    since = now.timestamp() - settings.error_window_hours * 3600
    if log.exists():
        rate = policy.error_rate(read_access_log(log, since=since))
        source = f"proxy access log, last {settings.error_window_hours} h: {rate.errors}/{rate.requests} requests"
        percent = rate.percent
    else:
        # Without the access log the app's own count is all there is; say so in the result.
        body = health_samples[-1].body or {}
        percent = 100.0 * int(body.get("errors", 0)) / max(1, len(health_samples))
        source = "health endpoint (access log unavailable)"
        gate_results.notes.append(f"error rate taken from the health endpoint: {log} does not exist")
    print(f"error rate {percent:.2f}% from {source}")
    policy_gate(
        "error_rate",
        percent < settings.max_error_rate_pct,
        f"error rate {percent:.1f}% >= {settings.max_error_rate_pct}% ({source})",
    )
