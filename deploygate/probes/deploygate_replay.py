"""The probe's ``replay``: production's recorded requests sent to the release's own WSGI application, in process.

Run by ``django_probe.py`` inside a release's image against a scratch copy (stdlib and Django
only, imported after ``django.setup()``). The application is the one the app's server runs
(``settings.WSGI_APPLICATION``: its wsgi.py, wrappers included), called as a WSGI server calls
it, one request at a time in production's order: the same middleware, views and database
work as over HTTP, without an HTTP server, a client or a log line per request (the replay's
cost is the app's own). The exception behind an answer is the one Django reports for it
(``got_request_exception``), named as ``deploygate.app_errors`` names errors in a container's
output: its type and the innermost frame of the app's own code.

SPEC {"requests": path, "result": path, "stop": path}: the requests as JSON lines (method, path,
query, headers, body as base64); one JSON line per answer is appended to ``result`` (status,
content type, size, the body as base64 when it is JSON and at most ``BODY_LIMIT``, the error).
The replay stops between two requests once ``stop`` exists.
"""

import base64
import io
import json
import os
import sys
import traceback
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.servers.basehttp import get_internal_wsgi_application
from django.core.signals import got_request_exception

# A JSON answer larger than this is compared by its size band only (the host never reads megabytes per answer).
BODY_LIMIT = 256 * 1024
# Library code, not the app's (deploygate.app_errors._LIBRARY_PATHS): the innermost app frame is what the app can fix.
LIBRARY_PATHS = ("site-packages/", "dist-packages/", "/lib/python3", "<frozen ")


def _host():
    """A Host header the app accepts: Django refuses a request for a host not in ALLOWED_HOSTS with 400."""
    for entry in settings.ALLOWED_HOSTS:
        if entry not in ("*", "") and "*" not in entry:
            return entry.lstrip(".")
    return "localhost"


def _environ(request, host):
    body = base64.b64decode(request.get("body") or "")
    headers = request.get("headers") or {}
    environ = {
        "REQUEST_METHOD": request["method"],
        # WSGI's PATH_INFO is the decoded path as latin-1 (PEP 3333), as gunicorn passes it.
        "PATH_INFO": unquote_to_bytes(request["path"]).decode("latin-1"),
        "QUERY_STRING": request.get("query") or "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": host,
        "SERVER_PORT": "443" if settings.SECURE_SSL_REDIRECT else "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if settings.SECURE_SSL_REDIRECT else "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if settings.SECURE_PROXY_SSL_HEADER:  # behind production's TLS proxy: what it adds to every request
        name, value = settings.SECURE_PROXY_SSL_HEADER
        environ[name] = value
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    return environ


def _signature(exc_type, exc, tb):
    """``module.Type at path in function`` of the innermost frame of the app's code (else the innermost at all)."""
    frames = traceback.extract_tb(tb)
    mine = [f for f in frames if not any(part in f.filename for part in LIBRARY_PATHS)]
    frame = (mine or frames or [None])[-1]
    name = exc_type.__qualname__ if exc_type.__module__ == "builtins" else f"{exc_type.__module__}.{exc_type.__qualname__}"
    return f"{name} at {frame.filename} in {frame.name}" if frame is not None else name


def cmd_replay(arg):
    spec = json.loads(arg)
    application = get_internal_wsgi_application()
    host = _host()
    raised = []

    def on_exception(sender, request=None, **kwargs):
        raised.append(sys.exc_info())

    got_request_exception.connect(on_exception, weak=False)
    sent = 0
    with open(spec["requests"]) as requests, open(spec["result"], "a") as result:
        for line in requests:
            if os.path.exists(spec["stop"]):
                return {"sent": sent, "stopped": True}, 0
            request = json.loads(line)
            raised.clear()
            answer = {"status": 0, "content_type": "", "size": 0, "body": None, "error": ""}
            started = {}

            def start_response(status, headers, exc_info=None, started=started):
                started["status"] = int(status.split(" ", 1)[0])
                started["headers"] = {k.lower(): v for k, v in headers}
                return lambda data: None

            try:
                response = application(_environ(request, host), start_response)
                try:
                    body = b"".join(response)
                finally:
                    if hasattr(response, "close"):
                        response.close()
                content_type = started["headers"].get("content-type", "")
                answer.update(status=started["status"], content_type=content_type, size=len(body))
                if "json" in content_type and len(body) <= BODY_LIMIT:
                    answer["body"] = base64.b64encode(body).decode()
            except Exception as exc:  # noqa: BLE001 - what a WSGI server answers 500 for: outside Django's handler
                raised.append((type(exc), exc, exc.__traceback__))
                answer["status"] = 500
            if raised:
                answer["error"] = _signature(*raised[-1])
            result.write(json.dumps(answer) + "\n")
            sent += 1
    return {"sent": sent, "stopped": False}, 0
