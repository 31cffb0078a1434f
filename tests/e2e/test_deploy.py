"""Deploys and rollbacks caused for real: each failure path rolls back by itself with traffic served throughout.

Order matters: every failure scenario must leave production on v1 (blue), which the
next one starts from; the successful deploy (and the concurrent one it refuses) comes last.
"""

from __future__ import annotations

import re
import time

import pytest

from deploygate.traffic import TrafficProbe
from tests.e2e.conftest import report_of


def _served_throughout(probe: TrafficProbe, *, allow_5xx: bool = False) -> list[int]:
    """Every request got an answer (no refused connection, no timeout), and without 5xx unless allowed."""
    responses = probe.stop()
    assert len(responses) > 50, f"only {len(responses)} requests were sent"
    unanswered = [r for r in responses if r.status == 0]
    assert not unanswered, f"{len(unanswered)} requests got no answer, e.g. {unanswered[0]}"
    if not allow_5xx:
        errors = [r for r in responses if r.status >= 500]
        assert not errors, f"{len(errors)} requests failed, e.g. {errors[0]}"
    return [r.created_id for r in responses if r.created_id is not None]


def test_broken_migration_on_production_rolls_back(dg, traffic, assert_back_on_v1) -> None:
    # The gate stops this candidate on the copy; skipping it shows what production does when
    # a migration fails there anyway: the plan runs in one transaction, nothing is applied.
    run = dg.run("deploy", "--candidate", "v2-broken-migration", "--skip-predeploy", "--reason", "e2e: cause a migration failure")
    assert run.code == 1, run.output[-3000:]
    assert "migrate FAILED" in run.output and "fails halfway by design" in run.output
    report = report_of(run.output)
    assert report["record"]["outcome"] == "rolled_back"
    # v2-broken-migration renames a table first (the gate we skipped calls that incompatible):
    # a request of the release serving now that waits on the failing plan's lock may get a 500
    # when the plan rolls back. Answered, counted, but not hidden.
    created = _served_throughout(traffic, allow_5xx=True) + report["record"]["traffic_created_ids"]
    assert_back_on_v1(created)


def test_green_that_never_gets_healthy_rolls_back(dg, traffic, assert_back_on_v1) -> None:
    run = dg.run("deploy", "--candidate", "v2-unhealthy")
    assert run.code == 1, run.output[-3000:]
    assert "green_healthy FAILED" in run.output
    report = report_of(run.output)
    created = _served_throughout(traffic) + report["record"]["traffic_created_ids"]
    assert_back_on_v1(created)


def test_error_burst_after_the_switch_rolls_back(dg, traffic, assert_back_on_v1) -> None:
    # The release answers 500 on half its requests 20 s after it starts: the window must cover that.
    # Its 500s are logged by django.request, a signature blue never showed: the window ends on that signature or on
    # the 5xx count, whichever it reads first (both within a second or two of the burst), and the report lists both.
    run = dg.run("deploy", "--candidate", "v2-error-burst", monitor_window_s="40")
    assert run.code == 1, run.output[-3000:]
    assert "monitor FAILED" in run.output, run.output[-3000:]
    report = report_of(run.output)
    monitoring = report["record"]["monitoring"]
    assert monitoring["errors_by_color"].get("green", 0) >= 1
    assert monitoring["proxy_counted"]["errors"] >= 1, monitoring["proxy_counted"]  # the proxy's counters saw them too
    new = [s["signature"] for s in monitoring["signatures"] if s["new"]]
    assert new and all(s.startswith("django.request at Internal Server Error: /") for s in new), new
    rollback = report["record"]["rollback"]
    print(f"error burst: rollback trigger -> traffic on blue {rollback['traffic_on_previous_ts'] - rollback['trigger_ts']:.2f}s")
    # Users did see the burst's 500s (that is what triggered the rollback), but never a refused connection.
    created = _served_throughout(traffic, allow_5xx=True) + report["record"]["traffic_created_ids"]
    assert_back_on_v1(created)


