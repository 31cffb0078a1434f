"""The replay's pure parts: the app's errors matched to the requests that logged them, the hazards' exposure."""

from __future__ import annotations

import datetime

from deploygate import compat, replay
from deploygate.recording import RecordedRequest
from deploygate.replay_compare import Answer, Noise

TRACE = """{ts} ERROR django.request: Internal Server Error: /
{ts} Traceback (most recent call last):
{ts}   File "/venv/lib/python3.11/site-packages/django/db/backends/utils.py", line 105, in _execute
{ts}     return self.cursor.execute(sql, params)
{ts} psycopg.errors.UndefinedColumn: column "x" does not exist
{ts}
{ts} The above exception was the direct cause of the following exception:
{ts}
{ts} Traceback (most recent call last):
{ts}   File "/app/shop/views.py", line 12, in page
{ts}     cursor.execute("SELECT x FROM t")
{ts} django.db.utils.ProgrammingError: column "x" does not exist"""


def _stamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def test_an_error_is_the_last_request_sent_before_it_was_logged_and_the_apps_frame_is_preferred() -> None:
    spans = [(100.0, 100.1), (100.2, 100.3), (100.4, 100.5)]
    answers = [Answer(200, None), Answer(500, None), Answer(200, None)]
    output = TRACE.format(ts=_stamp(100.25))
    matched, count = replay._with_app_errors(answers, spans, output)
    assert count >= 1
    assert [a.app_error for a in matched] == ["", "django.db.utils.ProgrammingError at /app/shop/views.py in page", ""]


def test_an_error_stamped_once_the_next_request_had_gone_is_the_failed_one_before() -> None:
    spans = [(100.0, 100.1), (100.2, 100.3)]
    answers = [Answer(500, None), Answer(200, None)]
    matched, _ = replay._with_app_errors(answers, spans, TRACE.format(ts=_stamp(100.21)))
    assert matched[0].app_error.startswith("django.db.utils.ProgrammingError") and matched[1].app_error == ""


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
