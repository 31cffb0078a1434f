"""The proxy's routing state on disk and its directories: pure render and parse, atomic writes.

Every change is written here first: a proxy that restarts reads this file and routes as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploygate.errors import ProxyError
from deploygate.haproxy.config import (
    _HOLD_OFF,
    ACCESS_LOG_NAME,
    CONFIG_DIR_IN_CONTAINER,
    CONFIG_NAME,
    DEFAULT_REDACT_FIELDS,
    HAPROXY_GID,
    HAPROXY_UID,
    HTTP_PORT,
    LOG_DIR_IN_CONTAINER,
    RUN_DIR_IN_CONTAINER,
    SOCKET_NAME,
    STATE_NAME,
    _check_color,
    render_config,
)


@dataclass(frozen=True)
class RoutingState:
    """Which color serves, and the Retry-After of a maintenance hold if one is on (then nobody is served)."""

    color: str
    hold_s: int | None = None

    def __post_init__(self) -> None:
        _check_color(self.color)
        if self.hold_s is not None and (isinstance(self.hold_s, bool) or not isinstance(self.hold_s, int) or self.hold_s < 1):
            raise ValueError(f"a hold's Retry-After is a positive number of seconds, got {self.hold_s!r}")

    @property
    def held(self) -> bool:
        return self.hold_s is not None

    def entries(self) -> dict[str, str]:
        """The map's keys and values."""
        return {"color": self.color, "hold": _HOLD_OFF if self.hold_s is None else str(self.hold_s)}


def render_state(state: RoutingState) -> str:
    """The state map's text: one ``key value`` line per entry."""
    lines = ["# deploygate routing state: HAProxy loads it at start; every change is also applied at runtime."]
    lines += [f"{key} {value}" for key, value in state.entries().items()]
    return "\n".join(lines) + "\n"


def _state_from_entries(entries: Mapping[str, str], source: str) -> RoutingState:
    try:
        hold = entries["hold"]
        return RoutingState(color=entries["color"], hold_s=None if hold == _HOLD_OFF else int(hold))
    except (KeyError, ValueError) as exc:
        raise ProxyError(f"unreadable routing state in {source}: {exc}") from None


def parse_state(text: str, source: str = "state map") -> RoutingState:
    """The ``RoutingState`` of a state map's text. Raises ``ProxyError`` if it is incomplete or invalid."""
    entries = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            entries[key] = value.strip()
    return _state_from_entries(entries, source)


@dataclass(frozen=True)
class ProxyDirs:
    """The host directories of one proxy: config + state (read-only in the container), runtime socket, logs."""

    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "conf"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def state_file(self) -> Path:
        return self.config_dir / STATE_NAME

    @property
    def socket(self) -> Path:
        return self.run_dir / SOCKET_NAME

    @property
    def access_log(self) -> Path:
        return self.log_dir / ACCESS_LOG_NAME

    def mounts(self) -> dict[str, str]:
        """Host directory -> path inside, for the proxy container only (the socket's directory is the admin API)."""
        return {
            str(self.config_dir): CONFIG_DIR_IN_CONTAINER,
            str(self.run_dir): RUN_DIR_IN_CONTAINER,
            str(self.log_dir): LOG_DIR_IN_CONTAINER,
        }

    @property
    def writable(self) -> list[str]:
        """The mounts HAProxy writes to (the socket, the log); config and state are read-only inside."""
        return [str(self.run_dir), str(self.log_dir)]


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so a reader (or a crash) sees the old or the new file, never a mix.

    The directory, not the file, is mounted into the container, so the rename is seen there.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_state(dirs: ProxyDirs, state: RoutingState) -> None:
    """Write the routing state HAProxy loads at its next start (atomically)."""
    dirs.config_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(dirs.state_file, render_state(state))


def current(dirs: ProxyDirs) -> RoutingState | None:
    """The routing state on disk (what the proxy applies, and re-applies after a restart); None before ``prepare``."""
    try:
        text = dirs.state_file.read_text()
    except FileNotFoundError:
        return None
    return parse_state(text, str(dirs.state_file))


def prepare(
    dirs: ProxyDirs,
    backends: Mapping[str, Sequence[str]],
    initial: str,
    *,
    http_port: int = HTTP_PORT,
    record_body_bytes: int = 4096,
    redact_fields: Sequence[str] = DEFAULT_REDACT_FIELDS,
) -> RoutingState:
    """Create the proxy's directories, write its configuration and, unless one exists, its routing state.

    An existing state file is kept: it is the routing a restarted or re-created proxy must
    come back with. Returns the state the proxy will start with. Raises ``ValueError`` for
    a bad configuration and ``ProxyError`` if the existing state names an undeclared color.
    ``record_body_bytes`` and ``redact_fields`` are ``render_config``'s.
    """
    config = render_config(backends, http_port=http_port, record_body_bytes=record_body_bytes, redact_fields=redact_fields)
    for path in (dirs.config_dir, dirs.run_dir, dirs.log_dir):
        path.mkdir(parents=True, exist_ok=True)
    # The socket directory is the admin API's only door: nobody but the proxy's user (and root) enters.
    # The log directory holds request bodies (redacted, yet users' data): the same.
    os.chmod(dirs.run_dir, 0o700)
    os.chmod(dirs.log_dir, 0o700)
    if os.geteuid() == 0:
        # An access log left by an earlier proxy running as root would refuse HAProxy's appends.
        for path in (dirs.run_dir, dirs.log_dir, dirs.access_log):
            if path.exists():
                os.chown(path, HAPROXY_UID, HAPROXY_GID)
    _write_atomically(dirs.config_file, config)
    state = current(dirs)
    if state is None:
        state = RoutingState(color=_check_color(initial))
        write_state(dirs, state)
    elif state.color not in backends:
        raise ProxyError(f"{dirs.state_file} routes to {state.color!r}, which the configuration does not declare")
    return state