def test_hidden_errors_answered_200_roll_back_on_their_new_error_signature(dg, traffic, assert_back_on_v1) -> None:
    # Every request to the links page raises KeyError, logged, answered 200: no 5xx anywhere, only the app's log knows.
    run = dg.run("deploy", "--candidate", "v2-hidden-errors")
    assert run.code == 1, run.output[-3000:]
    assert "monitor FAILED" in run.output and "new error signature" in run.output
    monitoring = report_of(run.output)["record"]["monitoring"]
    assert monitoring["verdict"] == "fail" and monitoring["errors_by_color"].get("green", 0) == 0
    new = [s for s in monitoring["signatures"] if s["new"]]
    assert [s["signature"] for s in new] == ["KeyError at /app/unified_db/views.py in _members_on_page"], monitoring["signatures"]
    assert new[0]["counts"]["green"] >= 1 and "blue" not in new[0]["counts"]
    assert "Traceback (most recent call last):" in new[0]["sample"] and "KeyError: 'membre'" in new[0]["sample"]
    print(f"v2-hidden-errors: {monitoring['decision']}")
    report = report_of(run.output)
    assert_back_on_v1(_served_throughout(traffic) + report["record"]["traffic_created_ids"])


def test_a_slow_release_rolls_back_on_its_p95_against_the_baseline(dg, traffic, assert_back_on_v1) -> None:
    run = dg.run("deploy", "--candidate", "v2-slow")
    assert run.code == 1, run.output[-3000:]
    assert "monitor FAILED" in run.output and "p95" in run.output
    report = report_of(run.output)
    monitoring = report["record"]["monitoring"]
    baseline, new = monitoring["baseline"], monitoring["new"]
    assert monitoring["verdict"] == "fail" and new["errors"] == 0 and new["p95_ms"] > 2 * baseline["p95_ms"], monitoring
    assert {p["color"] for p in monitoring["series"]} == {"blue", "green"}
    print(f"v2-slow: baseline p95 {baseline['p95_ms']:.0f} ms, green p95 {new['p95_ms']:.0f} ms: {monitoring['decision']}")
    assert_back_on_v1(_served_throughout(traffic) + report["record"]["traffic_created_ids"])


def test_failing_post_check_rolls_back(dg, traffic, assert_back_on_v1) -> None:
    # A p95 budget of 0 ms cannot be met: the post checks on green fail for real.
    run = dg.run("deploy", "--candidate", "v2-safe", post_p95_ms="0")
    assert run.code == 1, run.output[-3000:]
    assert "post_green FAILED" in run.output
    report = report_of(run.output)
    created = _served_throughout(traffic) + report["record"]["traffic_created_ids"]
    assert_back_on_v1(created)


def test_a_failing_app_check_rolls_back_with_its_own_message(dg, traffic, assert_back_on_v1) -> None:
    # The predeploy gate would refuse it on the copy (same check); skipped here so the check meets production.
    run = dg.run("deploy", "--candidate", "v2-drops-member", "--skip-predeploy", "--reason", "e2e: the app check must catch it")
    assert run.code == 1, run.output[-3000:]
    assert "post_green FAILED" in run.output
    assert "test_app_check[test_seed.py::test_the_api_keeps_the_member_of_a_link_it_creates]" in run.output
    assert "the API dropped the member of the link it created" in run.output
    report = report_of(run.output)
    failed = [g for g in report["record"]["gates"] if g["verdict"] == "failed"]
    assert [g["name"] for g in failed] == ["test_app_check[test_seed.py::test_the_api_keeps_the_member_of_a_link_it_creates]"]
    created = _served_throughout(traffic) + report["record"]["traffic_created_ids"]
    assert_back_on_v1(created)


def test_the_new_color_vanishing_after_migrate_rolls_back(dg, traffic, assert_back_on_v1, platform) -> None:
    # The engine, not a gate, fails the next step: green's container is gone (removed behind the deploy's back).
    run = dg.act_after(
        "   migrate ok",
        lambda: platform.client.containers.get(platform.color_name("green")).remove(force=True),
        "deploy",
        "--candidate",
        "v2-safe",
    )
    assert run.code == 1, run.output[-3000:]
    # Whichever step meets the vanished container first (green may have been healthy already) fails it.
    assert ("green_healthy FAILED" in run.output or "post_green FAILED" in run.output) and "rolling back" in run.output
    report = report_of(run.output)
    assert report["record"]["outcome"] == "rolled_back"
    created = _served_throughout(traffic) + report["record"]["traffic_created_ids"]
    assert_back_on_v1(created)


