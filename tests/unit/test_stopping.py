"""How a stop reaches a deploy: the relay in nox's process, the deploy's own handlers, and the notice of an open deploy."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deploygate.deploy import abort
from deploygate.deploy.state import describe_unfinished
from deploygate.ledger import Entry
from deploygate.signal_relay import children

# A child that reports each stop signal it gets on stdout, and ends after the third.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    got = []
    def note(signum, frame):
        got.append(signum)
        print(signal.Signals(signum).name, flush=True)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, note)
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    """
)

# A parent that runs the child inside relaying_signals(), as the noxfile runs deploygate.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    from deploygate.signal_relay import relaying_signals
    with relaying_signals():
        done = subprocess.run([sys.executable, "-c", sys.argv[1]])
    print(f"parent saw the child end with {done.returncode}", flush=True)
    """
)


def test_children_reads_the_parent_pid_of_every_process(tmp_path: Path) -> None:
    for pid, stat in {"10": "10 (nox) S 1 10", "11": "11 (python -m (x)) S 10 10", "12": "12 (sh) S 11 10", "self": ""}.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "stat").write_text(stat)
    (tmp_path / "13").mkdir()  # a process that ended while /proc was read: no stat file
    assert children(10, proc=tmp_path) == [11]
    assert children(11, proc=tmp_path) == [12]


def test_the_relay_passes_each_stop_signal_to_the_child_and_waits_for_it() -> None:
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert parent.stdout.readline().strip() == "ready"
    seen = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        parent.send_signal(signum)  # to the parent only, as a CI runner's cancel or docker stop sends it
        seen.append(parent.stdout.readline().strip())
    rest = parent.stdout.read()
    assert parent.wait(timeout=30) == 0
    assert seen == ["SIGINT", "SIGTERM", "SIGHUP"]
    assert "parent saw the child end with 0" in rest


def test_only_the_first_signal_aborts_and_repeats_are_noted() -> None:
    said: list[str] = []
    with pytest.raises(abort.Aborted) as first:
        with abort.raising(said.append):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert first.value.why == "SIGINT"
    said.clear()
    with abort.raising(said.append):
        with pytest.raises(abort.Aborted):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGINT)  # relayed by nox after the terminal's own: no second abort
        time.sleep(0.2)
    assert said == ["!! SIGTERM received: aborting", "!! SIGINT received: already aborting"]


def _entry(outcome: str, **detail: object) -> Entry:
    base = {
        "stamp": "20261205_093012",
        "candidate": {"ref": "v2-safe", "tag": "v2-safe", "image_id": "sha256:1"},
        "previous": {"color": "blue", "release": "v1"},
        "new_color": "green",
        "plan": ["unified_db.0023_rename", "members.0002_rename"],
        "reversible": True,
    }
    return Entry(
        at=dt.datetime(2026, 12, 5, 9, 31, tzinfo=dt.UTC),
        kind="deploy",
        outcome=outcome,
        release="v2-safe",
        image_digest="sha256:1",
        detail={**base, **detail},
    )


def test_an_open_deploy_is_described_with_where_it_stopped_and_what_rollback_will_do() -> None:
    since = dt.datetime(2026, 12, 5, 9, 30, 12, tzinfo=dt.UTC)
    notice = describe_unfinished(_entry("switched", step="switch"), since)
    assert notice == (
        "!! deploy 20261205_093012 of v2-safe is unfinished (since 2026-12-05 09:30:12 UTC; last step switch): "
        "`nox -s rollback` will: traffic on blue (v1); reverse unified_db.0023_rename, members.0002_rename; remove green"
    )


def test_an_interrupted_rollback_says_traffic_is_back_and_what_remains() -> None:
    since = dt.datetime(2026, 12, 5, 9, 30, 12, tzinfo=dt.UTC)
    back = dt.datetime(2026, 12, 5, 9, 31, 1, tzinfo=dt.UTC).timestamp()
    entry = _entry(
        "rolling_back",
        step="rollback_export",
        reversible=False,
        rollback={"reason": "aborted by SIGINT during monitor", "traffic_on_previous_ts": back},
    )
    notice = describe_unfinished(entry, since)
    assert "its rollback (aborted by SIGINT during monitor) stopped after rollback_export" in notice
    assert "traffic back on blue (v1) since 2026-12-05 09:31:01 UTC" in notice
    assert notice.endswith("`nox -s rollback` will: traffic on blue (v1); restore the backup; remove green")


def test_a_rollback_within_the_forward_fix_limit_is_on_request_and_forced_only_past_it() -> None:
    from deploygate.deploy import rollback_reason

    assert rollback_reason(5.5, 30, force=False) == "rollback on request, 5.5 min after the switch (within the 30-min forward-fix limit)"
    assert rollback_reason(5.5, 30, force=True).startswith("rollback on request, 5.5 min")
    assert rollback_reason(42.0, 30, force=True) == (
        "forced rollback (--force), 42.0 min after the switch (past the 30-min forward-fix limit)"
    )


def test_a_gate_is_interrupted_by_the_first_stop_signal_and_not_by_its_repeats() -> None:
    from deploygate.signal_relay import interrupting_once

    handler = interrupting_once()
    with pytest.raises(KeyboardInterrupt, match="SIGHUP received"):
        handler(signal.SIGHUP, None)
    handler(signal.SIGINT, None)  # the same stop relayed again: the cleanup it started goes on
    handler(signal.SIGTERM, None)


def test_a_signal_during_a_held_block_lands_at_its_end_by_the_previous_handler() -> None:
    from deploygate.signal_relay import signals_held

    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: got.append(signum))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert got == [], "the signal was handled inside the held block"
        assert got == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)  # Python's default handler: KeyboardInterrupt, at the end
                time.sleep(0.05)
                got.append(-1)  # reached: nothing was raised inside
        assert got[-1] == -1
    finally:
        signal.signal(signal.SIGTERM, previous)
