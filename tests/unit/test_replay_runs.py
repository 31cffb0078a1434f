"""The replay's runs in the background: started before their check, waited for by it, stopped by ``close``.

The probe's job is a stand-in that honours its contract (the requests file in, one answer line per
request out, the stop file looked for between two requests) and the copies make nothing:
``Replayer``'s scheduling is what is tested. The probe itself: test_probe_replay.py; the runs on
real copies: the e2e tier's tests/e2e/test_replay.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploygate import replay
from deploygate.platform.images import Image
from deploygate.probes import RESULT_MARKER
from deploygate.recording import RecordedRequest


class _Copies:
    """Makes no database; the migrated template fails when told to (as a failed migration does)."""

    def __init__(self, migration_fails: bool = False) -> None:
        self.settings = SimpleNamespace(db_name="app", lock_timeout_ms=1000, app_python="python3")
        self.copy = SimpleNamespace(scratch=SimpleNamespace(database=SimpleNamespace(network="n")))
        self.migration_fails = migration_fails
        self.made: list[str] = []
        self.migrated_runs = 0

    def migrated_template(self, candidate: Image) -> str:
        if self.migration_fails:
            raise replay.ReplayError("the migration failed on the replay's copy: boom")
        return "migrated"

    @contextmanager
    def database(self, template: str, run: int) -> Iterator[dict[str, str]]:
        self.made.append(f"{template}/{run}")
        yield {"DB": template}


class _Platform:
    """``run_job`` as the probe's replay behaves: reads the requests, appends an answer per request, stops when told."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.answer_of = lambda index, database: 200  # the status of the request at ``index`` on ``database``

    def run_job(self, image, argv, *, environment, mounts, writable, network, say):
        spec = json.loads(argv[-1])
        inside = {target: source for source, target in mounts.items()}

        def host(path: str) -> Path:
            folder, name = path.rsplit("/", 1)
            return Path(inside[folder]) / name

        sent, stopped = 0, False
        with host(spec["requests"]).open() as requests, host(spec["result"]).open("a") as result:
            for index, _line in enumerate(requests):
                if host(spec["stop"]).exists():
                    stopped = True
                    break
                time.sleep(self.delay_s)
                status = self.answer_of(index, environment["DB"])
                result.write(
                    json.dumps({"status": status, "content_type": "application/json", "size": 2, "body": "e30=", "error": ""}) + "\n"
                )
                result.flush()
                sent += 1
        output = RESULT_MARKER + json.dumps({"sent": sent, "stopped": stopped})
        return SimpleNamespace(output=output, exit_code=0)


def _replayer(copies: _Copies, delay_s: float = 0.0, requests_count: int = 5, planned=(replay.PRODUCTION_ON_MIGRATED,)) -> replay.Replayer:
    recorded = [RecordedRequest(float(n), "GET", f"/things/{n}/", "", {}, b"", 200, "blue") for n in range(requests_count)]
    production, candidate = Image("v1", "sha256:1", False), Image("v2", "sha256:2", False)
    return replay.Replayer(_Platform(delay_s), copies, production, candidate, recorded, lambda message: None, planned)


def test_the_runs_start_in_the_background_and_the_check_reads_them() -> None:
    replayer = _replayer(_Copies())
    try:
        replayer.start()
        # The baseline and the planned direction are under way before any check asks.
        deadline = time.monotonic() + 10
        while len(replayer.copies.made) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(replayer.copies.made) == ["app/1", "migrated/2"]
        done = replayer.direction(replay.PRODUCTION_ON_MIGRATED)
        assert [a.status for a in done.runs[replay.PRODUCTION_ON_MIGRATED].answers] == [200] * 5
        assert done.differences(replay.PRODUCTION_ON_MIGRATED) == ([], 0)
        # No difference: no noise to tell, the baseline ran once.
        assert len(done.baseline) == 1 and done.noise is None
        # A direction nobody planned starts when its check asks; the baseline is not run again.
        replayer.direction(replay.CANDIDATE_ON_MIGRATED)
        assert len(replayer.copies.made) == 3
    finally:
        replayer.close()


def test_a_direction_that_answers_otherwise_has_the_baseline_run_again_to_tell_noise() -> None:
    replayer = _replayer(_Copies())
    replayer.platform.answer_of = lambda index, database: 500 if database == "migrated" and index == 2 else 200
    try:
        done = replayer.direction(replay.PRODUCTION_ON_MIGRATED)
        assert len(done.baseline) == 2 and done.noise is not None, "the baseline did not run again"
        found, noise = done.differences(replay.PRODUCTION_ON_MIGRATED)
        assert [d.request for d in found] == ["GET /things/{id}/"] and noise == 0
    finally:
        replayer.close()


def test_a_failed_run_fails_its_check_without_waiting_for_the_baseline() -> None:
    replayer = _replayer(_Copies(migration_fails=True), delay_s=0.2)  # the baseline's runs take a second
    try:
        started = time.monotonic()
        with pytest.raises(replay.ReplayError, match="the migration failed"):
            replayer.direction(replay.PRODUCTION_ON_MIGRATED)
        assert time.monotonic() - started < 0.9, "the check waited for the baseline before saying the run failed"
    finally:
        replayer.close()


def test_close_stops_the_runs_between_two_requests_and_leaves_no_file() -> None:
    replayer = _replayer(_Copies(), delay_s=0.05, requests_count=400)  # 20 s per run unless stopped
    replayer.start()
    time.sleep(0.3)
    folders = [exchange.dir for exchange in replayer._exchanges.values()]
    started = time.monotonic()
    replayer.close()
    assert time.monotonic() - started < 2, "close waited for the runs to finish"
    with pytest.raises(replay.ReplayError, match="was stopped after"):
        replayer._started["baseline"].result()
    assert folders and not any(folder.exists() for folder in folders), "a run left its requests on disk"
