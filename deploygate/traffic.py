"""The traffic probe: steady reads and writes through the proxy for the whole deploy.

Every request is recorded as a ``Response``, which is the evidence for "zero
downtime": a deploy that dropped or failed requests shows it here, per color and
per stage. The probe is open-loop (requests go out on a fixed schedule however slow
the answers are), so a stalled server shows up as timeouts rather than as a probe
that quietly slowed down with it.

``traffic_stats`` turns the recorded responses into numbers for the deploy report.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from deploygate.config import Settings
from deploygate.proxy import COLOR_HEADER, HOLD_COLOR

ID_PLACEHOLDER = "{id}"
_ERROR_CHARS = 200


@dataclass(frozen=True)
class Response:
    """One request the probe sent and what came back."""

    ts: float  # time.time() when the request was sent
    method: str
    path: str
    status: int  # 0 when no HTTP response came back (connection refused, reset, timeout)
    latency_ms: float
    color: str | None  # the proxy's X-Deploygate-Color response header
    created_id: int | None  # for a successful write: the "id" of the JSON body
    error: str | None  # one line, for status 0

    @property
    def ok(self) -> bool:
        """A 2xx or 3xx answer (redirects are not followed, so they are answers too)."""
        return 200 <= self.status < 400

    @property
    def held(self) -> bool:
        """Answered 503 + Retry-After by an accepted maintenance hold (color "hold"): announced, not a failure."""
        return self.status == 503 and self.color == HOLD_COLOR

    @property
    def failed(self) -> bool:
        """No answer at all, or a server error that was no hold's answer: what a user would call downtime."""
        return (self.status == 0 or self.status >= 500) and not self.held


def body_template(template: str) -> Callable[[int], dict]:
    """``write_body`` from a JSON text in which ``{n}`` stands for the write's number (1, 2, ...).

    Raises ``ValueError`` when the template is not JSON once ``{n}`` is filled in.
    """
    json.loads(template.replace("{n}", "0"))

    def body(n: int) -> dict:
        return json.loads(template.replace("{n}", str(n)))

    return body


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:_ERROR_CHARS]


def configured_probe(settings: Settings, base_url: str) -> TrafficProbe:
    """The traffic probe ``settings`` describe (rate, read paths, write path and body), not started."""
    return TrafficProbe(
        base_url,
        rate_per_s=float(settings.traffic_rate),
        read_paths=[p.strip() for p in settings.traffic_read_paths.split(",") if p.strip()],
        write_path=settings.traffic_write_path,
        write_every=5 if settings.traffic_write_path else 0,
        write_body=body_template(settings.traffic_write_body),
    )


