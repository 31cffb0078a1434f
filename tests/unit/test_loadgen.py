"""The keep-alive load generator against a tiny local HTTP/1.1 server, and its pure window statistics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest

from bench import loadgen
from bench.loadgen import KeepAliveLoad, Sample
from tests.support import serving

PATHS = {
    "get_path": "/read",
    "post_path": "/write",
    "post_body": lambda client, n: {"email": f"load-{client}-{n}@loadgen.invalid"},
}


@dataclass
class FakeServer:
    """Counts connections and requests; ``drop_every`` > 0 closes every n-th request's connection unanswered."""

    url: str = ""
    drop_every: int = 0
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def setup(self) -> None:  # once per TCP connection
            super().setup()
            with server.lock:
                server.connections += 1

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with server.lock:
                server.requests.append(method)
                n = len(server.requests)
            if server.drop_every and n % server.drop_every == 0:
                self.close_connection = True  # no answer, as a proxy closing a kept-alive connection
                return
            if method == "POST":
                assert json.loads(body)["email"].endswith("@loadgen.invalid")  # post_body arrives as JSON
            data = b'{"ok": true}'
            self.send_response(201 if method == "POST" else 200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Deploygate-Color", "blue")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    state = FakeServer()
    with serving(_handler(state)) as (_, url):
        state.url = url
        yield state


def test_each_client_keeps_one_connection_and_every_fourth_request_posts(fake_server: FakeServer) -> None:
    load = KeepAliveLoad(fake_server.url, clients=4, max_requests=200, max_duration_s=30, **PATHS)
    samples = load.start().wait()
    assert len(samples) == 200 == len(fake_server.requests)  # bounded by count, every request recorded
    assert fake_server.connections == 4 == load.connections_opened
    assert all(s.answered and s.color == "blue" and s.error is None for s in samples)
    for client in range(4):
        methods = [s.method for s in samples if s.client == client]
        assert methods and all((m == "POST") == (n % 4 == 0) for n, m in enumerate(methods, start=1))
    assert [s.ts for s in samples] == sorted(s.ts for s in samples)


def test_unanswered_requests_are_recorded_and_never_sent_again(fake_server: FakeServer) -> None:
    fake_server.drop_every = 5
    samples = KeepAliveLoad(fake_server.url, clients=3, max_requests=60, max_duration_s=30, **PATHS).start().wait()
    failed = [s for s in samples if not s.answered]
    assert len(samples) == 60 == len(fake_server.requests)  # one server request per sample: no retry
    assert len(failed) == 12
    assert all(s.status == 0 and s.error and "\n" not in s.error and s.color is None for s in failed)
    # The client after a failure opens a new connection for its next request.
    last_of_client = {s.client: s for s in samples}.values()
    assert fake_server.connections == 3 + len(failed) - sum(not s.answered for s in last_of_client)
    assert loadgen.stats(samples).no_answer == 12


def test_the_run_stops_at_its_time_bound(fake_server: FakeServer) -> None:
    load = KeepAliveLoad(fake_server.url, clients=2, max_requests=10**9, max_duration_s=0.5, pause_s=0.01, **PATHS).start()
    time.sleep(1.0)
    count = len(load.samples())
    assert 0 < count < 200
    assert len(load.stop()) == count == len(fake_server.requests)


def test_a_refused_connection_is_a_status_0_sample() -> None:
    samples = KeepAliveLoad("http://127.0.0.1:9", clients=1, max_requests=3, max_duration_s=5, **PATHS).start().wait()
    assert len(samples) == 3 and all(s.status == 0 and "ConnectionRefused" in (s.error or "") for s in samples)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "https://127.0.0.1:1"},
        {"base_url": "http://127.0.0.1:1/prefix"},
        {"clients": 0},
        {"max_requests": 0},
        {"max_duration_s": 0},
        {"get_path": "health/"},
        {"post_path": "//elsewhere/"},
    ],
)
def test_unusable_arguments_are_refused(kwargs: dict) -> None:
    args = {"base_url": "http://127.0.0.1:1", "clients": 1, "max_requests": 1, "max_duration_s": 1.0, **PATHS, **kwargs}
    with pytest.raises(ValueError):
        KeepAliveLoad(args.pop("base_url"), **args)


def _sample(ts: float, status: int = 200, latency_ms: float = 10.0, method: str = "GET", color: str | None = "blue") -> Sample:
    return Sample(ts, 0, method, "/", status, latency_ms, color if status else None, None if status else "RemoteDisconnected")


def test_window_stats_splits_around_instants_and_counts_failures() -> None:
    samples = [
        _sample(9.4),  # outside: 0.6 s before the switch at 10
        _sample(9.6, latency_ms=30.0),  # around
        _sample(10.2, status=0, method="POST"),  # around, no answer
        _sample(10.4, status=502, color="green"),  # around, 5xx
        _sample(11.0),  # outside
        _sample(20.1, latency_ms=50.0, color="green"),  # around the switch at 20
    ]
    around, outside = loadgen.window_stats(samples, [20.0, 10.0], half_window_s=0.5)
    assert (around.requests, around.no_answer, around.server_errors, around.posts, around.failed_posts) == (4, 1, 1, 1, 1)
    assert around.colors == {"blue": 1, "green": 2}
    assert (around.p50_ms, around.p99_ms) == (30.0, 50.0)  # nearest rank over the 3 answered
    assert (outside.requests, outside.no_answer, outside.p99_ms) == (2, 0, 10.0)
    assert loadgen.stats([]).p50_ms is None
