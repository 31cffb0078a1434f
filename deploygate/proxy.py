"""The proxy in front of the app: one ``Proxy`` object owns its configuration, routing and access log.

``Proxy`` is the only place that knows how traffic is switched: ``route`` (to a colour),
``hold`` (the proxy answers 503 + Retry-After itself), ``current`` (read back from the
state on disk, never assumed) and ``verify`` (a request through it is answered by the
colour it should be). The mechanism today is nginx: configuration rendered by a pure
function into a directory bind-mounted into the proxy container, then "``nginx -t``,
``nginx -s reload``". Every request is logged as one JSON line naming the colour that
served it, so errors can be counted per colour from what users actually saw.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import requests

from deploygate.config import Settings
from deploygate.errors import StackError
from deploygate.waiting import wait_until

if TYPE_CHECKING:
    from deploygate.platform.base import Platform
    from deploygate.platform.images import Image

CONFIG_DIR_IN_CONTAINER = "/etc/deploygate"
LOG_DIR_IN_CONTAINER = "/var/log/deploygate"
CONFIG_NAME = "nginx.conf"
ACCESS_LOG_NAME = "access.log"
LIVE_MARKER = "# deploygate-live:"
# The colour logged for requests the proxy answered itself during a maintenance hold.
HOLD_COLOR = "hold"
# The response header naming the colour that answered (or HOLD_COLOR).
COLOR_HEADER = "X-Deploygate-Color"

# One JSON object per request; msec (epoch seconds with ms) orders and windows records.
_LOG_FORMAT = (
    '{"ts":$msec,"color":"$deploygate_color","method":"$request_method","uri":"$request_uri",'
    '"status":$status,"request_time":$request_time,"upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","upstream_time":"$upstream_response_time"}'
)


@dataclass(frozen=True)
class Route:
    """Where the proxy sends traffic: a colour (its release, for people), or a hold in front of it."""

    color: str
    release: str
    hold: bool = False


@dataclass(frozen=True)
class Upstream:
    """The app replicas (``host:port``) the proxy sends traffic to, and the route they serve."""

    color: str
    servers: tuple[str, ...]
    release: str


def render_config(upstream: Upstream, *, hold_s: int | None = None) -> str:
    """nginx.conf routing all traffic to ``upstream`` and logging JSON lines tagged with its colour.

    With ``hold_s`` the proxy instead answers every request 503 with ``Retry-After: hold_s``
    (a maintenance hold, logged as colour "hold"), still recording ``upstream`` as the target.
    """
    if not upstream.color.isalnum():
        raise ValueError(f"colour must be alphanumeric, got {upstream.color!r}")
    if not upstream.servers:
        raise ValueError(f"no server to route {upstream.color} to")
    marker = {"color": upstream.color, "servers": list(upstream.servers), "release": upstream.release}
    if hold_s is not None:
        marker["hold"] = True
    logged_color = HOLD_COLOR if hold_s is not None else upstream.color
    serve = (
        f'add_header Retry-After {hold_s} always;\n            default_type application/json;\n'
        f'            return 503 \'{{"status": "maintenance", "retry_after": {hold_s}}}\';'
        if hold_s is not None
        else "proxy_pass http://app;"
    )
    servers = "\n".join(f"        server {server};" for server in upstream.servers)
    return f"""{LIVE_MARKER} {json.dumps(marker)}
worker_processes 1;
error_log {LOG_DIR_IN_CONTAINER}/error.log warn;
pid /run/nginx.pid;
# Old workers get this long to finish in-flight requests after a reload or stop.
worker_shutdown_timeout 30s;

events {{
    worker_connections 1024;
}}

http {{
    log_format deploygate escape=json '{_LOG_FORMAT}';
    access_log {LOG_DIR_IN_CONTAINER}/{ACCESS_LOG_NAME} deploygate;

    map $host $deploygate_color {{
        default "{logged_color}";
    }}

    upstream app {{
{servers}
        keepalive 16;
    }}

    server {{
        listen 80;
        client_max_body_size 1m;

        location = /__proxy/health {{
            access_log off;
            default_type text/plain;
            return 200 "ok {upstream.color}\\n";
        }}

        location / {{
            {serve}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            add_header {COLOR_HEADER} $deploygate_color always;
        }}
    }}
}}
"""


def live_route(config_text: str) -> Route | None:
    """The route recorded in a rendered config's first line, or None if it has no marker."""
    first = config_text.splitlines()[0] if config_text else ""
    if not first.startswith(LIVE_MARKER):
        return None
    data = json.loads(first[len(LIVE_MARKER) :])
    return Route(color=data["color"], release=data.get("release", ""), hold=bool(data.get("hold")))


@dataclass(frozen=True)
class ProxyPaths:
    """Host directories bind-mounted into the proxy container."""

    config_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def access_log(self) -> Path:
        return self.log_dir / ACCESS_LOG_NAME

    def mounts(self) -> dict[str, str]:
        return {str(self.config_dir): CONFIG_DIR_IN_CONTAINER, str(self.log_dir): LOG_DIR_IN_CONTAINER}

    def current(self) -> Route | None:
        """The route the written configuration says."""
        try:
            return live_route(self.config_file.read_text())
        except FileNotFoundError:
            return None


