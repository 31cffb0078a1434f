"""Keep-alive load: N clients, each on its own persistent HTTP/1.1 connection, nothing ever retried.

This is the load that shows what a proxy switch does to real clients: a browser or an
API client keeps its connection open between requests, so a switch that closes idle
connections fails the request sent on one at that instant. Each client here sends its
next request on the same connection as soon as the previous answer is read (after
``pause_s``); every 4th request of a client (``post_every``) is a POST. A request that
gets no answer is recorded with status 0 and its error line, the connection is dropped,
and the client's *next* request opens a new one: the failed request is never sent again.

``window_stats`` splits the recorded samples into those sent around given instants
(proxy switches) and the others, for the switch benchmark.
"""

from __future__ import annotations

import bisect
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from deploygate.policy import percentile
from deploygate.proxy import COLOR_HEADER

_ERROR_CHARS = 200


@dataclass(frozen=True)
class Sample:
    """One request a client sent and what came back."""

    ts: float  # time.time() when the request was sent
    client: int
    method: str
    path: str
    status: int  # 0: no HTTP answer (reset, closed, timed out)
    latency_ms: float
    color: str | None  # the proxy's X-Deploygate-Color header
    error: str | None  # one line, for status 0
    created_id: int | None = None  # the "id" a successful POST's JSON answer gave (a row that must survive)

    @property
    def answered(self) -> bool:
        return self.status != 0


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:_ERROR_CHARS]


