"""The database's streaming standby during a deploy: users move to the new release only once it has replayed the migration.

The e2e production runs one (deploy.toml: ``database.standbys = 1``), and the demo's lists read there.
Each fault is caused during a real deploy of v2-safe under the test's own traffic, and asserts: no switch,
rolled back with the replica named, no request failed, the schema v1's and every row written kept.
Each test leaves production on v1 (blue) with its standby following, as the next one expects.
"""

from __future__ import annotations

import threading
import time
import uuid

import requests

from deploygate import replicas
from deploygate.database import connect
from tests.e2e.conftest import report_of


def _standby(platform) -> replicas.Standby:
    (standby,) = platform.standbys()
    return standby


def _replay(platform, action: str) -> None:
    with connect(_standby(platform).address) as conn:
        conn.execute(f"SELECT pg_wal_replay_{action}()")


def _caught_up(platform) -> replicas.ReplayReport:
    report = replicas.wait_replayed(platform.database(), platform.standbys(), timeout_s=60)
    assert report.ok, [r.describe() for r in report.replays]
    return report


def test_the_standby_follows_production_and_the_lists_read_from_it(platform, e2e_stack, proxy) -> None:
    standby = _standby(platform)
    assert standby.name == platform.names.db_standby
    with connect(standby.address) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0], "the standby is not in recovery"
    with connect(platform.database()) as conn:
        slot = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (platform.names.db_standby_slot,)).fetchone()
    assert slot == (True,), f"the standby's slot is not in use: {slot}"
    # With replay paused, a new link is at once in its detail (the primary) and not yet in the list (the standby).
    _replay(platform, "pause")
    try:
        body = {"full_name": "Replica Probe", "email": f"replica-{uuid.uuid4().hex[:8]}@probe.invalid"}
        created = requests.post(f"{proxy.url}/api/links/", json=body, timeout=10)
        assert created.status_code in (200, 201), created.text
        link = created.json()
        assert requests.get(f"{proxy.url}/api/links/{link['id']}/", timeout=10).status_code == 200
        listed = _listed_ids(proxy.url, link)
        assert link["id"] not in listed, "the list read the primary, not the standby"
    finally:
        _replay(platform, "resume")
    report = _caught_up(platform)
    assert link["id"] in _listed_ids(proxy.url, link), "the list never showed the new link after replay"
    print(f"\nstandby {standby.name}: {report.replays[0].describe()} after replay resumed")


def _listed_ids(url: str, link: dict) -> set[int]:
    """The ids the list shows around ``link`` (the list is by id: the page that would hold it)."""
    page_size = 200
    found = set()
    for page in range(1, 1000):
        answer = requests.get(f"{url}/api/links/?page={page}&page_size={page_size}", timeout=10).json()
        found |= {row["id"] for row in answer["results"]}
        if not answer["has_next"] or max(found, default=0) >= link["id"]:
            return found
    return found


def _rolled_back_naming(run, standby: replicas.Standby, phrase: str, traffic, assert_back_on_v1) -> tuple[str, list, list]:
    """The deploy stopped at the replicas step and rolled back naming ``standby`` (``phrase`` in the reason); users
    never reached green, no request failed, v1's schema and every row kept."""
    assert run.code == 1 and "replicas FAILED" in run.output, run.output[-3000:]
    record = report_of(run.output)["record"]
    reason = record["rollback"]["reason"]
    assert record["outcome"] == "rolled_back" and standby.name in reason and phrase in reason, reason
    responses = traffic.stop()
    failed = [r for r in responses if r.failed]
    assert not failed, f"{len(failed)} requests failed: {failed[:3]}"
    assert not any(r.color == "green" for r in responses), "users reached green before the standby replayed the migration"
    assert_back_on_v1([r.created_id for r in responses if r.created_id] + record["traffic_created_ids"])
    lag = [sample for sample in record["replica_lag"] if sample["name"] == standby.name]
    assert lag, "the deploy's timeline has no lag sample of the standby"
    return reason, responses, lag


def test_replay_paused_during_a_deploy_stops_the_switch_and_rolls_back(dg, traffic, platform, assert_back_on_v1) -> None:
    standby = _standby(platform)
    try:
        run = dg.act_after("== green", lambda: _replay(platform, "pause"), "deploy", "--candidate", "v2-safe", replica_lag_max_s="3")
    finally:
        _replay(platform, "resume")
    reason, responses, lag = _rolled_back_naming(run, standby, "bytes behind", traffic, assert_back_on_v1)
    worst = max(s["behind_bytes"] or 0 for s in lag)
    assert worst > 0, "the timeline shows no lag while replay was paused"
    _caught_up(platform)
    print(f"\nreplay paused: rolled back ({reason}); {len(responses)} requests, 0 failed; lag on the timeline up to {worst:,} bytes")


def test_a_stopped_standby_stops_the_switch_and_rolls_back(dg, traffic, platform, assert_back_on_v1) -> None:
    standby = _standby(platform)
    container = platform.client.containers.get(standby.name)
    try:
        run = dg.act_after("== green", lambda: container.stop(timeout=10), "deploy", "--candidate", "v2-safe", replica_lag_max_s="3")
    finally:
        container.start()
    reason, responses, lag = _rolled_back_naming(run, standby, "never answered", traffic, assert_back_on_v1)
    assert any(s["behind_bytes"] is None for s in lag), "the timeline shows the stopped standby answering"
    _caught_up(platform)
    print(f"\nstandby stopped: rolled back ({reason}); {len(responses)} requests, 0 failed")


def _long_read(standby: replicas.Standby, outcome: list[str]) -> None:
    """A report on the standby: its transaction's lock on the links table conflicts with replaying an ALTER TABLE."""
    try:
        with connect(standby.address, autocommit=False) as conn:
            conn.execute("SELECT count(*) FROM unified_db_personlink")
            conn.execute("SELECT pg_sleep(45)")
        outcome.append("finished")
    except Exception as exc:  # noqa: BLE001 - what ended it is the finding: the standby cancels it for the replay
        outcome.append(str(exc).splitlines()[0])


def test_a_long_query_on_the_standby_holds_the_ddls_replay_back_and_the_switch_with_it(dg, traffic, platform, assert_back_on_v1) -> None:
    standby = _standby(platform)
    outcome: list[str] = []
    blocker = threading.Thread(target=_long_read, args=(standby, outcome), daemon=True)
    blocker.start()
    time.sleep(1)  # the report holds its lock before the deploy begins
    run = dg.run(
        "deploy",
        "--candidate",
        "v2-adds-column",
        "--skip-predeploy",
        "--reason",
        "e2e: the fault is the replica's, not the candidate's",
        replica_lag_max_s="5",
    )
    reason, responses, _lag = _rolled_back_naming(run, standby, "bytes behind", traffic, assert_back_on_v1)
    blocker.join(timeout=90)
    _caught_up(platform)
    slowest = max((r.latency_ms for r in responses), default=0)
    print(
        f"\nlong query on the standby: rolled back ({reason}); the query: {outcome}; {len(responses)} requests, 0 failed, slowest {slowest:.0f} ms"
    )
