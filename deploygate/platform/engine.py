"""The Docker engine: find one that answers, or install Debian's docker.io and start dockerd.

Everything that needs the engine calls ``ensure_engine()`` first, so a fresh machine
(or CI) gets an engine without a manual step, and a machine where none can be had gets
one sentence saying why instead of a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from deploygate.errors import EngineUnavailable
from deploygate.packages import apt_install, can_apt_install

DOCKERD_LOG = Path("/var/log/deploygate-dockerd.log")
DOCKERD_PIDFILE = Path("/var/run/docker.pid")
# --live-restore: containers keep running while the engine itself restarts; without the
# userland proxy, published ports are the kernel's NAT alone, so they keep answering too.
DOCKERD_ARGV = ("dockerd", "--live-restore", "--userland-proxy=false")
START_TIMEOUT_S = 60

# testcontainers reads these at import time. Ryuk's image cannot be pulled offline (we
# clean up by label instead), and because this machine has a /.dockerenv testcontainers
# would otherwise reach published ports through the default gateway rather than loopback.
TESTCONTAINERS_ENV = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
}


def configure_testcontainers(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Set testcontainers' environment unless the user set it already (must run before its import)."""
    for key, value in TESTCONTAINERS_ENV.items():
        environ.setdefault(key, value)


def _client_or_none() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None


def _install_docker_io(say: Callable[[str], None]) -> None:
    if not can_apt_install():
        raise EngineUnavailable(
            "no Docker engine answers and dockerd is not installed; install Docker "
            "(Debian: apt-get install docker.io) or point DOCKER_HOST at a running engine"
        )
    say("installing Debian's docker.io (no Docker engine found)...")
    failure = apt_install("docker.io")
    if failure:
        raise EngineUnavailable(failure)


def _start_dockerd(say: Callable[[str], None], timeout: float) -> docker.DockerClient:
    say(f"starting dockerd in the background (log: {DOCKERD_LOG})...")
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with DOCKERD_LOG.open("ab") as log:
        # A new session detaches dockerd from this process group, so it outlives
        # the nox session or CI step that started it.
        proc = subprocess.Popen(list(DOCKERD_ARGV), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = _client_or_none()
        if client is not None:
            return client
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    last = _last_log_line()
    if proc.poll() is not None:
        raise EngineUnavailable(f"dockerd exited with code {proc.returncode}: {last}")
    raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f}s: {last}")


def _last_log_line() -> str:
    try:
        lines = [line for line in DOCKERD_LOG.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][-300:] if lines else "no log"


def ensure_engine(*, say: Callable[[str], None] = print, timeout: float = START_TIMEOUT_S) -> docker.DockerClient:
    """Return a client of an engine that answers, installing/starting one if needed.

    Raises ``EngineUnavailable`` with a one-line cause when no engine can be had.
    A remote ``DOCKER_HOST`` is never started locally: it either answers or is reported.
    """
    client = _client_or_none()
    if client is not None:
        return client
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host and not docker_host.startswith("unix://"):
        raise EngineUnavailable(f"the Docker engine at DOCKER_HOST={docker_host} does not answer")
    if _dockerd_alive():
        # A dockerd runs but does not answer yet (starting, restarting): a second one would only fail on its pidfile.
        say("dockerd is starting; waiting for it to answer...")
        return _wait_for_engine(say, timeout)
    if shutil.which("dockerd") is None:
        _install_docker_io(say)
    if shutil.which("dockerd") is None:
        raise EngineUnavailable("docker.io was installed but dockerd is still not on PATH")
    return _start_dockerd(say, timeout)


def _dockerd_pid() -> int | None:
    try:
        return int(DOCKERD_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None


def _dockerd_alive() -> bool:
    """Whether the dockerd of the default pidfile is a live process."""
    pid = _dockerd_pid()
    return pid is not None and Path(f"/proc/{pid}").exists()


def started_here() -> bool:
    """Whether the running dockerd is one deploygate started (with ``DOCKERD_ARGV``), not the host's own service."""
    pid = _dockerd_pid()
    try:
        return pid is not None and Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == [a.encode() for a in DOCKERD_ARGV]
    except OSError:
        return False


def _wait_for_engine(say: Callable[[str], None], timeout: float) -> docker.DockerClient:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = _client_or_none()
        if client is not None:
            return client
        time.sleep(0.5)
    raise EngineUnavailable(f"dockerd runs but did not answer within {timeout:.0f}s: {_last_log_line()}")