def write_config(paths: ProxyPaths, upstream: Upstream, *, hold_s: int | None = None) -> Path:
    """Write the config atomically; the directory (not the file) is mounted, so the rename is seen."""
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.config_dir / f".{CONFIG_NAME}.tmp"
    tmp.write_text(render_config(upstream, hold_s=hold_s))
    os.replace(tmp, paths.config_file)
    return paths.config_file


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


# --- the Proxy object ----------------------------------------------------------------------------


def command() -> list[str]:
    """The proxy container's command: nginx in the foreground on deploygate's config."""
    return ["nginx", "-c", f"{CONFIG_DIR_IN_CONTAINER}/{CONFIG_NAME}", "-g", "daemon off;"]


class Proxy:
    """The proxy of one production: ``route``, ``hold``, ``current``, ``verify``; its access log and URL.

    Raises ``StackError`` when a switch cannot be applied (the previous configuration is then
    put back, so the proxy keeps routing as before).
    """

    def __init__(self, settings: Settings, platform: Platform) -> None:
        self.settings = settings
        self.platform = platform
        base = settings.path(settings.state_dir) / settings.project / "proxy"
        self.paths = ProxyPaths(config_dir=base / "conf", log_dir=base / "logs")

    @property
    def url(self) -> str:
        """The proxy's published address: what users reach."""
        return f"http://{self.settings.proxy_bind}:{self.settings.proxy_port}"

    @property
    def access_log(self) -> Path:
        return self.paths.access_log

    def records(self, since: float | None = None) -> Iterator[AccessRecord]:
        """What users saw: one record per request, optionally only those at or after ``since``."""
        return read_access_log(self.paths.access_log, since=since)

    def current(self) -> Route | None:
        """Where traffic goes now, read from the proxy's state on disk (None: it routes nowhere yet)."""
        return self.paths.current()

    def ensure(self, image: Image, route: Route) -> list[str]:
        """The proxy runs and serves (routing to ``route`` when it has no state yet); returns what changed."""
        changes = []
        if self.current() is None:
            write_config(self.paths, self._upstream(route))
            changes.append(f"wrote proxy config routing to {route.color}")
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        changes += self.platform.ensure_proxy(image, command(), self.paths.mounts(), writable=[str(self.paths.log_dir)])
        wait_until(self._serves, timeout=30, interval=0.5, what=f"{self.url}{self.settings.health_path} to answer 2xx")
        return changes

    def _serves(self) -> bool:
        return requests.get(f"{self.url}{self.settings.health_path}", timeout=5).ok

    def forget(self) -> list[str]:
        """Drop the routing state (production was removed): the next ``ensure`` starts afresh."""
        if self.paths.config_file.exists():
            self.paths.config_file.unlink()
            return [f"proxy config {self.paths.config_file}"]
        return []

    def route(self, color: str, release: str) -> None:
        """Send every new request to ``color``; in-flight requests finish where they started."""
        self._apply(Route(color=color, release=release))

    def hold(self, color: str, release: str) -> None:
        """Answer every request 503 + Retry-After from the proxy itself (``color`` stays the target)."""
        self._apply(Route(color=color, release=release, hold=True))

    def verify(self, color: str) -> None:
        """A request through the proxy is answered 2xx by ``color``; raises ``StackError`` otherwise."""
        try:
            answer = requests.get(f"{self.url}{self.settings.health_path}", timeout=10)
        except requests.RequestException as exc:
            raise StackError(f"the proxy at {self.url} does not answer: {type(exc).__name__}") from None
        served_by = answer.headers.get(COLOR_HEADER)
        if not answer.ok or served_by != color:
            raise StackError(f"through the proxy {self.settings.health_path} answers {answer.status_code} from {served_by}, expected {color}")

    def _upstream(self, route: Route) -> Upstream:
        return Upstream(color=route.color, servers=tuple(self.platform.upstreams(route.color)), release=route.release)

    def _apply(self, route: Route) -> None:
        previous = self.paths.config_file.read_text() if self.paths.config_file.exists() else None
        write_config(self.paths, self._upstream(route), hold_s=self.settings.hold_retry_after_s if route.hold else None)
        try:
            self._reload()
        except StackError:
            if previous is not None:
                tmp = self.paths.config_dir / f".{CONFIG_NAME}.tmp"
                tmp.write_text(previous)
                os.replace(tmp, self.paths.config_file)
            raise

    def _reload(self) -> None:
        """Test the written config, then reload gracefully (old workers finish their requests)."""
        conf = f"{CONFIG_DIR_IN_CONTAINER}/{CONFIG_NAME}"
        for argv in (["nginx", "-t", "-q", "-c", conf], ["nginx", "-s", "reload", "-c", conf]):
            code, output = self.platform.proxy_exec(argv)
            if code != 0:
                text = output.strip().splitlines()
                raise StackError(f"`{' '.join(argv)}` failed in the proxy: {text[-1] if text else code}")