class KeepAliveLoad:
    """``clients`` threads against ``base_url``, each holding one keep-alive connection.

    Client k sends GET ``get_path`` and, as its every ``post_every``-th request (0: never),
    POST ``post_path`` with ``post_body(k, n)`` as JSON (default ``{}``). The run stops by itself after
    ``max_requests`` requests in all or ``max_duration_s`` seconds, whichever comes first
    (both are required: every load loop here is bounded). ``timeout_s`` bounds connect and
    each read. Raises ``ValueError`` for an unusable URL, path or number.
    """

    def __init__(
        self,
        base_url: str,
        *,
        clients: int,
        max_requests: int,
        max_duration_s: float,
        get_path: str,
        post_path: str = "",
        post_every: int = 4,
        post_body: Callable[[int, int], dict] | None = None,
        pause_s: float = 0.0,
        timeout_s: float = 10.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"base_url must be http://host[:port], got {base_url!r}")
        for path in (get_path, post_path) if post_every else (get_path,):
            if not path.startswith("/") or path.startswith("//"):
                raise ValueError(f"paths must start with a single '/', got {path!r}")
        if clients < 1 or max_requests < 1 or max_duration_s <= 0 or timeout_s <= 0 or pause_s < 0 or post_every < 0:
            raise ValueError("clients, max_requests, max_duration_s, timeout_s must be positive; pause_s, post_every >= 0")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.clients = clients
        self.max_requests = max_requests
        self.max_duration_s = float(max_duration_s)
        self.post_every = post_every
        self.get_path = get_path
        self.post_path = post_path
        self.post_body = post_body or (lambda client, n: {})
        self.pause_s = pause_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self._budget = max_requests
        self._connections = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> KeepAliveLoad:
        """Start every client; returns self. Raises ``RuntimeError`` if already started."""
        if self._threads:
            raise RuntimeError("this KeepAliveLoad was already started; make a new one")
        deadline = time.monotonic() + self.max_duration_s
        # Daemon threads: a caller that forgets stop() must not keep the process alive (the deadline ends them anyway).
        self._threads = [
            threading.Thread(target=self._run, args=(k, deadline), name=f"loadgen-{k}", daemon=True) for k in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop the clients (each finishes the request it is in, ``timeout_s`` at most) and return every sample by ts."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 1.0)
        return self.samples()

    def wait(self) -> list[Sample]:
        """Wait for the run to end by itself (count or time bound), then return the samples."""
        for thread in self._threads:
            thread.join(timeout=self.max_duration_s + self.timeout_s + 1.0)
        return self.stop()

    def __enter__(self) -> KeepAliveLoad:
        if not self._threads:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def samples(self) -> list[Sample]:
        """A snapshot of the samples so far, sorted by ts."""
        with self._lock:
            snapshot = list(self._samples)
        return sorted(snapshot, key=lambda s: s.ts)

    @property
    def connections_opened(self) -> int:
        """TCP connections the clients opened: ``clients`` when the server never closed one."""
        with self._lock:
            return self._connections

    def _take_budget(self) -> bool:
        with self._lock:
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def _run(self, client: int, deadline: float) -> None:
        conn: http.client.HTTPConnection | None = None
        n = 0
        try:
            while not self._stopping.is_set() and time.monotonic() < deadline and self._take_budget():
                n += 1
                is_post = self.post_every and n % self.post_every == 0
                method, path = ("POST", self.post_path) if is_post else ("GET", self.get_path)
                body = json.dumps(self.post_body(client, n)).encode() if is_post else None
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
                    with self._lock:
                        self._connections += 1
                sample, keep = self._send(conn, client, method, path, body)
                with self._lock:
                    self._samples.append(sample)
                if not keep:
                    conn.close()
                    conn = None
                if self.pause_s:
                    self._stopping.wait(self.pause_s)
        finally:
            if conn is not None:
                conn.close()

    @staticmethod
    def _send(conn: http.client.HTTPConnection, client: int, method: str, path: str, body: bytes | None) -> tuple[Sample, bool]:
        """One request on ``conn``; returns its sample and whether the connection can carry the next one."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        ts = time.time()
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            payload = answer.read()
            latency_ms = (time.perf_counter() - started) * 1000.0
            created = _created_id(payload) if method == "POST" and 200 <= answer.status < 300 else None
            sample = Sample(ts, client, method, path, answer.status, latency_ms, answer.getheader(COLOR_HEADER), None, created)
            return sample, not answer.will_close
        except Exception as exc:  # noqa: BLE001 - any failure to get an answer is a status-0 sample, never a lost one
            latency_ms = (time.perf_counter() - started) * 1000.0
            return Sample(ts, client, method, path, 0, latency_ms, None, _one_line(exc)), False


def _created_id(payload: bytes) -> int | None:
    try:
        value = json.loads(payload).get("id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- pure helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowStats:
    """Samples of one kind of window: requests, failures and latency of the answered ones."""

    requests: int
    no_answer: int
    server_errors: int  # 5xx
    posts: int
    failed_posts: int  # POSTs with no answer or a 5xx
    p50_ms: float | None
    p99_ms: float | None
    colors: dict[str, int]

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def stats(samples: Iterable[Sample]) -> WindowStats:
    """Counts and latency percentiles of ``samples`` (latency over answered requests only)."""
    samples = list(samples)
    latencies = [s.latency_ms for s in samples if s.answered]
    colors: dict[str, int] = {}
    for s in samples:
        if s.color:
            colors[s.color] = colors.get(s.color, 0) + 1
    return WindowStats(
        requests=len(samples),
        no_answer=sum(not s.answered for s in samples),
        server_errors=sum(s.status >= 500 for s in samples),
        posts=sum(s.method == "POST" for s in samples),
        failed_posts=sum(s.method == "POST" and (not s.answered or s.status >= 500) for s in samples),
        p50_ms=percentile(latencies, 50) if latencies else None,
        p99_ms=percentile(latencies, 99) if latencies else None,
        colors=dict(sorted(colors.items())),
    )


def window_stats(samples: Iterable[Sample], instants: Sequence[float], *, half_window_s: float = 0.5) -> tuple[WindowStats, WindowStats]:
    """(around, outside): samples sent within ``half_window_s`` of any of ``instants``, and all the others."""
    marks = sorted(instants)
    around, outside = [], []
    for sample in samples:
        # The nearest instant is either side of the sample's place among the sorted instants.
        i = bisect.bisect_left(marks, sample.ts)
        near = any(abs(sample.ts - marks[j]) <= half_window_s for j in (i - 1, i) if 0 <= j < len(marks))
        (around if near else outside).append(sample)
    return stats(around), stats(outside)
