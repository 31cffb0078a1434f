"""The proxy in front of the app: one ``Proxy`` object owns its routing, its state and its access log.

``Proxy`` is the only place that knows how traffic is switched: ``route`` (to a color),
``hold`` (the proxy answers 503 + Retry-After itself), ``current`` (read back from the
state on disk, never assumed) and ``verify`` (a request through it is answered by the
color it should be). The mechanism is HAProxy (``deploygate.haproxy``): both colors
are declared once, and a switch is a runtime API command, never a reload or a restart,
so no client connection is closed. The state file says which color serves; a proxy
container that restarts reads it and routes as before. Every request is logged as one
JSON line naming the color that served it, so errors can be counted per color from
what users actually saw.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from deploygate import haproxy
from deploygate.config import Settings
from deploygate.errors import ProxyError, StackError
from deploygate.log import quiet
from deploygate.platform.base import COLORS, INSTANCE
from deploygate.waiting import wait_until

if TYPE_CHECKING:
    from deploygate.platform.base import Platform
    from deploygate.platform.images import Image

# The color logged (and sent in COLOR_HEADER) for requests the proxy answered itself during a hold.
HOLD_COLOR = haproxy.HOLD
# The response header naming the color that answered (or HOLD_COLOR).
COLOR_HEADER = haproxy.COLOR_HEADER


@dataclass(frozen=True)
class Route:
    """Where the proxy sends traffic: a color (its release, for people), or a hold in front of it."""

    color: str
    release: str
    hold: bool = False


@dataclass(frozen=True)
class AccessRecord:
    """One request as the proxy saw it; what the traffic recording keeps of it defaults to nothing
    (lines logged before the proxy recorded them, and nginx's)."""

    ts: float
    color: str
    method: str
    uri: str
    status: int
    request_time: float
    ctype: str = ""  # the request's Content-Type
    accept: str = ""
    body: bytes = b""  # a write's body as logged (secrets redacted); b"" when it was not captured
    bsize: int = 0  # the body's size as sent (Content-Length), captured or not


def _logged(data: dict, key: str) -> str:
    """A text value of the log line; HAProxy writes "-" for one it does not have."""
    value = str(data.get(key, ""))
    return "" if value == "-" else value


def _body(data: dict) -> bytes:
    """The logged body; b"" when it is not valid base64 (the request still counts, its body is just not kept)."""
    try:
        return base64.b64decode(_logged(data, "body"), validate=True)
    except ValueError:  # binascii.Error
        return b""


def parse_access_line(line: str) -> AccessRecord | None:
    """An ``AccessRecord`` from one JSON log line; None for a blank or foreign line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
        return AccessRecord(
            ts=float(data["ts"]),
            color=str(data["color"]),
            method=str(data["method"]),
            uri=str(data["uri"]),
            status=int(data["status"]),
            request_time=float(data["request_time"]),
            ctype=_logged(data, "ctype"),
            accept=_logged(data, "accept"),
            body=_body(data),
            bsize=int(data.get("bsize") or 0),
        )
    except (ValueError, KeyError, TypeError):
        return None


def read_access_log(path: Path, *, since: float | None = None) -> Iterator[AccessRecord]:
    """Records of the access log at ``path`` (optionally only those at or after ``since``)."""
    try:
        handle = path.open(errors="replace")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            record = parse_access_line(line)
            if record is not None and (since is None or record.ts >= since):
                yield record


@dataclass(frozen=True)
class ProxyCount:
    """A color's requests and 5xx as HAProxy's own counters have them (runtime API, every proxy summed), and
    the log lines the proxies dropped: counters never lose a request, a log under pressure can."""

    requests: int
    errors: int
    dropped_logs: int = 0

    def since(self, earlier: ProxyCount) -> ProxyCount | None:
        """What was counted after ``earlier``; None when a counter went back (a proxy restarted: no delta)."""
        delta = ProxyCount(self.requests - earlier.requests, self.errors - earlier.errors, self.dropped_logs - earlier.dropped_logs)
        return None if min(delta.requests, delta.errors, delta.dropped_logs) < 0 else delta


class Proxy:
    """The proxy of one production: ``route``, ``hold``, ``current``, ``verify``; its access log and URLs.

    One proxy per node of the platform (one on a single host): each has its own directories
    (``<state_dir>/<project>/proxy[/<node>]``) with the configuration, the routing state, the
    runtime socket and the access log. Every change is written to each state file first,
    then applied to each running proxy; a proxy found stopped is started again (it reads its
    state as it starts), and one whose node is down keeps the change on disk for its return.
    Raises ``ProxyError`` when a change cannot be applied to any running proxy.
    """

    def __init__(self, settings: Settings, platform: Platform) -> None:
        self.settings = settings
        self.platform = platform
        base = settings.path(settings.state_dir) / settings.project / "proxy"
        self.base = base
        self.instances = {name: haproxy.ProxyDirs(base / name) for name in platform.proxy_instances()}

    @property
    def urls(self) -> list[str]:
        """Every proxy's published address: where users' requests arrive."""
        return self.platform.proxy_urls()

    @property
    def url(self) -> str:
        return self.urls[0]

    def serving_urls(self) -> list[str]:
        """The addresses of the proxies that run now (a proxy whose node is down serves nobody)."""
        return [url for name, url in zip(self.instances, self.urls, strict=False) if self.platform.proxy_running(name)]

    @property
    def _first(self) -> haproxy.ProxyDirs:
        return next(iter(self.instances.values()))

    @property
    def access_logs(self) -> list[Path]:
        return [dirs.access_log for dirs in self.instances.values()]

    def records(self, since: float | None = None) -> Iterator[AccessRecord]:
        """What users saw, through every proxy: one record per request, optionally only those at or after ``since``."""
        for log in self.access_logs:
            yield from read_access_log(log, since=since)

    def counts(self, color: str) -> ProxyCount | None:
        """``color``'s requests and 5xx by every proxy's own counters, summed; None when one cannot be asked
        (stopped, its node down): a partial sum would read as requests lost from the log."""
        total = ProxyCount(0, 0, 0)
        for dirs in self.instances.values():
            try:
                requests_, errors, dropped = haproxy.backend_counts(dirs, color)
            except (ProxyError, OSError):
                return None
            total = ProxyCount(total.requests + requests_, total.errors + errors, total.dropped_logs + dropped)
        return total

    def current(self) -> Route | None:
        """Where traffic goes now, read from the proxy's state on disk (None: it routes nowhere yet)."""
        state = haproxy.current(self._first)
        if state is None:
            return None
        color = self.platform.color(state.color)
        return Route(color=state.color, release=color.release if color else "", hold=state.held)

    def ensure(self, image: Image, route: Route) -> list[str]:
        """The proxies run and serve (routing to ``route`` when they have no state yet); returns what changed."""
        changes = [] if haproxy.current(self._first) is not None else [f"proxy routing to {route.color}"]
        backends = {c: self.platform.upstreams(c) for c in COLORS}
        # What each request's log line records for the replay sample (deploygate.recording).
        body_bytes = self.settings.replay_body_bytes if self.settings.replay_record else 0
        for dirs in self.instances.values():
            haproxy.prepare(dirs, backends, route.color, record_body_bytes=body_bytes, redact_fields=self.settings.replay_redact_fields)
        changes += self._start(image)
        for url in self.urls:
            wait_until(
                lambda url=url: requests.get(f"{url}{self.settings.health_path}", timeout=5).ok,
                timeout=30,
                interval=0.5,
                what=f"{url}{self.settings.health_path} to answer 2xx",
            )
        return changes

    def _start(self, image: Image) -> list[str]:
        template = haproxy.ProxyDirs(self.base / INSTANCE)
        changes = self.platform.ensure_proxy(
            image,
            haproxy.command(),
            template.mounts(),
            template.writable,
            user=haproxy.container_user(),
            port_in_container=haproxy.HTTP_PORT,
        )
        for name, dirs in self.instances.items():
            if self.platform.proxy_running(name):
                haproxy.wait_answering(dirs)
                # A proxy that was down while a change was written starts with it; one that ran needs it applied.
                haproxy.reapply(dirs)
        return changes

    def forget(self) -> list[str]:
        """Drop the routing state (production was removed): the next ``ensure`` starts afresh."""
        removed = []
        for dirs in self.instances.values():
            if dirs.state_file.exists():
                dirs.state_file.unlink()
                removed.append(f"proxy state {dirs.state_file}")
        return removed

    def route(self, color: str, *, fresh: bool = False) -> None:
        """Send every new request to ``color`` (ending a hold); in-flight requests finish where they started.

        ``fresh``: ``color`` was just started again: only a health check made now lets requests go there.
        """
        self._change(lambda dirs: haproxy.route(dirs, color, fresh=fresh), haproxy.RoutingState(color))
        if haproxy.current(self._first).held:
            self._change(haproxy.release_hold, haproxy.RoutingState(color))

    def hold(self, color: str) -> None:
        """Answer every request 503 + Retry-After from the proxy itself, with ``color`` the target behind the hold."""
        held = haproxy.RoutingState(color, self.settings.hold_retry_after_s)
        self._change(lambda dirs: haproxy.hold(dirs, self.settings.hold_retry_after_s), held)
        if haproxy.current(self._first).color != color:
            self._change(lambda dirs: haproxy.route(dirs, color), held)

    def _change(self, change: Callable[[haproxy.ProxyDirs], object], intended: haproxy.RoutingState) -> None:
        """Apply ``change`` to every proxy; ``intended`` is what a proxy that cannot take it now finds on disk.

        A stopped proxy (killed, its engine restarted) is started first; a proxy whose node is
        down gets the state written for its return. Raises ``ProxyError`` when no proxy took it.
        """
        if not all(self.platform.proxy_running(name) for name in self.instances):
            self._start(self.platform.service_image("proxy", quiet))
        applied = 0
        for name, dirs in self.instances.items():
            if self.platform.proxy_running(name):
                change(dirs)
                applied += 1
            else:
                haproxy.write_state(dirs, intended)
        if not applied:
            raise ProxyError(f"no proxy runs to take the change (written to {self.base} for their return)")

    def verify(self, color: str) -> None:
        """A request through every running proxy is answered 2xx by ``color``; raises ``StackError`` otherwise."""
        urls = self.serving_urls()
        if not urls:
            raise StackError(f"no proxy runs: {', '.join(self.urls)} are all down")
        for url in urls:
            try:
                answer = requests.get(f"{url}{self.settings.health_path}", timeout=10)
            except requests.RequestException as exc:
                raise StackError(f"the proxy at {url} does not answer: {type(exc).__name__}") from None
            served_by = answer.headers.get(COLOR_HEADER)
            if not answer.ok or served_by != color:
                raise StackError(
                    f"through {url} {self.settings.health_path} answers {answer.status_code} from {served_by}, expected {color}"
                )
