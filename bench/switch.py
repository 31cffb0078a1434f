"""The switch benchmark: what a color switch costs keep-alive clients, old mechanism against new, in one run.

One bench production (project ``dgswitch``: Postgres, the app as blue, the same release
as green) gets two proxies in front of it: nginx switched by a graceful reload per
switch, as deploygate did until HAProxy (the baseline, kept only here), and HAProxy
switched through its runtime API (``deploygate.haproxy.route``; ``nox -s bench -- switch``). For each proxy and each
client count, keep-alive clients (1 request in 4 a POST, nothing retried) run while the
proxy switches color ``switches`` times; requests sent within half a second of a switch
are "around", the others "outside". The goal of the new mechanism: no request without
an answer, no 5xx, and p99 around the switches at most twice p99 outside.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import settings as bench_settings
from bench.loadgen import KeepAliveLoad, WindowStats, window_stats
from bench.settings import free_port
from deploygate import config, haproxy, production
from deploygate.errors import StackError
from deploygate.log import Say, quiet
from deploygate.platform import COLORS, connect
from deploygate.platform.docker_host import DockerHost
from deploygate.platform.sidecar import Sidecar, run_sidecar
from deploygate.platform.sidecar import image as sidecar_image
from deploygate.proxy import read_access_log
from deploygate.traffic import body_template
from deploygate.waiting import wait_until

SWITCH_PROJECT = "dgswitch"
HALF_WINDOW_S = 0.5
P99_RATIO_GOAL = 2.0
NGINX = "nginx reload"
HAPROXY = "haproxy runtime API"


# --- the old mechanism: nginx, one graceful reload per switch (deploygate's proxy before HAProxy) --------

_NGINX_CONF_DIR = "/etc/deploygate"
_NGINX_LOG_DIR = "/var/log/deploygate"


def render_nginx(upstream_host: str, port: int, color: str) -> str:
    """nginx.conf routing to ``upstream_host:port`` as deploygate's nginx proxy did (same keep-alive and shutdown settings)."""
    return f"""worker_processes 1;
error_log {_NGINX_LOG_DIR}/error.log warn;
pid /run/nginx.pid;
worker_shutdown_timeout 30s;
events {{
    worker_connections 1024;
}}
http {{
    log_format deploygate escape=json '{{"ts":$msec,"color":"{color}","method":"$request_method","uri":"$request_uri",'
        '"status":$status,"request_time":$request_time}}';
    access_log {_NGINX_LOG_DIR}/access.log deploygate;
    upstream app {{
        server {upstream_host}:{port};
        keepalive 16;
    }}
    server {{
        listen 80;
        client_max_body_size 1m;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            add_header X-Deploygate-Color {color} always;
        }}
    }}
}}
"""


class NginxBaseline:
    """nginx in front of both colors, switched by write + ``nginx -t`` + ``nginx -s reload``."""

    name = NGINX

    def __init__(self, host: DockerHost, root: Path, upstreams: dict[str, str], port: int, say: Say) -> None:
        self.conf_dir, self.log_dir = root / "conf", root / "logs"
        self.conf_dir.mkdir(parents=True)
        self.log_dir.mkdir(parents=True)
        self.upstreams = upstreams
        self._write(COLORS[0])
        command = ["nginx", "-c", f"{_NGINX_CONF_DIR}/nginx.conf", "-g", "daemon off;"]
        mounts = {str(self.conf_dir): _NGINX_CONF_DIR, str(self.log_dir): _NGINX_LOG_DIR}
        image = sidecar_image(host, "nginx", say)
        self.sidecar: Sidecar = run_sidecar(
            host, "bench_nginx", image, command, port_inside=80, host_port=port, mounts=mounts, writable=[str(self.log_dir)]
        )
        self.url = f"http://127.0.0.1:{port}"

    def _write(self, color: str) -> None:
        host, _, app_port = self.upstreams[color].rpartition(":")
        tmp = self.conf_dir / ".nginx.conf.tmp"
        tmp.write_text(render_nginx(host, int(app_port), color))
        os.replace(tmp, self.conf_dir / "nginx.conf")

    def switch(self, color: str) -> None:
        self._write(color)
        for argv in (
            ["nginx", "-t", "-q", "-c", f"{_NGINX_CONF_DIR}/nginx.conf"],
            ["nginx", "-s", "reload", "-c", f"{_NGINX_CONF_DIR}/nginx.conf"],
        ):
            code, output = self.sidecar.exec(argv)
            if code != 0:
                raise StackError(f"`{' '.join(argv)}` failed: {output.strip()[-200:]}")

    def log_check(self, since: float, samples: list) -> dict:
        return {}


