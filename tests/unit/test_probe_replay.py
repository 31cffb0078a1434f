"""The probe's replay, without an engine or a database: requests through the app's own WSGI application in
process, each answer with its status, JSON body and the exception Django reported for it.

As in test_probe_exercise.py, the probe's module runs in a child Python with minimal settings (a
URLconf of three views, no database), so this test run's own process never configures Django.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap

from deploygate.probes import DJANGO_PROBE
from deploygate.recording import RecordedRequest
from deploygate.replay_compare import shape_of

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import django
    from django.conf import settings
    from django.http import JsonResponse, HttpResponse
    from django.urls import path

    def listing(request):
        return JsonResponse({"results": [{"id": 1, "name": request.GET.get("q", "")}], "has_next": False})

    def create(request):
        if request.method != "POST":
            return HttpResponse(status=405)
        data = json.loads(request.body)
        return JsonResponse({"id": 7, "email": data["email"]}, status=201)

    def broken(request):
        return {}["missing"]

    urlpatterns = [path("things/", listing), path("things/new/", create), path("broken/", broken)]
    settings.configure(
        DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["app.example.com"], SECRET_KEY="x", DATABASES={},
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"], WSGI_APPLICATION=None,
        LOGGING_CONFIG=None,
    )
    django.setup()
    sys.path.insert(0, sys.argv[1])
    import deploygate_replay

    print(json.dumps(deploygate_replay.cmd_replay(sys.argv[2])))
    """
)


def _request(method: str, path: str, query: str = "", body: bytes = b"") -> RecordedRequest:
    headers = {"Content-Type": "application/json"} if body else {}
    return RecordedRequest(1.0, method, path, query, headers, body, 200, "blue")


def test_requests_go_through_the_apps_wsgi_application_with_their_answers_and_exceptions(tmp_path) -> None:
    sent = [
        _request("GET", "/things/", "q=a%20b"),
        _request("POST", "/things/new/", body=b'{"email": "a@b.c"}'),
        _request("GET", "/broken/"),
        _request("GET", "/nowhere/"),
    ]
    requests_file, answers_file = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
    requests_file.write_text("".join(r.to_json() + "\n" for r in sent))
    spec = {"requests": str(requests_file), "result": str(answers_file), "stop": str(tmp_path / "stop")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(DJANGO_PROBE.parent), json.dumps(spec)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary, code = json.loads(done.stdout.splitlines()[-1])
    assert (summary, code) == ({"sent": 4, "stopped": False}, 0)
    answers = [json.loads(line) for line in answers_file.read_text().splitlines()]
    assert [a["status"] for a in answers] == [200, 201, 500, 404]
    listing = json.loads(base64.b64decode(answers[0]["body"]))
    assert listing["results"][0]["name"] == "a b", "the query string reached the view decoded"
    assert shape_of(answers[1]["content_type"], base64.b64decode(answers[1]["body"])) == {"json": {"id": "number", "email": "str"}}
    assert answers[2]["error"].startswith("KeyError at ") and answers[2]["error"].endswith(" in broken"), answers[2]
    assert answers[3]["error"] == "" and answers[3]["body"] is None


def test_the_replay_stops_between_two_requests_once_told(tmp_path) -> None:
    requests_file, answers_file, stop = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl", tmp_path / "stop"
    requests_file.write_text(_request("GET", "/things/").to_json() + "\n")
    stop.touch()
    spec = {"requests": str(requests_file), "result": str(answers_file), "stop": str(stop)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(DJANGO_PROBE.parent), json.dumps(spec)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [{"sent": 0, "stopped": True}, 0]
