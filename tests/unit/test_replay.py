"""The replay's pure parts: the hazards' exposure, the requests worth sending."""

from __future__ import annotations

from deploygate import compat, replay
from deploygate.recording import RecordedRequest
from deploygate.replay_compare import Answer, Noise


def _request(method: str, path: str) -> RecordedRequest:
    return RecordedRequest(ts=1.0, method=method, path=path, query="", headers={}, body=b"", status=200, color="blue")


def _replay(answers_now: list[Answer]) -> replay.Replay:
    requests = [_request("GET", "/things/"), _request("POST", "/things/")]
    baseline = replay.Run("1", "before", [Answer(200, None), Answer(201, None)], 1.0, 0)
    done = replay.Replay(requests=requests, skipped=[], baseline=[baseline, baseline], noise=Noise())
    done.runs[replay.PRODUCTION_ON_MIGRATED] = replay.Run("1", "migrated", answers_now, 1.0, 0)
    return done


FINDING = {"table": "shop_thing", "column": "owner_id", "operations": ["insert"], "error": "IntegrityError: null value in column"}


def test_a_hazard_production_exercised_is_seen_with_its_request() -> None:
    done = _replay([Answer(200, None), Answer(500, None, app_error="IntegrityError at /app/shop/views.py in create")])
    (line,) = replay.hazard_exposure(done, replay.PRODUCTION_ON_MIGRATED, [FINDING])
    assert "shop_thing.owner_id" in line and "seen in production's recorded requests, e.g. POST /things/: 201 -> 500" in line


def test_a_hazard_no_recorded_request_exercised_is_not_seen() -> None:
    done = _replay([Answer(200, None), Answer(201, None)])
    (line,) = replay.hazard_exposure(done, replay.PRODUCTION_ON_MIGRATED, [FINDING])
    assert "not seen in production's 2 recorded requests (1 writes)" in line
    assert replay.HAZARDS_OF[replay.PRODUCTION_ON_MIGRATED] == compat.PRODUCTION_ON_NEW


def test_a_read_identical_to_one_sent_before_is_answered_from_it_and_every_write_is_sent() -> None:
    recorded = [
        _request("GET", "/things/"),
        _request("POST", "/things/"),
        _request("GET", "/things/"),
        _request("POST", "/things/"),
        _request("GET", "/things/1/"),
    ]
    sent, slot_of = replay.distinct(recorded)
    assert sent == [0, 1, 3, 4] and slot_of == [0, 1, 0, 2, 3]


def test_the_baseline_is_told_against_what_production_answered() -> None:
    recorded = [_request("GET", "/things/"), _request("POST", "/things/"), _request("GET", "/things/1/")]
    done = replay.Replay(requests=recorded, skipped=[])
    done.baseline = [replay.Run("v1", "before", [Answer(200, None), Answer(400, None), Answer(0, None)], 1.0, 0)] * 2
    agree, others = done.as_production()
    assert agree == 1 and others == ["POST /things/: 200 -> 400", "GET /things/{id}/: 200 -> no answer"]