class HAProxyMechanism:
    """HAProxy with both colors declared, switched by ``deploygate.haproxy.route``."""

    name = HAPROXY

    def __init__(self, host: DockerHost, root: Path, upstreams: dict[str, str], port: int, say: Say) -> None:
        self.dirs = haproxy.ProxyDirs(root)
        haproxy.prepare(self.dirs, {color: [address] for color, address in upstreams.items()}, COLORS[0])
        image = sidecar_image(host, "haproxy", say)
        self.sidecar: Sidecar = run_sidecar(
            host,
            "bench_haproxy",
            image,
            haproxy.command(),
            port_inside=haproxy.HTTP_PORT,
            host_port=port,
            mounts=self.dirs.mounts(),
            writable=self.dirs.writable,
            user=haproxy.container_user(),
        )
        self.url = f"http://127.0.0.1:{port}"
        haproxy.wait_answering(self.dirs)
        for color in upstreams:
            wait_until(lambda color=color: haproxy.ready_servers(self.dirs, color), timeout=30, what=f"{color} to be up in HAProxy")

    def switch(self, color: str) -> None:
        haproxy.route(self.dirs, color, ready_timeout_s=10)

    def log_check(self, since: float, samples: list) -> dict:
        """Access-log lines of the run against the answers the clients got, and HAProxy's dropped-log counter."""
        answered = sum(s.answered for s in samples)
        paths = {s.path for s in samples}
        lines = sum(1 for r in read_access_log(self.dirs.access_log, since=since) if r.uri in paths)
        return {"log_lines": lines, "answered": answered, "dropped_logs": int(haproxy.api(self.dirs).info().get("DroppedLogs", "-1"))}


# --- one run, and the whole bench ----------------------------------------------------------------------


@dataclass
class SwitchRun:
    """One mechanism at one client count."""

    mechanism: str
    clients: int
    switches: int
    around: WindowStats
    outside: WindowStats
    switch_ms_p50: float
    log: dict = field(default_factory=dict)

    @property
    def p99_ratio(self) -> float | None:
        if self.around.p99_ms is None or not self.outside.p99_ms:
            return None
        return self.around.p99_ms / self.outside.p99_ms

    @property
    def requests(self) -> int:
        return self.around.requests + self.outside.requests

    @property
    def no_answer(self) -> int:
        return self.around.no_answer + self.outside.no_answer

    @property
    def server_errors(self) -> int:
        return self.around.server_errors + self.outside.server_errors

    @property
    def goal_met(self) -> bool:
        """The issue's goal: nothing unanswered, no 5xx, p99 around switches at most 2x p99 outside."""
        ratio = self.p99_ratio
        return self.no_answer == 0 and self.server_errors == 0 and ratio is not None and ratio <= P99_RATIO_GOAL

    def as_dict(self) -> dict:
        return {
            "mechanism": self.mechanism,
            "clients": self.clients,
            "switches": self.switches,
            "requests": self.requests,
            "no_answer": self.no_answer,
            "server_errors": self.server_errors,
            "around": self.around.as_dict(),
            "outside": self.outside.as_dict(),
            "p99_ratio": self.p99_ratio,
            "switch_ms_p50": self.switch_ms_p50,
            "goal_met": self.goal_met,
            "log": self.log,
        }


