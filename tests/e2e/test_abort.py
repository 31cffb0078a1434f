"""Emergency stop: a signal, or an abort asked for from another process, rolls the deploy back at once.

Each test leaves production on v1 (blue), as the deploy tests after it expect.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest


def _run_and_signal(dg, marker: str, signals: list[tuple[str, int]], *args: str) -> tuple[int, str, float]:
    """Start a deploy; when ``marker`` shows, send the first signal; each later one when its own marker shows.

    Returns the exit code, the output and when the first signal was sent.
    """
    process = dg.start("deploy", *args)
    seen, sent_at = [], None
    pending = [(marker, signals[0][1]), *signals[1:]]
    for line in process.stdout:
        seen.append(line)
        if pending and pending[0][0] in line:
            process.send_signal(pending.pop(0)[1])
            sent_at = sent_at or time.time()
    process.wait(timeout=600)
    return process.returncode, "".join(seen), sent_at


def _report_of(output: str) -> dict:
    line = next(l for l in reversed(output.splitlines()) if "report: " in l)
    return json.loads(Path(line.split("report: ", 1)[1].strip()).with_suffix(".json").read_text())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_the_monitoring_window_rolls_back_at_once(dg, traffic, assert_back_on_v1, signum) -> None:
    code, output, sent_at = _run_and_signal(dg, "== monitor", [("", signum)], "--candidate", "v2-safe")
    assert code == 130, output[-3000:]
    name = signal.Signals(signum).name
    assert f"aborted by {name} during monitor; rolled back" in output
    report = _report_of(output)
    assert report["record"]["outcome"] == "aborted"
    rollback = report["record"]["rollback"]
    print(f"{name} in the monitoring window: traffic back on blue {rollback['traffic_on_previous_ts'] - sent_at:.2f}s after the signal")
    responses = traffic.stop()
    assert not [r for r in responses if r.failed], "a request failed during the abort"
    assert_back_on_v1([r.created_id for r in responses if r.created_id] + report["record"]["traffic_created_ids"])


def test_a_second_signal_does_not_stop_the_rollback_half_way(dg, traffic, assert_back_on_v1) -> None:
    code, output, _ = _run_and_signal(
        dg, "   migrate ok", [("", signal.SIGTERM), ("!! rolling back", signal.SIGTERM)], "--candidate", "v2-safe"
    )
    assert code == 130, output[-3000:]
    assert "received during the rollback: it finishes first" in output
    assert "rollback_record ok" in output
    responses = traffic.stop()
    assert not [r for r in responses if r.failed]
    assert_back_on_v1([r.created_id for r in responses if r.created_id] + _report_of(output)["record"]["traffic_created_ids"])


def test_abort_from_another_process_rolls_the_deploy_back(dg, traffic, assert_back_on_v1) -> None:
    deploy = dg.start("deploy", "--candidate", "v2-safe")
    seen = []
    for line in deploy.stdout:
        seen.append(line)
        if "== monitor" in line:
            break
    asked = dg.run("abort", "--reason", "e2e: stop it from elsewhere")
    seen.append(deploy.stdout.read())
    deploy.wait(timeout=600)
    output = "".join(seen)
    assert asked.code == 0 and "the deploy has stopped: rolled_back" in asked.output, asked.output[-2000:]
    assert deploy.returncode == 130 and "abort requested by" in output, output[-3000:]
    responses = traffic.stop()
    assert not [r for r in responses if r.failed]
    assert_back_on_v1([r.created_id for r in responses if r.created_id] + _report_of(output)["record"]["traffic_created_ids"])
    # Nothing runs now: a second abort says so and changes nothing.
    again = dg.run("abort")
    assert again.code == 2 and "nothing to abort" in again.output


def test_a_bad_command_after_an_interrupted_deploy_changes_nothing(dg, assert_back_on_v1) -> None:
    dg.kill_after("== monitor", "deploy", "--candidate", "v2-safe")
    refused = dg.run("deploy", "--candidate", "nope")
    assert refused.code == 2 and "candidate 'nope'" in refused.output, refused.output[-2000:]
    assert "rolling it back" not in refused.output
    converged = dg.run("rollback")
    assert converged.code == 0 and "rolling back the unfinished deploy" in converged.output
    assert_back_on_v1([])


