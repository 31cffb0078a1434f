"""Emergency stop: a second signal, or an abort asked for from another process (each way a sender stops a
deploy through nox is in test_stop_ways.py).

Each test leaves production on v1 (blue), as the deploy tests after it expect.
"""

from __future__ import annotations

import signal

from tests.e2e.conftest import report_of


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
    deploy = dg.act_after("== monitor", lambda: asked.append(dg.run("abort", "--reason", "e2e: stop it from elsewhere")),
                          "deploy", "--candidate", "v2-safe")  # fmt: skip
    output = deploy.output
    assert asked[0].code == 0 and "the deploy has stopped: rolled_back" in asked[0].output, asked[0].output[-2000:]
    assert deploy.code == 130 and "abort requested by" in output, output[-3000:]
    responses = traffic.stop()
    assert not [r for r in responses if r.failed]
    assert_back_on_v1([r.created_id for r in responses if r.created_id] + report_of(output)["record"]["traffic_created_ids"])
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