def run_switches(
    mechanism, *, clients: int, switches: int, interval_s: float, get_path: str, post_path: str, post_body, warmup_s: float = 2.0
) -> SwitchRun:
    """Keep-alive load through ``mechanism`` while it switches color ``switches`` times, one every ``interval_s``.

    ``post_body(client, n)`` is the JSON of client's n-th request when it is a POST.
    """
    mechanism.switch(COLORS[0])
    started = time.time()
    bound_s = warmup_s + switches * interval_s + 30.0
    load = KeepAliveLoad(
        mechanism.url,
        clients=clients,
        max_requests=clients * 100_000,
        max_duration_s=bound_s,
        get_path=get_path,
        post_path=post_path,
        post_body=post_body,
    ).start()
    instants: list[float] = []
    durations: list[float] = []
    try:
        time.sleep(warmup_s)
        origin = time.monotonic()
        for n in range(switches):
            # Due times from the start, so a slow switch does not stretch the schedule.
            time.sleep(max(0.0, origin + n * interval_s - time.monotonic()))
            instants.append(time.time())
            began = time.perf_counter()
            mechanism.switch(COLORS[(n + 1) % 2])
            durations.append((time.perf_counter() - began) * 1000.0)
        time.sleep(interval_s)
    finally:
        samples = load.stop()
    around, outside = window_stats(samples, instants, half_window_s=HALF_WINDOW_S)
    time.sleep(0.5)  # the last log lines reach the file
    return SwitchRun(
        mechanism=mechanism.name,
        clients=clients,
        switches=switches,
        around=around,
        outside=outside,
        switch_ms_p50=sorted(durations)[len(durations) // 2] if durations else 0.0,
        log=mechanism.log_check(started, samples),
    )


def bench_switch(
    root: Path,
    *,
    clients_list: list[int],
    switches: int = 50,
    interval_s: float = 1.5,
    get_path: str | None = None,
    say: Say = print,
    sets: dict[str, str] | None = None,
    config_file: str | None = None,
) -> list[SwitchRun]:
    """Bring up the bench production and both proxies, run every (clients, mechanism), remove everything.

    The clients GET ``get_path`` (default: the app's health path) and POST the configured
    traffic write path and body (deploy.toml's ``traffic_write_path`` / ``traffic_write_body``).
    Raises ``ConfigError`` for unusable numbers and ``DeployGateError`` subclasses when production cannot be brought up.
    """
    if switches < 1 or interval_s <= 2 * HALF_WINDOW_S or not clients_list or min(clients_list) < 1:
        raise config.ConfigError(
            f"need switches >= 1, clients >= 1 and an interval longer than {2 * HALF_WINDOW_S:.1f}s (the window around a switch)"
        )
    results = []
    with tempfile.TemporaryDirectory(prefix="dgswitch-") as tmp:
        own = {
            "project": SWITCH_PROJECT,
            "proxy_port": str(free_port()),
            "state_dir": f"{tmp}/state",
            "backup_dir": f"{tmp}/backups",
            "reports_dir": f"{tmp}/reports",
            "seed_rows": "2000",
            "seed_members": "200",
        }
        settings = bench_settings.load(root, bench_settings.merged(own, sets), config_file)
        if not settings.traffic_write_path:
            raise config.ConfigError("the switch bench POSTs to traffic_write_path, which is empty")
        body = body_template(settings.traffic_write_body)
        platform = connect(settings, say)
        if not isinstance(platform, DockerHost):
            raise config.ConfigError(f"the switch bench runs on a single Docker host, not on {platform.kind}")
        production.down(platform, settings, volumes=True)
        try:
            say("bringing up the bench production (Postgres, the app as blue)...")
            production.up(platform, settings, say=quiet)
            release = platform.resolve_image(settings.release, quiet)
            say(f"starting the same release ({release.tag}) as green...")
            platform.start_color("green", release, production.app_environment(platform, settings))
            platform.wait_healthy("green", settings.health_timeout)
            upstreams = {color: platform.upstreams(color)[0] for color in COLORS}
            nginx = NginxBaseline(platform, Path(tmp) / "nginx", upstreams, free_port(), say)
            hap = HAProxyMechanism(platform, Path(tmp) / "haproxy", upstreams, free_port(), say)
            for clients in clients_list:
                for mechanism in (nginx, hap):
                    say(f"[{clients} clients] {mechanism.name}: {switches} switches, one every {interval_s:.1f}s...")
                    run = run_switches(
                        mechanism,
                        clients=clients,
                        switches=switches,
                        interval_s=interval_s,
                        get_path=get_path or settings.health_path,
                        post_path=settings.traffic_write_path,
                        # Numbers unique across clients, for apps whose writes must be unique.
                        post_body=lambda client, n: body(client * 1_000_000 + n),
                    )
                    results.append(run)
        finally:
            production.down(platform, settings, volumes=True)
    return results


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(results: list[SwitchRun]) -> str:
    """A markdown table: one row per mechanism and client count."""
    lines = [
        "| mechanism | clients | requests | no answer | 5xx | failed POSTs | p50 around (ms) | p99 around (ms) | p50 outside (ms) | p99 outside (ms) | p99 around/outside | served (blue/green) | switch p50 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        colors = {**r.around.colors}
        for color, count in r.outside.colors.items():
            colors[color] = colors.get(color, 0) + count
        ratio = "-" if r.p99_ratio is None else f"{r.p99_ratio:.2f}x"
        lines.append(
            f"| {r.mechanism} | {r.clients} | {r.requests:,} | {r.no_answer} | {r.server_errors} | "
            f"{r.around.failed_posts + r.outside.failed_posts} | {_ms(r.around.p50_ms)} | {_ms(r.around.p99_ms)} | "
            f"{_ms(r.outside.p50_ms)} | {_ms(r.outside.p99_ms)} | {ratio} | "
            f"{colors.get('blue', 0):,}/{colors.get('green', 0):,} | {r.switch_ms_p50:.0f} |"
        )
    for r in results:
        if r.log:
            lines.append(
                f"\n{r.mechanism}, {r.clients} clients: {r.log['log_lines']:,} access-log lines for {r.log['answered']:,} answered requests, "
                f"DroppedLogs {r.log['dropped_logs']}"
            )
    return "\n".join(lines)


def save(results: list[SwitchRun], reports_dir: Path) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"bench_switch_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return path
