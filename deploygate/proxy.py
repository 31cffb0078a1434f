"""The nginx proxy in front of the app: its configuration, the graceful switch, its access log.

Configuration is rendered by a pure function and written into a directory bind-mounted
into the proxy container; switching colour is "write, ``nginx -t``, ``nginx -s reload``",
which lets old workers finish their in-flight requests. Every request is logged as one
JSON line naming the colour that served it, so errors can be counted per colour from
what users actually saw.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import docker

from deploygate.errors import StackError

CONFIG_DIR_IN_CONTAINER = "/etc/deploygate"
LOG_DIR_IN_CONTAINER = "/var/log/deploygate"
CONFIG_NAME = "nginx.conf"
ACCESS_LOG_NAME = "access.log"
LIVE_MARKER = "# deploygate-live:"
# The colour logged for requests the proxy answered itself during a maintenance hold.
HOLD_COLOR = "hold"

# One JSON object per request; msec (epoch seconds with ms) orders and windows records.
_LOG_FORMAT = (
    '{"ts":$msec,"color":"$deploygate_color","method":"$request_method","uri":"$request_uri",'
    '"status":$status,"request_time":$request_time,"upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","upstream_time":"$upstream_response_time"}'
)


@dataclass(frozen=True)
class Upstream:
    """The app container the proxy sends traffic to."""

    color: str
    host: str
    port: int
    release: str


def render_config(upstream: Upstream, *, hold_s: int | None = None) -> str:
    """nginx.conf routing all traffic to ``upstream`` and logging JSON lines tagged with its colour.

    With ``hold_s`` the proxy instead answers every request 503 with ``Retry-After: hold_s``
    (a maintenance hold, logged as colour "hold"), still recording ``upstream`` as the target.
    """
    if not upstream.color.isalnum():
        raise ValueError(f"colour must be alphanumeric, got {upstream.color!r}")
    marker = {"color": upstream.color, "host": upstream.host, "port": upstream.port, "release": upstream.release}
    if hold_s is not None:
        marker["hold"] = True
    logged_color = HOLD_COLOR if hold_s is not None else upstream.color
    serve = (
        f'add_header Retry-After {hold_s} always;\n            default_type application/json;\n'
        f'            return 503 \'{{"status": "maintenance", "retry_after": {hold_s}}}\';'
        if hold_s is not None
        else "proxy_pass http://app;"
    )
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
        server {upstream.host}:{upstream.port};
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
            add_header X-Deploygate-Color $deploygate_color always;
        }}
    }}
}}
"""


def live_upstream(config_text: str) -> Upstream | None:
    """The upstream recorded in a rendered config's first line, or None if it has no marker."""
    first = config_text.splitlines()[0] if config_text else ""
    if not first.startswith(LIVE_MARKER):
        return None
    data = json.loads(first[len(LIVE_MARKER) :])
    return Upstream(color=data["color"], host=data["host"], port=int(data["port"]), release=data.get("release", ""))


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

    def volumes(self) -> dict[str, dict[str, str]]:
        return {
            str(self.config_dir): {"bind": CONFIG_DIR_IN_CONTAINER, "mode": "ro"},
            str(self.log_dir): {"bind": LOG_DIR_IN_CONTAINER, "mode": "rw"},
        }

    def current(self) -> Upstream | None:
        """The upstream the written configuration routes to."""
        try:
            return live_upstream(self.config_file.read_text())
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


def command() -> list[str]:
    """The proxy container's command: nginx in the foreground on deploygate's config."""
    return ["nginx", "-c", f"{CONFIG_DIR_IN_CONTAINER}/{CONFIG_NAME}", "-g", "daemon off;"]


def reload(container: docker.models.containers.Container) -> None:
    """Test the written config, then reload gracefully. Raises ``StackError`` (config untouched in nginx) on failure."""
    conf = f"{CONFIG_DIR_IN_CONTAINER}/{CONFIG_NAME}"
    for argv in (["nginx", "-t", "-q", "-c", conf], ["nginx", "-s", "reload", "-c", conf]):
        code, output = container.exec_run(argv)
        if code != 0:
            text = output.decode(errors="replace").strip().splitlines()
            raise StackError(f"`{' '.join(argv)}` failed in {container.name}: {text[-1] if text else code}")


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


def switch(
    container: docker.models.containers.Container, paths: ProxyPaths, upstream: Upstream, *, hold_s: int | None = None
) -> None:
    """Route traffic to ``upstream`` (or hold it) with a graceful reload; on failure the previous config is put back."""
    previous = paths.config_file.read_text() if paths.config_file.exists() else None
    write_config(paths, upstream, hold_s=hold_s)
    try:
        reload(container)
    except StackError:
        if previous is not None:
            tmp = paths.config_dir / f".{CONFIG_NAME}.tmp"
            tmp.write_text(previous)
            os.replace(tmp, paths.config_file)
        raise
