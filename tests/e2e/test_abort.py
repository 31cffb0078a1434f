"""Emergency stop: a second signal, or an abort asked for from another process (each way a sender stops a
deploy through nox is in test_stop_ways.py).

Each test leaves production on v1 (blue), as the deploy tests after it expect.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.e2e.conftest import ROOT, report_of


def test_a_second_signal_does_not_stop_the_rollback_half_way(dg, traffic, assert_back_on_v1) -> None:
    def term(process) -> None:
        process.send_signal(signal.SIGTERM)

    run = dg.act_on([("   migrate ok", term), ("!! rolling back", term)], "deploy", "--candidate", "v2-safe")
    code, output = run.code, run.output
    assert code == 130, output[-3000:]
    assert "received during the rollback: it finishes first" in output
    assert "rollback_record ok" in output
    responses = traffic.stop()
    assert not [r for r in responses if r.failed]
    assert_back_on_v1([r.created_id for r in responses if r.created_id] + report_of(output)["record"]["traffic_created_ids"])


def test_abort_from_another_process_rolls_the_deploy_back(dg, traffic, assert_back_on_v1) -> None:
    asked = []
    deploy = dg.act_after(
        "== monitor", lambda: asked.append(dg.run("abort", "--reason", "e2e: stop it from elsewhere")), "deploy", "--candidate", "v2-safe"
    )
    output = deploy.output
    assert asked[0].code == 0 and "the deploy has stopped: rolled_back" in asked[0].output, asked[0].output[-2000:]
    assert deploy.code == 130 and "abort requested by" in output, output[-3000:]
    responses = traffic.stop()
    assert not [r for r in responses if r.failed]
    assert_back_on_v1([r.created_id for r in responses if r.created_id] + report_of(output)["record"]["traffic_created_ids"])
    # Nothing runs now: a second abort says so and changes nothing.
    again = dg.run("abort")
    assert again.code == 2 and "nothing to abort" in again.output


def test_every_command_after_a_killed_deploy_says_it_is_unfinished_and_a_bad_one_changes_nothing(
    dg, e2e_overrides, assert_back_on_v1
) -> None:
    dg.kill_after("== monitor", "deploy", "--candidate", "v2-safe")
    notice = "is unfinished (since "
    status = dg.run("status")
    assert status.code == 3 and status.output.splitlines()[0].startswith("!! deploy "), status.output[-2000:]
    assert notice in status.output and "`nox -s rollback` will: traffic on blue (v1); reverse " in status.output
    # The predeploy gate says it in its header, before any check runs (none is selected here).
    sets = [item for name, value in e2e_overrides.items() for item in ("--dg-set", f"{name}={value}")]
    gate = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests_pre",
            "--gate",
            "predeploy",
            "--candidate",
            "v2-safe",
            "-k",
            "no_such_check",
            "-p",
            "no:cacheprovider",
            *sets,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert notice in gate.stdout, gate.stdout[-2000:]
    refused = dg.run("deploy", "--candidate", "nope")
    assert refused.code == 2 and "candidate 'nope'" in refused.output, refused.output[-2000:]
    assert refused.output.splitlines()[0].startswith("!! deploy ") and notice in refused.output.splitlines()[0]
    assert "rolling it back" not in refused.output
    converged = dg.run("rollback", "--if-unfinished")
    assert converged.code == 0 and "rolling back the unfinished deploy" in converged.output
    assert notice in converged.output.splitlines()[0]
    assert_back_on_v1([])
    assert dg.run("status").code == 0
    again = dg.run("rollback", "--if-unfinished")  # a CI cleanup step after a deploy that finished: nothing to do
    assert again.code == 0 and "nothing to converge" in again.output, again.output[-2000:]