def test_proxy_killed_in_the_monitoring_window_converges(dg, traffic, assert_back_on_v1, platform) -> None:
    # `docker kill` is a manual stop: no restart policy brings it back. The monitor sees health fail,
    # the rollback finds the proxy stopped and starts it again, routing as its state on disk says.
    killed = {}

    def kill_proxy() -> None:
        killed["at"] = time.time()
        platform.client.containers.get(platform.proxy_name).kill()

    run = dg.act_after("== monitor", kill_proxy, "deploy", "--candidate", "v2-safe")
    assert run.code == 1, run.output[-3000:]
    assert "monitor FAILED" in run.output and "health check failed" in run.output
    report = report_of(run.output)
    assert report["record"]["outcome"] == "rolled_back"
    responses = traffic.stop()
    # Back: the rollback started the proxy again and routed it to blue. In the outage: what was
    # sent, or still waiting for its answer, after the kill and before that.
    back = report["record"]["rollback"]["traffic_on_previous_ts"]

    def in_outage(r) -> bool:
        return r.ts + r.latency_ms / 1000 >= killed["at"] and r.ts < back

    gap = [r for r in responses if in_outage(r)]
    assert not [r for r in responses if r.failed and not in_outage(r)], "a request failed outside the outage"
    assert all(r.status == 0 for r in gap if r.failed), "the outage's failures are the dead proxy's refusals, never a 5xx"
    after = [r for r in responses if r.ts >= back]
    assert after and not [r for r in after if r.failed], f"a request failed after the proxy was back: {[r for r in after if r.failed][:1]}"
    print(
        f"proxy killed: {sum(r.failed for r in gap)} of {len(gap)} requests unanswered during {back - killed['at']:.1f}s until the rollback restarted it; "
        f"{len(after)} served after it was back, 0 failed"
    )
    assert_back_on_v1([r.created_id for r in responses if r.created_id is not None] + report["record"]["traffic_created_ids"])


@pytest.mark.parametrize(
    "marker",
    ["   green ok", "   migrate ok", "   switch ok"],
    ids=["after-green-started", "after-migrate", "after-switch"],
)
def test_sigkill_leaves_traffic_served_and_rollback_converges(dg, traffic, assert_back_on_v1, marker) -> None:
    dg.kill_after(marker, "deploy", "--candidate", "v2-safe")
    time.sleep(2)  # production runs on, unattended
    run = dg.run("rollback")
    assert run.code == 0, run.output[-3000:]
    assert "rolling back the unfinished deploy" in run.output
    created = _served_throughout(traffic)
    assert_back_on_v1(created)
    # A second rollback finds nothing unfinished and says so, changing nothing.
    again = dg.run("rollback")
    assert again.code == 2 and "nothing to roll back" in again.output


def test_accepted_incompatibility_deploys_behind_a_maintenance_hold(dg, traffic, assert_back_on_v1) -> None:
    refused = dg.run("deploy", "--candidate", "v2")
    # Refused before production is touched: exit status 2, the failing check named.
    assert refused.code == 2 and "predeploy failed: test_production_release_works_on_the_new_schema" in refused.output
    run = dg.run("deploy", "--candidate", "v2", "--accept-incompatible", "--reason", "e2e: a maintenance hold is acceptable")
    assert run.code == 0, run.output[-3000:]
    report = report_of(run.output)
    held = sum(p["colors"].get("hold", 0) for p in report["traffic"]["phases"] if p["name"] != "total")
    assert held > 0, "the report counts no maintenance-hold responses"
    # The deploy's own probe counts the hold's answers as held, not failed (in its line and its report).
    assert re.search(r"traffic probe: \d+ requests, 0 failed, [1-9]\d* held", run.output), run.output[-3000:]
    assert report["traffic"]["summary"]["held"] > 0 and report["traffic"]["summary"]["failed"] == 0
    responses = traffic.responses()
    hold_answers = [r for r in responses if r.color == "hold"]
    assert hold_answers and all(r.status == 503 for r in hold_answers)
    print(f"maintenance hold: {len(hold_answers)} requests answered 503 + Retry-After by the proxy")
    # Rolling back an incompatible release holds traffic again while the schema goes back.
    back = dg.run("rollback")
    assert back.code == 0, back.output[-3000:]
    # Within the forward-fix limit and without --force: a rollback on request, not a forced one.
    assert "rollback on request, " in back.output and "forced rollback" not in back.output, back.output[-3000:]
    responses = traffic.stop()
    assert not [r for r in responses if r.status == 0], "a request got no answer"
    assert not [r for r in responses if r.status >= 500 and r.color != "hold"], "a release answered 5xx"
    assert_back_on_v1([r.created_id for r in responses if r.created_id is not None])


