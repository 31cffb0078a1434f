"""The deploy report's monitoring window section: the verdict and its reason, the new color against the
baseline, the requests per color, and the app's error signatures with a sample of each new one."""

from __future__ import annotations

from deploygate import markdown
from deploygate import report_format as fmt
from deploygate.record import DeployRecord, MonitoringRecord, TrafficRecord

# A sample is shown for this many new signatures; the JSON keeps every one.
SAMPLES_SHOWN = 5


def _traffic_row(label: str, traffic: TrafficRecord | None) -> list:
    if traffic is None:
        return [label, None, None, None, None, None]
    return [label, traffic.requests, traffic.errors, f"{traffic.error_rate_pct:.2f} %", fmt.ms(traffic.p50_ms), fmt.ms(traffic.p95_ms)]


def _against_baseline(monitoring: MonitoringRecord, new_color: str) -> list[str]:
    if monitoring.baseline is None and monitoring.new is None:
        return []
    limits = monitoring.limits
    rows = [
        _traffic_row(f"{monitoring.baseline_color}: baseline, {fmt.seconds(monitoring.baseline_s)} before the switch", monitoring.baseline),
        _traffic_row(f"{new_color}: the window", monitoring.new),
    ]
    out = markdown.table(["", "Requests", "5xx", "5xx rate", "p50", "p95 (typical 5 s)"], rows, fmt.cell) + [""]
    if limits:
        out += [
            f"Limits: at least {limits['min_requests']:g} requests on each side; 5xx rate at most the baseline's "
            f"+ {limits['error_rate_margin_pct']:g} points and {limits['max_error_rate_pct']:g} %; more than "
            f"{limits['max_errors']:g} 5xx fail at once; p95 at most the baseline's × {limits['p95_factor']:g} "
            f"(or + {limits['p95_slack_ms']:g} ms) and {limits['max_p95_ms']:g} ms; "
            f"at most {limits['max_new_signatures']:g} new error signatures. "
            "Requests from the proxy's access log, the monitor's own health polls left out.",
            "",
        ]
    return out


def _proxy_counters(monitoring: MonitoringRecord, new_color: str) -> list[str]:
    counted = monitoring.proxy_counted
    if not counted:
        return ["HAProxy's own counters could not be read for the whole window: the access log alone was judged.", ""]
    unlogged = counted.get("unlogged_errors", 0)
    verdict = (
        f"{unlogged} 5xx are missing from the access log ({counted.get('dropped_logs', 0)} lines dropped) and were judged all the same"
        if unlogged
        else "the access log lacks none of its 5xx"
    )
    return [
        f"HAProxy's own counters (runtime API) for {new_color} over the window: {counted.get('requests', 0):,} requests, "
        f"{counted.get('errors', 0):,} 5xx, the monitor's health polls included; {verdict}.",
        "",
    ]


def _signatures(monitoring: MonitoringRecord, new_color: str) -> list[str]:
    out = ["### Error signatures", ""]
    if not monitoring.signatures:
        return out + ["The app's output showed no error (tracebacks, django.request errors) on either color.", ""]
    colors = [monitoring.baseline_color, new_color]
    rows = [[fmt.code(s.signature), *(s.counts.get(c, 0) for c in colors), "new" if s.new else ""] for s in monitoring.signatures]
    out += markdown.table(["Signature", f"{colors[0]} (baseline)", f"{colors[1]} (window)", ""], rows, fmt.cell) + [""]
    for signature in [s for s in monitoring.signatures if s.new][:SAMPLES_SHOWN]:
        fence = markdown.fence(signature.sample)
        out += [f"Sample of `{fmt.cell(signature.signature)}` (secrets redacted):", "", fence, signature.sample, fence, ""]
    return out


def monitoring_section(record: DeployRecord) -> list[str]:
    """The "Monitoring window" section of the markdown report."""
    out = ["## Monitoring window", ""]
    monitoring = record.monitoring
    if not monitoring:
        return out + ["No monitoring window recorded.", ""]
    new_color = record.new_color or "new"
    verdict = f"**{monitoring.verdict}**: {monitoring.reason}" if monitoring.verdict else ""
    extended = f" (extended by {fmt.seconds(monitoring.extended_s)}: too few requests)" if monitoring.extended_s else ""
    out += [
        f"{fmt.seconds(monitoring.window_s)} watched{extended}; health failures: {monitoring.health_failures}; "
        f"decision: {monitoring.decision}.",
        "",
    ]
    if verdict:
        out += [f"Verdict {verdict}", ""]
    out += _against_baseline(monitoring, new_color)
    colors = sorted(set(monitoring.requests_by_color) | set(monitoring.errors_by_color))
    rows = [[c, monitoring.requests_by_color.get(c, 0), monitoring.errors_by_color.get(c, 0)] for c in colors]
    out += markdown.table(["Color", "Requests since the switch (proxy log)", "5xx"], rows, fmt.cell) + [""]
    out += _proxy_counters(monitoring, new_color)
    if monitoring.verdict:
        out += _signatures(monitoring, new_color)
    return out


def replica_lag_section(record: DeployRecord) -> list[str]:
    """The "Replica lag" section: per stage of the deploy, how far behind the primary each replica was at most."""
    if not record.replica_lag:
        return []
    names = list(dict.fromkeys(s.name for s in record.replica_lag))
    rows = []
    for stage, start, end in fmt.stage_phases(record):
        during = [s for s in record.replica_lag if start <= s.ts < end]
        if not during:
            continue
        rows.append([stage, *(_worst_lag([s for s in during if s.name == name]) for name in names)])
    out = ["## Replica lag", ""]
    out += [
        f"Sampled every second from the window's opening: bytes behind the primary's position (and the primary's "
        f"replay_lag) at most, per stage; {len(record.replica_lag):,} samples. Lag after the switch is watched and "
        "said, not a reason to roll back: the previous release would read from the same replicas.",
        "",
    ]
    return out + markdown.table(["Stage", *names], rows, fmt.cell) + [""]


def _worst_lag(samples: list) -> str:
    if not samples:
        return "-"
    answered = [s.behind_bytes for s in samples if s.behind_bytes is not None]
    seconds = [s.lag_s for s in samples if s.lag_s is not None]
    unanswered = len(samples) - len(answered)
    text = f"{max(answered):,} B" if answered else "unanswered"
    if seconds:
        text += f", {max(seconds):.2f}s"
    if answered and unanswered:
        text += f" ({unanswered} unanswered)"
    return text
