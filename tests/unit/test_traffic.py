"""The traffic probe against a tiny local HTTP server, and its pure phase/summary helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploygate import config, traffic, traffic_stats
from deploygate.traffic import Response, TrafficProbe, body_template
from deploygate.traffic_stats import PhaseStats
from tests.support import serving

# The demo's write path and body, as deploy.toml gives them (the fake app checks the body arrives).
WRITE_BODY = body_template('{"full_name": "Traffic Probe {n}", "email": "probe-{n}@traffic.invalid"}')
WRITES = {"write_path": "/api/links/", "write_body": WRITE_BODY}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeApp:
    """What the fake proxy+app answers, and what it has seen."""

    url: str = ""
    mode: str = "ok"  # ok | 503 | close | slow
    color: str = "blue"
    slow_s: float = 0.3
    requests: int = 0
    created: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def stop(self) -> None:
        """Stop answering as a dead process would: kept-alive connections close too, new ones are refused."""
        self.mode = "close"
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _handler(app: FakeApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as through nginx

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Deploygate-Color", app.color)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with app.lock:
                app.requests += 1
                app.paths.append(f"{method} {self.path}")
            if app.mode == "close":
                self.close_connection = True
                return
            if app.mode == "slow":
                time.sleep(app.slow_s)
            if app.mode == "503":
                self._answer(503, {"error": "unavailable"})
            elif method == "POST":
                assert json.loads(body)["email"].endswith("@traffic.invalid")
                with app.lock:
                    app.created.append(len(app.created) + 1)
                    new_id = app.created[-1]
                self._answer(201, {"id": new_id})
            else:
                self._answer(200, {"results": []})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


@pytest.fixture
def fake_app() -> Iterator[FakeApp]:
    app = FakeApp()
    with serving(_handler(app)) as (server, url):
        app.server, app.url = server, url
        yield app
        app.stop()


def test_probe_keeps_rate_and_records_every_response(fake_app: FakeApp) -> None:
    with TrafficProbe(fake_app.url, **WRITES, rate_per_s=40, write_every=4).start() as probe:
        time.sleep(1.5)
    responses = probe.stop()
    # 40/s for 1.5 s is ~60; the factor is generous for a loaded CI machine.
    assert 30 <= len(responses) <= 75
    assert len(responses) == fake_app.requests  # every request the server saw was recorded
    assert all(r.ok and r.color == "blue" and r.error is None for r in responses)
    assert [r.ts for r in responses] == sorted(r.ts for r in responses)
    writes = [r for r in responses if r.method == "POST"]
    assert writes and abs(len(writes) - len(responses) / 4) <= 2
    assert all(r.status == 201 and r.path == "/api/links/" for r in writes)
    assert sorted(probe.created_ids()) == sorted(fake_app.created) == sorted(r.created_id for r in writes)
    assert all(r.created_id is None for r in responses if r.method == "GET")
    stats = traffic_stats.summary(responses)
    assert stats["requests"] == len(responses) and stats["failed"] == 0 and stats["by_color"] == {"blue": len(responses)}
    assert 20 <= stats["rate_per_s"] <= 60


def test_id_paths_use_created_ids_and_wait_for_one(fake_app: FakeApp) -> None:
    probe = TrafficProbe(fake_app.url, **WRITES, rate_per_s=50, write_every=3, read_paths=("/api/links/{id}/", "/api/links/"))
    with probe:
        time.sleep(0.8)
    created = {str(i) for i in probe.created_ids()}
    detail = [r.path for r in probe.responses() if r.method == "GET" and r.path != "/api/links/"]
    assert detail, "no read by id was sent"
    assert all(p.split("/")[3] in created for p in detail)
    assert not any("{id}" in p for p in fake_app.paths)


def test_every_read_needing_an_id_starts_with_a_write(fake_app: FakeApp) -> None:
    with TrafficProbe(fake_app.url, **WRITES, rate_per_s=50, write_every=5, read_paths=("/api/links/{id}/",)) as probe:
        time.sleep(0.3)
    responses = probe.stop()
    assert responses[0].method == "POST"
    assert any(r.method == "GET" for r in responses)


def test_503s_count_as_failed_with_their_color(fake_app: FakeApp) -> None:
    with TrafficProbe(fake_app.url, **WRITES, write_every=5, rate_per_s=40) as probe:
        time.sleep(0.5)
        fake_app.mode, fake_app.color = "503", "green"
        switched = time.time()
        time.sleep(0.5)
    responses = probe.stop()
    late = [r for r in responses if r.ts > switched + 0.05]
    assert late and all(r.status == 503 and not r.ok and r.color == "green" for r in late)
    stats = traffic_stats.summary(responses)
    assert stats["failed"] >= len(late) and stats["non_2xx"] == stats["failed"]
    assert stats["by_color"]["blue"] > 0 and stats["by_color"]["green"] > 0
    assert probe.created_ids() == fake_app.created  # no id from a failed write


def test_closed_connections_and_a_stopped_server_are_status_0(fake_app: FakeApp) -> None:
    with TrafficProbe(fake_app.url, **WRITES, write_every=5, rate_per_s=40, timeout_s=1.0) as probe:
        time.sleep(0.4)
        fake_app.mode = "close"
        closed = time.time()
        time.sleep(0.4)
        fake_app.stop()
        stopped = time.time()
        time.sleep(0.4)
    responses = probe.stop()
    dropped = [r for r in responses if closed + 0.05 < r.ts < stopped]
    refused = [r for r in responses if r.ts > stopped + 0.05]
    assert dropped and refused
    for r in dropped + refused:
        assert r.status == 0 and r.failed and r.color is None and r.error
        assert "\n" not in r.error
    assert any("ConnectionError" in r.error for r in refused)
    assert traffic_stats.summary(responses)["failed"] >= len(dropped) + len(refused)


def test_a_dropped_get_is_recorded_once_and_never_sent_again(fake_app: FakeApp) -> None:
    # The server reads each request and closes without answering, as a proxy closing a
    # kept-alive connection at the wrong instant does: the probe must show every one.
    fake_app.mode = "close"
    with TrafficProbe(fake_app.url, rate_per_s=20, write_every=0, read_paths=("/r",), timeout_s=1.0) as probe:
        time.sleep(0.5)
    responses = probe.stop()
    assert responses and all(r.method == "GET" and r.status == 0 and r.error for r in responses)
    assert fake_app.requests == len(responses)  # each GET reached the server exactly once
    assert "retried_after_reload" not in traffic_stats.summary(responses)


def test_open_loop_rate_survives_slow_answers_and_timeouts_are_recorded(fake_app: FakeApp) -> None:
    fake_app.mode, fake_app.slow_s = "slow", 0.4
    probe = TrafficProbe(fake_app.url, **WRITES, write_every=5, rate_per_s=20, workers=8, timeout_s=1.0).start()
    time.sleep(1.0)
    fake_app.slow_s = 2.0  # beyond the timeout
    time.sleep(0.5)
    started = time.monotonic()
    responses = probe.stop()
    assert time.monotonic() - started < 2.0  # bounded by timeout_s (+1 s)
    fast = [r for r in responses if r.status == 200]
    # A closed loop over 0.4 s answers would have sent ~3 in the first second; open loop sends ~20.
    assert len(fast) >= 10
    assert all(r.latency_ms >= 350 for r in fast)
    timeouts = [r for r in responses if r.status == 0]
    assert timeouts and all("Timeout" in (r.error or "") for r in timeouts)


def test_probe_stops_by_itself_at_max_duration(fake_app: FakeApp) -> None:
    probe = TrafficProbe(fake_app.url, **WRITES, write_every=5, rate_per_s=20, max_duration_s=0.5).start()
    time.sleep(1.2)
    assert not probe.running
    count = len(probe.responses())
    assert 5 <= count <= 12
    time.sleep(0.2)
    assert len(probe.responses()) == count == fake_app.requests
    assert len(probe.stop()) == count


def test_by_default_the_probe_reads_the_root_and_writes_nothing(fake_app: FakeApp) -> None:
    with TrafficProbe(fake_app.url, rate_per_s=40) as probe:
        time.sleep(0.4)
    responses = probe.stop()
    assert responses and {(r.method, r.path) for r in responses} == {("GET", "/")}
    assert traffic_stats.summary(responses)["writes"] == 0 and not fake_app.created


def test_the_configured_probe_writes_only_where_settings_say(tmp_path: Path) -> None:
    neutral = traffic.configured_probe(config.load(root=tmp_path, environ={}), "http://127.0.0.1:1")
    assert (neutral.read_paths, neutral.write_every) == (("/health/",), 0)
    demo = traffic.configured_probe(config.load(root=ROOT, environ={}), "http://127.0.0.1:1")
    assert (demo.write_path, demo.write_every) == ("/api/links/", 5)
    assert demo.read_paths == ("/api/links/?page_size=20", "/api/links/{id}/", "/")
    assert demo.write_body(7) == {"full_name": "Traffic Probe 7", "email": "probe-7@traffic.invalid"}


def test_probe_refuses_to_send_anywhere_but_base_url() -> None:
    with pytest.raises(ValueError):
        TrafficProbe("127.0.0.1:8080")
    with pytest.raises(ValueError):
        TrafficProbe("http://127.0.0.1:8080", read_paths=("http://example.com/",))
    with pytest.raises(ValueError):
        TrafficProbe("http://127.0.0.1:8080", write_path="//example.com/x", write_every=5)
    with pytest.raises(ValueError):
        TrafficProbe("http://127.0.0.1:8080", write_every=5)  # writes, but to no path
    with pytest.raises(ValueError):
        TrafficProbe("http://127.0.0.1:8080", write_every=0, read_paths=("/a/{id}/",))
    probe = TrafficProbe("http://127.0.0.1:1").start()
    with pytest.raises(RuntimeError):
        probe.start()
    probe.stop()


def _r(ts: float, status: int = 200, latency: float = 10.0, color: str | None = "blue") -> Response:
    return Response(
        ts=ts,
        method="GET",
        path="/",
        status=status,
        latency_ms=latency,
        color=color,
        created_id=None,
        error=None if status else "ConnectionError: refused",
    )


def test_phase_stats_splits_by_ts() -> None:
    responses = [
        _r(0.5, latency=5),  # before every phase
        _r(1.0, latency=10),  # "up": its start is inclusive
        _r(1.5, status=201, latency=30),
        _r(2.0, status=503, latency=20, color="green"),  # "switch": the end of "up" is exclusive
        _r(2.5, status=0, latency=5000, color=None),
        _r(2.9, status=404, latency=40, color="green"),
        _r(3.5),  # after every phase
    ]
    up, switch, empty = traffic_stats.phase_stats(responses, [("up", 1.0, 2.0), ("switch", 2.0, 3.0), ("idle", 3.0, 3.2)])
    assert up == PhaseStats("up", 1.0, 2.0, requests=2, failed=0, non_2xx=0, p50_ms=10, p95_ms=30, colors={"blue": 2})
    assert switch.requests == 3 and switch.failed == 2 and switch.non_2xx == 3
    assert (switch.p50_ms, switch.p95_ms) == (20, 40)  # the status-0 request's 5 s is not a latency
    assert switch.colors == {"green": 2}
    assert empty == PhaseStats("idle", 3.0, 3.2, 0, 0, 0, None, None, {})


def test_summary_of_nothing_and_of_something() -> None:
    assert traffic_stats.summary([])["requests"] == 0 and traffic_stats.summary([])["rate_per_s"] is None
    stats = traffic_stats.summary([_r(10.0), _r(10.5, status=0, color=None), _r(11.0, status=502, color="green")])
    assert stats["requests"] == 3 and stats["failed"] == 2 and stats["non_2xx"] == 2
    assert stats["rate_per_s"] == pytest.approx(2.0)
    assert stats["by_color"] == {"blue": 1, "green": 1}
    assert stats["by_status"] == {"0": 1, "200": 1, "502": 1}
    assert stats["errors"] == {"ConnectionError: refused": 1}
    assert (stats["first_ts"], stats["last_ts"]) == (10.0, 11.0)
    json.dumps(stats)


def test_body_template_numbers_each_write_and_refuses_bad_json() -> None:
    body = body_template('{"name": "probe {n}", "n": {n}}')
    assert body(3) == {"name": "probe 3", "n": 3}
    with pytest.raises(ValueError):
        body_template("{not json")


def test_a_holds_503_is_held_and_not_failed() -> None:
    from deploygate.deploy import traffic_line

    hold = Response(1.0, "GET", "/", 503, 1.0, "hold", None, None)
    own = Response(2.0, "GET", "/", 503, 1.0, "blue", None, None)
    gone = Response(3.0, "GET", "/", 0, 1.0, None, None, "ConnectionError: refused")
    missing = Response(4.0, "GET", "/x", 404, 1.0, "blue", None, None)
    assert hold.held and not hold.failed
    assert own.failed and not own.held and gone.failed
    totals = traffic_stats.summary([hold, own, gone, missing])
    assert (totals["held"], totals["failed"]) == (1, 2)
    assert traffic_stats.phase_stats([hold, own], [("p", 0.0, 5.0)])[0].held == 1
    assert traffic_line([hold, hold, own, gone]) == "traffic probe: 4 requests, 2 failed, 2 held"
    assert traffic_line([missing]) == "traffic probe: 1 requests, 0 failed, 0 held, 1 answered 4xx"