def test_dry_run_changes_nothing(dg) -> None:
    run = dg.run("deploy", "--candidate", "v2-safe", "--dry-run")
    assert run.code == 0, run.output[-3000:]
    project = dg.overrides["project"]
    assert f"start {project}_web_green from bmparliament:v2-safe" in run.output
    assert f"switch {project}_proxy from blue (v1) to green" in run.output
    assert "unchanged" in run.output and "dry_run: production untouched" in run.output


def test_v2_safe_deploys_with_zero_failed_requests_and_a_second_deploy_is_refused(dg, traffic, proxy) -> None:
    refused = []
    first = dg.act_after(
        "lock held", lambda: refused.append(dg.run("deploy", "--candidate", "v2-safe")), "deploy", "--candidate", "v2-safe"
    )
    second = refused[0]
    assert second.code == 2 and "another deploy or rollback is running" in second.output, second.output[-2000:]
    text = first.output
    assert first.code == 0, text[-3000:]
    assert "DEPLOYMENT SUCCESSFUL" in text
    report = report_of(text)
    live = proxy.current()
    assert (live.color, live.release) == ("green", "v2-safe")
    responses = traffic.responses()
    _served_throughout(traffic)
    monitoring = report["record"]["monitoring"]
    assert monitoring["verdict"] == "pass" and not [s for s in monitoring["signatures"] if s["new"]], monitoring
    assert monitoring["baseline"]["requests"] >= 100 and monitoring["new"]["requests"] >= 100
    # HAProxy's own counters agree with its log: every request the log judged, plus the monitor's polls, none lost.
    counted = monitoring["proxy_counted"]
    assert counted["unlogged_errors"] == 0 and counted["errors"] == 0 and counted["dropped_logs"] == 0, counted
    assert counted["requests"] >= monitoring["new"]["requests"] * 0.9, (counted, monitoring["new"])
    print(f"v2-safe window: {monitoring['reason']}; HAProxy counted {counted['requests']} requests on green")
    summary = report["traffic"]["summary"]
    print(
        f"v2-safe deploy: the test's probe sent {len(responses)} requests, 0 failed; the deploy's own probe "
        f"{summary['requests']} requests, {summary['failed']} failed, p95 {summary['p95_ms']} ms"
    )


def test_forced_rollback_respects_the_forward_fix_threshold(dg, traffic, assert_back_on_v1) -> None:
    # Production is v2-safe on green (the test before). Past the threshold a rollback needs --force.
    refused = dg.run("rollback", forward_fix_after_min="0")
    assert refused.code == 2 and "past the forward-fix threshold" in refused.output, refused.output[-2000:]
    forced = dg.run("rollback", "--force", forward_fix_after_min="0")
    assert forced.code == 0, forced.output[-3000:]
    created = _served_throughout(traffic)
    assert_back_on_v1(created)


def test_no_secret_in_logs_reports_or_ledger(e2e_stack) -> None:
    from deploygate.database import db_password

    secret = db_password(e2e_stack)
    places = [e2e_stack.path(e2e_stack.logs_dir), e2e_stack.path(e2e_stack.reports_dir)]
    files = [f for place in places for f in place.rglob("*") if f.is_file()]
    assert len(files) > 10, "expected the deploys' logs and reports"
    leaking = [f for f in files if secret.encode() in f.read_bytes()]
    assert not leaking, f"the database password appears in {leaking}"