class TrafficProbe:
    """Steady traffic against one base URL, every response recorded.

    ``rate_per_s`` requests a second are scheduled from ``start()``; every
    ``write_every``-th one is a POST of ``write_body(k)`` to ``write_path``
    (k = 1, 2, ... counts writes), the others GET ``read_paths`` round-robin. By
    default it only reads "/": writes are the app's own, none unless given. A read path containing ``"{id}"`` gets the newest id a write
    created; until one exists that path is skipped (and if every read path needs an
    id, the slot becomes a write so that one soon exists).

    Paths must be relative to ``base_url`` (start with "/"); redirects are not
    followed and environment proxies are ignored, so nothing is ever sent anywhere
    but ``base_url``. The probe stops by itself after ``max_duration_s``.

    Raises ``ValueError`` for an unusable URL, path or number.
    """

    def __init__(
        self,
        base_url: str,
        *,
        rate_per_s: float = 25.0,
        write_every: int = 0,
        read_paths: Sequence[str] = ("/",),
        write_path: str = "",
        write_body: Callable[[int], dict] | None = None,
        workers: int = 8,
        timeout_s: float = 5.0,
        max_duration_s: float = 3600.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
        for path in (*read_paths, write_path) if write_every else read_paths:
            if not path.startswith("/") or path.startswith("//"):
                raise ValueError(f"probe paths must start with a single '/', got {path!r}")
        if rate_per_s <= 0 or workers < 1 or timeout_s <= 0 or max_duration_s <= 0:
            raise ValueError("rate_per_s, workers, timeout_s and max_duration_s must be positive")
        if write_every < 0:
            raise ValueError(f"write_every must be 0 (no writes) or positive, got {write_every}")
        if write_every != 1 and not read_paths:
            raise ValueError("read_paths is empty but some requests are reads")
        if write_every == 0 and read_paths and all(ID_PLACEHOLDER in p for p in read_paths):
            raise ValueError("every read path needs a created id, but writes are disabled")
        self.base_url = base_url.rstrip("/")
        self.rate_per_s = float(rate_per_s)
        self.write_every = write_every
        self.read_paths = tuple(read_paths)
        self.write_path = write_path
        self.write_body = write_body or (lambda n: {})
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.max_duration_s = float(max_duration_s)

        self._lock = threading.Lock()
        self._responses: list[Response] = []
        self._created: list[int] = []
        self._newest_id: int | None = None
        self._in_flight = 0
        self._skipped = 0
        self._sessions: list[requests.Session] = []
        self._local = threading.local()
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._read_index = 0
        self._writes = 0

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> TrafficProbe:
        """Start sending; returns the probe so ``with TrafficProbe(url).start() as p:`` reads well.

        Raises ``RuntimeError`` if it was already started.
        """
        if self._scheduler is not None:
            raise RuntimeError("this TrafficProbe was already started; make a new one")
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="traffic-probe")
        # A daemon thread: a caller that forgets stop() must not keep the process alive
        # (max_duration_s ends it anyway).
        self._scheduler = threading.Thread(target=self._schedule, name="traffic-probe-scheduler", daemon=True)
        self._scheduler.start()
        return self

    def stop(self) -> list[Response]:
        """Stop scheduling, wait for in-flight requests (about ``timeout_s`` at most), return all responses by ts.

        Requests scheduled but not yet sent are dropped, not recorded. Safe to call
        more than once, and after the probe stopped by itself.
        """
        self._stopping.set()
        if self._scheduler is not None:
            # requests' timeout bounds connect and each read, so one more second covers the rest.
            self._scheduler.join(timeout=self.timeout_s + 1.0)
        return self.responses()

    def __enter__(self) -> TrafficProbe:
        if self._scheduler is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether requests are still being scheduled or are in flight."""
        return self._scheduler is not None and not self._done.is_set()

    @property
    def skipped(self) -> int:
        """Slots not sent because every worker was busy and the queue was full.

        Non-zero means the probe, not the server, limited the rate: raise ``workers``.
        """
        with self._lock:
            return self._skipped

    def responses(self) -> list[Response]:
        """A snapshot of the responses recorded so far, sorted by ts."""
        with self._lock:
            snapshot = list(self._responses)
        return sorted(snapshot, key=lambda r: r.ts)

    def created_ids(self) -> list[int]:
        """Ids returned by successful writes, in the order they came back."""
        with self._lock:
            return list(self._created)

    # -- scheduling -----------------------------------------------------------

    def _schedule(self) -> None:
        assert self._executor is not None
        started = time.monotonic()
        deadline = started + self.max_duration_s
        # Queued work is bounded so a slow server cannot pile up an hour of stale
        # requests that would all fire at once when it recovers.
        backlog_limit = 2 * self.workers
        n = 0
        try:
            while True:
                # Due times come from the start, not from the previous send: a late
                # tick is caught up, never pushes the schedule back (open loop).
                due = started + n / self.rate_per_s
                if due >= deadline:
                    break
                if self._stopping.wait(max(0.0, due - time.monotonic())):
                    break
                n += 1
                method, path, body = self._next_request(n)
                with self._lock:
                    if self._in_flight >= backlog_limit:
                        self._skipped += 1
                        continue
                    self._in_flight += 1
                self._executor.submit(self._send, method, path, body)
        finally:
            # cancel_futures drops queued requests; the ones already sent finish
            # within their timeout and are recorded.
            self._executor.shutdown(wait=True, cancel_futures=True)
            with self._lock:
                sessions, self._sessions = self._sessions, []
            for session in sessions:
                session.close()
            self._done.set()

    def _next_request(self, n: int) -> tuple[str, str, dict | None]:
        """The n-th request (1-based): method, path, JSON body."""
        if not (self.write_every and n % self.write_every == 0):
            path = self._next_read_path()
            if path is not None:
                return "GET", path, None
        self._writes += 1
        return "POST", self.write_path, self.write_body(self._writes)

    def _next_read_path(self) -> str | None:
        with self._lock:
            newest = self._newest_id
        for _ in range(len(self.read_paths)):
            path = self.read_paths[self._read_index % len(self.read_paths)]
            self._read_index += 1
            if ID_PLACEHOLDER not in path:
                return path
            if newest is not None:
                return path.replace(ID_PLACEHOLDER, str(newest))
        return None

    # -- sending --------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # HTTP(S)_PROXY from the environment would send local probe traffic elsewhere.
            session.trust_env = False
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _send(self, method: str, path: str, body: dict | None) -> None:
        ts = time.time()
        started = time.perf_counter()
        status, color, created_id, error = 0, None, None, None
        try:
            # Sent once, never again: a request the proxy drops must show as a failure.
            answer = self._session().request(method, self.base_url + path, json=body, timeout=self.timeout_s, allow_redirects=False)
            status = answer.status_code
            color = answer.headers.get(COLOR_HEADER)
            if method == "POST" and 200 <= status < 300:
                created_id = _id_of(answer)
        except Exception as exc:  # noqa: BLE001 - any failure to get an answer is a status-0 record, never a lost one
            error = _one_line(exc)
        latency_ms = (time.perf_counter() - started) * 1000.0
        record = Response(ts, method, path, status, latency_ms, color, created_id, error)
        with self._lock:
            self._responses.append(record)
            self._in_flight -= 1
            if created_id is not None:
                self._created.append(created_id)
                self._newest_id = created_id


def _id_of(answer: requests.Response) -> int | None:
    try:
        value = answer.json().get("id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
