"""The proxy in front of the app: one ``Proxy`` object owns its routing, its state and its access log.

``Proxy`` is the only place that knows how traffic is switched: ``route`` (to a colour),
``hold`` (the proxy answers 503 + Retry-After itself), ``current`` (read back from the
state on disk, never assumed) and ``verify`` (a request through it is answered by the
colour it should be). The mechanism is HAProxy (``deploygate.haproxy``): both colours
are declared once, and a switch is a runtime API command, never a reload or a restart,
so no client connection is closed. The state file says which colour serves; a proxy
container that restarts reads it and routes as before. Every request is logged as one
JSON line naming the colour that served it, so errors can be counted per colour from
what users actually saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import requests

from deploygate import haproxy
from deploygate.config import Settings
from deploygate.errors import StackError
from deploygate.log import quiet
from deploygate.platform.base import COLOURS
from deploygate.waiting import wait_until

if TYPE_CHECKING:
    from deploygate.platform.base import Platform
    from deploygate.platform.images import Image

# The colour logged (and sent in COLOR_HEADER) for requests the proxy answered itself during a hold.
HOLD_COLOR = haproxy.HOLD
# The response header naming the colour that answered (or HOLD_COLOR).
COLOR_HEADER = haproxy.COLOR_HEADER


@dataclass(frozen=True)
class Route:
    """Where the proxy sends traffic: a colour (its release, for people), or a hold in front of it."""

    color: str
    release: str
    hold: bool = False


@dataclass(frozen=True)
class AccessRecord:
    """One request as the proxy saw it."""

    ts: float
    color: str
    method: str
    uri: str
    status: int
    request_time: float


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


class Proxy:
    """The proxy of one production: ``route``, ``hold``, ``current``, ``verify``; its access log and URL.

    Every change is written to the state on disk first, then applied to the running
    proxy; a proxy found stopped is started again (it reads the state as it starts).
    Raises ``ProxyError`` when a change cannot be applied.
    """

    def __init__(self, settings: Settings, platform: Platform) -> None:
        self.settings = settings
        self.platform = platform
        self.dirs = haproxy.ProxyDirs(settings.path(settings.state_dir) / settings.project / "proxy")

    @property
    def url(self) -> str:
        """The proxy's published address: what users reach."""
        return f"http://{self.settings.proxy_bind}:{self.settings.proxy_port}"

    @property
    def access_log(self) -> Path:
        return self.dirs.access_log

    def records(self, since: float | None = None) -> Iterator[AccessRecord]:
        """What users saw: one record per request, optionally only those at or after ``since``."""
        return read_access_log(self.dirs.access_log, since=since)

    def current(self) -> Route | None:
        """Where traffic goes now, read from the proxy's state on disk (None: it routes nowhere yet)."""
        state = haproxy.current(self.dirs)
        if state is None:
            return None
        colour = self.platform.colour(state.color)
        return Route(color=state.color, release=colour.release if colour else "", hold=state.held)

    def ensure(self, image: Image, route: Route) -> list[str]:
        """The proxy runs and serves (routing to ``route`` when it has no state yet); returns what changed."""
        changes = []
        if haproxy.current(self.dirs) is None:
            changes.append(f"proxy routing to {route.color}")
        haproxy.prepare(self.dirs, {c: self.platform.upstreams(c) for c in COLOURS}, route.color)
        changes += self._start(image)
        wait_until(self._serves, timeout=30, interval=0.5, what=f"{self.url}{self.settings.health_path} to answer 2xx")
        return changes

    def _start(self, image: Image) -> list[str]:
        changes = self.platform.ensure_proxy(
            image, haproxy.command(), self.dirs.mounts(), self.dirs.writable,
            user=haproxy.container_user(), port_in_container=haproxy.HTTP_PORT,
        )  # fmt: skip
        haproxy.wait_answering(self.dirs)
        # A proxy that was down while a change was written starts with it; one that ran needs it applied.
        haproxy.reapply(self.dirs)
        return changes

    def _serves(self) -> bool:
        return requests.get(f"{self.url}{self.settings.health_path}", timeout=5).ok

    def forget(self) -> list[str]:
        """Drop the routing state (production was removed): the next ``ensure`` starts afresh."""
        if self.dirs.state_file.exists():
            self.dirs.state_file.unlink()
            return [f"proxy state {self.dirs.state_file}"]
        return []

    def route(self, color: str, release: str) -> None:
        """Send every new request to ``color`` (ending a hold); in-flight requests finish where they started."""
        self._change(lambda: haproxy.route(self.dirs, color))
        if haproxy.current(self.dirs).held:
            self._change(lambda: haproxy.release_hold(self.dirs))

    def hold(self, color: str, release: str) -> None:
        """Answer every request 503 + Retry-After from the proxy itself, with ``color`` the target behind the hold."""
        self._change(lambda: haproxy.hold(self.dirs, self.settings.hold_retry_after_s))
        if haproxy.current(self.dirs).color != color:
            self._change(lambda: haproxy.route(self.dirs, color))

    def _change(self, change: Callable[[], object]) -> None:
        """Apply ``change``; a proxy found stopped (killed, its engine restarted) is started first.

        Started, it routes as the state on disk says; the change is then applied to it.
        """
        if not self.platform.proxy_running():
            self._start(self.platform.service_image("proxy", quiet))
        change()

    def verify(self, color: str) -> None:
        """A request through the proxy is answered 2xx by ``color``; raises ``StackError`` otherwise."""
        try:
            answer = requests.get(f"{self.url}{self.settings.health_path}", timeout=10)
        except requests.RequestException as exc:
            raise StackError(f"the proxy at {self.url} does not answer: {type(exc).__name__}") from None
        served_by = answer.headers.get(COLOR_HEADER)
        if not answer.ok or served_by != color:
            raise StackError(f"through the proxy {self.settings.health_path} answers {answer.status_code} from {served_by}, expected {color}")
