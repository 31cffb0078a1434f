"""HAProxy's runtime API: a client for its unix socket, and what the running proxy says of its servers."""

from __future__ import annotations

import csv
import io
import os
import socket
from pathlib import Path

from deploygate.errors import ProxyError
from deploygate.haproxy.config import STATE_IN_CONTAINER, _check_color
from deploygate.haproxy.state import ProxyDirs, RoutingState, _state_from_entries

_SOCKET_TIMEOUT_S = 5.0
# sun_path holds 108 bytes with its NUL; longer paths are reached through /proc/self/fd.
_SUN_PATH_MAX = 107


class RuntimeAPI:
    """HAProxy's runtime API over its unix socket: one command per connection, the answer as text.

    Written by hand on the standard library: the protocol is one line out, text back until
    the socket closes, and the PyPI clients (haproxyadmin, last released 2021; haprapi 0.1)
    are unmaintained or immature.
    """

    def __init__(self, socket_path: Path, *, timeout_s: float = _SOCKET_TIMEOUT_S) -> None:
        self.socket_path = Path(socket_path)
        self.timeout_s = timeout_s

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        path = str(self.socket_path)
        try:
            if len(os.fsencode(path)) <= _SUN_PATH_MAX:
                sock.connect(path)
            else:
                # A deep state directory would not fit in sun_path: go through the directory's fd.
                dir_fd = os.open(self.socket_path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    sock.connect(f"/proc/self/fd/{dir_fd}/{self.socket_path.name}")
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            sock.close()
            raise ProxyError(f"HAProxy's runtime API at {path} does not answer: {exc.strerror or exc}") from None
        return sock

    def send(self, command: str) -> str:
        """Send one command (no newline in it), return HAProxy's whole answer.

        Raises ``ProxyError`` when the socket cannot be reached or the answer does not come
        within the timeout.
        """
        if "\n" in command or "\r" in command or not command.strip():
            raise ValueError(f"a runtime API command is one non-empty line, got {command!r}")
        sock = self._connect()
        chunks = []
        try:
            sock.sendall(command.encode() + b"\n")
            # Without "prompt" HAProxy answers once and closes the connection: read to the end.
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise ProxyError(f"HAProxy's runtime API failed on {command.split(' ', 1)[0]!r}: {exc.strerror or exc}") from None
        finally:
            sock.close()
        return b"".join(chunks).decode(errors="replace")

    def set(self, command: str) -> None:
        """Send a command that answers nothing on success; raises ``ProxyError`` with HAProxy's first line otherwise."""
        answer = self.send(command).strip()
        if answer:
            raise ProxyError(f"HAProxy refused `{command}`: {answer.splitlines()[0]}")

    def map_entries(self, map_path: str = STATE_IN_CONTAINER) -> dict[str, str]:
        """The running proxy's entries of a map file, key -> value. Raises ``ProxyError`` if it has no such map."""
        entries = {}
        for line in self.send(f"show map {map_path}").splitlines():
            parts = line.split(" ", 2)
            if len(parts) != 3 or not parts[0].startswith("0x"):
                if line.strip():
                    raise ProxyError(f"HAProxy has no map {map_path}: {line.strip()}")
                continue
            entries[parts[1]] = parts[2]
        return entries

    def stats(self) -> list[dict[str, str]]:
        """``show stat`` as one dict per row (keys: pxname, svname, status, scur, ...)."""
        text = self.send("show stat")
        if not text.startswith("# "):
            raise ProxyError(f"unexpected `show stat` answer: {text.strip().splitlines()[0] if text.strip() else 'nothing'}")
        return list(csv.DictReader(io.StringIO(text[2:])))

    def info(self) -> dict[str, str]:
        """``show info`` as a dict (Version, Uptime_sec, DroppedLogs, ...)."""
        pairs = (line.split(":", 1) for line in self.send("show info").splitlines() if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}


def api(dirs: ProxyDirs, *, timeout_s: float = _SOCKET_TIMEOUT_S) -> RuntimeAPI:
    """The runtime API client of the proxy whose directories are ``dirs``."""
    return RuntimeAPI(dirs.socket, timeout_s=timeout_s)


def runtime_state(dirs: ProxyDirs) -> RoutingState:
    """The routing state the running proxy applies now (may differ from disk only after a failed apply)."""
    return _state_from_entries(api(dirs).map_entries(), "the running proxy")


def _server_rows(stats: list[dict[str, str]], color: str) -> list[dict[str, str]]:
    """The rows of ``show stat`` that are ``color``'s servers (not its backend's or a frontend's totals)."""
    return [row for row in stats if row.get("pxname") == color and row.get("svname") not in ("BACKEND", "FRONTEND")]


def ready_servers(dirs: ProxyDirs, color: str) -> list[str]:
    """Servers of ``color`` the running proxy would send requests to now (resolved, accepting connections)."""
    _check_color(color)
    return [row["svname"] for row in _server_rows(api(dirs).stats(), color) if row.get("status", "").startswith("UP")]


def _answers(dirs: ProxyDirs) -> bool:
    try:
        api(dirs).info()
    except ProxyError:
        return False
    return True


def recheck(dirs: ProxyDirs, color: str) -> None:
    """Forget what the running proxy knows of ``color``'s servers: each is down until a check made from now passes.

    A color stopped and started again (a rollback resumes the previous one) can still show its
    old "UP" (HAProxy takes a server out only after ``fall`` failed checks) or sit at an address
    its name no longer has until the name is resolved again: routing on that state answered
    503 <NOSRV> for a second (seen in CI). Raises ``ProxyError``.
    """
    _check_color(color)
    client = api(dirs)
    for row in _server_rows(client.stats(), color):
        client.set(f"set server {color}/{row['svname']} health down")


def backend_counts(dirs: ProxyDirs, color: str) -> tuple[int, int, int]:
    """``color``'s HTTP requests and 5xx answers since the proxy started (its own counters, ``req_tot`` and
    ``hrsp_5xx``), and the log lines the proxy dropped since (``DroppedLogs``): what its access log may lack."""
    _check_color(color)
    client = api(dirs)
    for row in client.stats():
        if row.get("pxname") == color and row.get("svname") == "BACKEND":
            dropped = int(client.info().get("DroppedLogs") or 0)
            return int(row.get("req_tot") or 0), int(row.get("hrsp_5xx") or 0), dropped
    raise ProxyError(f"the running proxy has no backend {color!r}")


def in_flight(dirs: ProxyDirs, color: str) -> int:
    """Requests the running proxy has at ``color``'s servers right now."""
    _check_color(color)
    for row in api(dirs).stats():
        if row.get("pxname") == color and row.get("svname") == "BACKEND":
            return int(row.get("scur") or 0)
    raise ProxyError(f"the running proxy has no backend {color!r}")
