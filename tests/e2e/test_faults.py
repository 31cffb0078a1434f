"""Faults of production's own parts, injected during a deploy: deploygate decides, converges, and says why.

Each test leaves production on v1 (blue), as the next one expects.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deploygate.database import DatabaseAddress, connect
from deploygate.fingerprint import fingerprint
from deploygate.platform import COLORS
from deploygate.platform.engine import DOCKERD_PIDFILE, ensure_engine, started_here
from deploygate.waiting import wait_until
from tests.e2e.conftest import report_of


def _created(responses: list, report: dict) -> list[int]:
    return [r.created_id for r in responses if r.created_id is not None] + report["record"]["traffic_created_ids"]


def test_database_restarted_during_migrate_converges(dg, traffic, platform, assert_converged) -> None:
    # v2-slow-migration's plan takes 8 s: the restart lands inside it, whatever the machine's speed.
    def restart_database() -> None:
        time.sleep(2)
        platform.client.containers.get(platform.names.db).restart(timeout=5)

    run = dg.act_after(
        "== migrate",
        restart_database,
        "deploy",
        "--candidate",
        "v2-slow-migration",
        "--skip-predeploy",
        "--reason",
        "e2e: the fault is production's, not the candidate's",
    )
    assert run.code == 1 and "migrate FAILED" in run.output, run.output[-3000:]
    report = report_of(run.output)
    outcome = report["record"]["outcome"]
    assert outcome == "rolled_back" and "migrate" in report["record"]["rollback"]["reason"]
    cause = (report["record"]["rollback"] or {}).get("reason", "")
    responses = traffic.stop()
    # While the database restarts, the app answers (a 5xx from a release whose database is gone);
    # the proxy never refuses a connection and no request hangs.
    assert not [r for r in responses if r.status == 0], "a request got no answer"
    serving = assert_converged(_created(responses, report))
    assert serving == "blue"
    print(
        f"database restarted during migrate: {outcome} ({cause}); {serving} serves; "
        f"{sum(r.status >= 500 for r in responses)} answers were 5xx while it restarted"
    )


def test_no_room_for_the_backup_refuses_without_touching_production(dg, platform, tmp_path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], check=True)
    before = fingerprint(platform.database())
    try:
        run = dg.run("deploy", "--candidate", "v2-safe", backup_dir=str(tiny))
    finally:
        subprocess.run(["umount", str(tiny)], check=True)
    assert run.code == 2 and "no room for the backup" in run.output, run.output[-3000:]
    assert "rolling back" not in run.output
    after = fingerprint(platform.database(), schemas=("public",))
    assert {t.name: (t.rows, t.row_hash) for t in before.values()} == {t.name: (t.rows, t.row_hash) for t in after.values()}
    assert platform.color("green") is None and report_of(run.output)["record"]["outcome"] == "refused"


def test_candidate_removed_between_predeploy_and_deploy_is_refused(dg, platform, assert_back_on_v1) -> None:
    tag = f"{dg.overrides['project']}-candidate:1"
    platform.client.images.get("bmparliament:v2-safe").tag(tag)
    proven = dg.run("deploy", "--candidate", tag, "--dry-run")
    assert proven.code == 0, proven.output[-3000:]
    platform.client.images.remove(tag)
    run = dg.run("deploy", "--candidate", tag)
    assert run.code == 2 and f"candidate {tag!r}" in run.output, run.output[-3000:]
    assert "== green" not in run.output
    assert_back_on_v1([])


def _restart_engine(while_down: Callable[[], None] = lambda: None) -> None:
    """Stop dockerd as an upgrade of the engine would (live-restore keeps its containers running), call
    ``while_down``, then start it again."""
    pid = int(DOCKERD_PIDFILE.read_text())
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=120, interval=0.1, what="dockerd to stop")
    while_down()
    ensure_engine(say=lambda message: None)


def _drop_connections_of(db: DatabaseAddress, clients: list[str]) -> int:
    """End the idle database sessions of ``clients`` (the app's containers): their next request opens a new one.

    Idle ones only: a session ended in the middle of a query fails that request whatever the DNS.
    """
    with connect(db) as conn:
        query = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE host(client_addr) = ANY(%s) AND state = 'idle'"
        return conn.execute(query, [clients]).fetchone()[0]


def test_engine_restarted_in_the_monitoring_window_converges(dg, traffic, platform, assert_converged) -> None:
    if not started_here():
        pytest.skip("the engine is the host's own service, not one deploygate started: this test restarts only its own")
    restarted = {}

    def restart() -> None:
        # Asked while the engine answers: where the database is, and the app's containers' addresses.
        db = platform.database()
        clients = [r.address for state in map(platform.color, COLORS) if state for r in state.replicas if r.address]
        restarted["at"] = time.time()
        # The app's connections are ended while the engine is down, so the app opens new ones then,
        # every time: without it the fault shows only when a connection happens to reach CONN_MAX_AGE
        # in that second (seen in CI, 19 answers in 5xx; 0 in other runs).
        _restart_engine(while_down=lambda: restarted.update(dropped=_drop_connections_of(db, clients)))
        restarted["back"] = time.time()

    run = dg.act_after("== monitor", restart, "deploy", "--candidate", "v2-safe")
    assert run.code in (0, 1), run.output[-3000:]
    report = report_of(run.output)
    record = report["record"]
    decided = record["outcome"] + (f" ({record['rollback']['reason']})" if record["rollback"] else "")
    responses = traffic.stop()
    # deploygate's engine keeps its containers running through its own restart (--live-restore) and
    # publishes ports without a userland proxy: every request is answered.
    unanswered = [r for r in responses if r.status == 0]
    assert not unanswered, f"{len(unanswered)} requests got no answer across the engine's restart, e.g. {unanswered[0]}"
    # Docker's DNS (127.0.0.11) is served by the engine: while it is down, an app opening a database
    # connection could not resolve the database's name and answered 5xx. The database's address is
    # pinned in the app's /etc/hosts: not one request may fail.
    errors = [r for r in responses if r.failed]
    during = [r for r in errors if restarted["at"] <= r.ts + r.latency_ms / 1000 and r.ts <= restarted["back"]]
    assert not errors, f"{len(errors)} requests failed ({len(during)} while the engine was down), e.g. {errors[0]}"
    serving = assert_converged(_created(responses, report))
    print(
        f"engine restarted in the monitoring window ({restarted['back'] - restarted['at']:.1f}s): {decided}; "
        f"{serving} serves; {restarted['dropped']} app connections ended while it was down; "
        f"{len(responses)} requests, 0 unanswered, {len(errors)} 5xx"
    )
    if run.code == 0:  # kept: the teardown removes it all, but leave v1 as the other tests do
        assert dg.run("rollback").code == 0
