"""The HAProxy proxy: its configuration, its routing state on disk, and colour switches through its runtime API.

Both colours are declared once in a configuration rendered by a pure function and never
reloaded. Which colour serves, and whether a maintenance hold answers instead, is a map
file (``state.map``) HAProxy reads at start; every change is written there atomically
first and then applied to the running proxy with ``set map`` on its runtime API (a unix
socket in a directory mounted into the proxy container only). A switch therefore closes
no client connection: a keep-alive client's next request simply goes to the other
backend. A restarted proxy container reads the same file and routes as before.

Every request is logged as one JSON line (the keys ``deploygate.proxy.parse_access_line``
reads) to the container's stdout, which is a bind-mounted file: see ``command()``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from deploygate.errors import ProxyError, WaitTimeout
from deploygate.waiting import wait_until

# Inside the container. The config directory is the official image's, and the local image
# (images/haproxy) uses the same, so both run the same command on the same mounts.
CONFIG_DIR_IN_CONTAINER = "/usr/local/etc/haproxy"
RUN_DIR_IN_CONTAINER = "/var/run/deploygate"
LOG_DIR_IN_CONTAINER = "/var/log/deploygate"
CONFIG_NAME = "haproxy.cfg"
STATE_NAME = "state.map"
SOCKET_NAME = "admin.sock"
ACCESS_LOG_NAME = "access.log"
STATE_IN_CONTAINER = f"{CONFIG_DIR_IN_CONTAINER}/{STATE_NAME}"
# An unprivileged port: the official image runs as user haproxy, which cannot bind 80.
HTTP_PORT = 8080
# The official image's haproxy user and group; images/haproxy gives Debian's package the same.
HAPROXY_UID = 99
HAPROXY_GID = 99
COLOR_HEADER = "X-Deploygate-Color"
# The colour logged (and sent in COLOR_HEADER) for requests the proxy answered itself during a hold.
HOLD = "hold"
# The colour logged for requests HAProxy rejected before routing (malformed, timed out while sending headers).
NO_COLOR = "-"
_HOLD_OFF = "off"
_COLOR_RE = re.compile(r"^[a-z][a-z0-9]{0,30}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})$")
_RESERVED = {HOLD, _HOLD_OFF}
# Between an upstream and a number of slots: "tasks.proj_web_green:8000*4" (see ``server_template``).
_SLOTS_SEP = "*"
_MAX_SLOTS = 64
_SOCKET_TIMEOUT_S = 5.0
# Health checks of every server: a server that stops answering is taken out after
# SERVER_DOWN_AFTER_S. Until then a request HAProxy sends to it fails (a replica that dies
# under load: 502, or on a kept-alive client connection a close without answer, unlogged,
# which HAProxy does so that the client retries).
_CHECK_INTERVAL_S = 1
_CHECK_FALL = 2
SERVER_DOWN_AFTER_S = _CHECK_INTERVAL_S * _CHECK_FALL
# sun_path holds 108 bytes with its NUL; longer paths are reached through /proc/self/fd.
_SUN_PATH_MAX = 107


# --- configuration (pure) -------------------------------------------------------------------------


def _check_color(color: str) -> str:
    if not isinstance(color, str) or not _COLOR_RE.match(color) or color in _RESERVED:
        raise ValueError(f"a colour is 1-31 lowercase letters/digits starting with a letter, not {HOLD!r}/{_HOLD_OFF!r}; got {color!r}")
    return color


def _check_server(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not _HOST_RE.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"an upstream is host:port (a DNS name or IPv4 address), got {address!r}")
    return host, int(port)


def server_template(address: str, slots: int) -> str:
    """The upstream "up to ``slots`` servers, one per address the name in ``address`` resolves to".

    For a cluster's replicas behind one DNS name (Docker Swarm's ``tasks.<service>``, DNS
    round-robin): rendered as HAProxy's ``server-template``, whose servers follow the
    name's A records at run time, no reload. Raises ``ValueError`` for a bad address or count.
    """
    _check_server(address)
    _check_slots(str(slots))
    return f"{address}{_SLOTS_SEP}{slots}"


def _check_slots(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= _MAX_SLOTS:
        raise ValueError(f"a server template has 1-{_MAX_SLOTS} slots, got {text!r}")
    return int(text)


def _server_lines(color: str, n: int, upstream: str) -> str:
    """The backend line of one upstream: a server, or a server template (``server_template``)."""
    address, sep, slots = upstream.partition(_SLOTS_SEP)
    host, port = _check_server(address)
    if sep:
        # No libc lookup at start: a name that does not resolve yet (a colour with no task) would
        # hold HAProxy's start for every slot in turn; the resolvers fill the slots within a second.
        return f"    server-template {color}{n}_ 1-{_check_slots(slots)} {host}:{port} init-addr none"
    return f"    server {color}{n} {host}:{port}"


def _seconds(ms_expr: str) -> str:
    """Log-format text printing the integer milliseconds of ``ms_expr`` as seconds with three decimals.

    HAProxy 2.6 has no fraction formatting, so the digits are computed one by one.
    """
    return (
        f"%[{ms_expr},div(1000)].%[{ms_expr},mod(1000),div(100)]"
        f"%[{ms_expr},mod(100),div(10)]%[{ms_expr},mod(10)]"
    )


# The keys of deploygate's nginx log, so ``deploygate.proxy.parse_access_line`` reads both:
#   ts             epoch seconds (ms) when the request's headers were in. txn.ts is set by the
#                  first rule: on a kept-alive connection HAProxy's own accept date is the end
#                  of the previous request, not this one.
#   color          the backend that served, or "hold" (answered by the proxy), or "-" (rejected
#                  before routing: see _ERROR_LOG_FORMAT)
#   request_time   seconds from ts to the end of the response
#   upstream, upstream_status, upstream_time  the server's address, its status, seconds from ts
#                  to its response headers ("-" when no server answered)
# plus HAProxy's own: server (backend/server), term (termination state), retries, timers (ms).
_TS = "var(txn.ts,0)"
_LOG_FORMAT = (
    '{"ts":' + _seconds(_TS) + ',"color":"%[var(txn.color)]","method":"%HM",'
    '"uri":"%[capture.req.uri,json(utf8s)]","status":%ST,'
    '"request_time":' + _seconds("date(0,ms),sub(txn.ts)") + ","
    '"upstream":"%si:%sp","upstream_status":"%[var(txn.upstream_status)]",'
    '"upstream_time":"%[var(txn.upstream_time)]","server":"%b/%s","term":"%tsc",'
    '"retries":"%rc","timers":"%TR/%Tw/%Tc/%Tr/%Ta"}'
)
# Requests rejected before any rule ran (malformed, or headers not sent in time) have no
# txn variables; this format keeps their line valid JSON with the same keys.
_ERROR_LOG_FORMAT = (
    '{"ts":%Ts.%ms,"color":"' + NO_COLOR + '","method":"%HM","uri":"","status":%ST,"request_time":0.000,'
    '"upstream":"","upstream_status":"","upstream_time":"","server":"","term":"%tsc","retries":"0","timers":""}'
)


def render_config(backends: Mapping[str, Sequence[str]], *, http_port: int = HTTP_PORT) -> str:
    """haproxy.cfg declaring one backend per colour, routed by the state map.

    ``backends`` maps each colour (in order; at least one) to its upstreams as
    ``host:port`` strings, one server each, so a colour can be N replicas, or
    ``server_template`` upstreams (up to N servers behind one DNS name). Hosts are
    resolved at start (``init-addr libc,none``: a colour whose container does not exist
    yet does not stop HAProxy from starting) and then through the container's resolvers
    (Docker's DNS), so a recreated container is found at its new address.

    Pure: the same arguments give the same text. Raises ``ValueError`` for a bad colour,
    upstream or port.
    """
    if not backends:
        raise ValueError("at least one colour must be declared")
    if not 0 < http_port < 65536:
        raise ValueError(f"http_port must be 1-65535, got {http_port}")
    sections = []
    for color, servers in backends.items():
        _check_color(color)
        if isinstance(servers, str) or not servers:
            raise ValueError(f"colour {color!r} needs a list of host:port upstreams, got {servers!r}")
        lines = [f"backend {color}"]
        lines += [_server_lines(color, n, upstream) for n, upstream in enumerate(servers, start=1)]
        sections.append("\n".join(lines) + "\n")
    backend_text = "\n".join(sections)
    fallback = next(iter(backends))
    state = STATE_IN_CONTAINER
    return f"""# Rendered by deploygate.haproxy.render_config; never reloaded. Routing lives in {STATE_NAME}.
global
    # The runtime API: a unix socket in a directory mounted into this container only.
    # There is no TCP stats or admin listener.
    stats socket {RUN_DIR_IN_CONTAINER}/{SOCKET_NAME} mode 600 level admin
    stats timeout 10s
    # A soft stop (SIGUSR1, the stop signal) lets in-flight requests finish, this long at most.
    hard-stop-after 30s
    # One thread: HAProxy gives a log line up when another thread holds the log fd (it never
    # blocks), so two threads on a busy machine lose lines. One thread serves thousands of
    # requests a second, far above what the app behind it does.
    nbthread 1
    # Log the whole URI (HAProxy keeps 1024 bytes by default); the log line length below
    # leaves room for its JSON escaping, so a line is never cut into invalid JSON.
    tune.http.logurilen 8192

resolvers docker
    parse-resolv-conf
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold valid 10s
    hold obsolete 10s

defaults
    mode http
    option dontlognull
    option forwardfor
    # No idle connections to the app: a pooled connection the app closes at the instant it
    # is reused would fail a request (a POST cannot be re-sent). Clients keep theirs alive.
    option http-server-close
    retries 3
    option redispatch
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 75s
    # TCP checks only: a colour is routable when something accepts connections; whether the
    # app is healthy is the deploy's question, not the proxy's.
    default-server init-addr libc,none resolvers docker check inter {_CHECK_INTERVAL_S}s fall {_CHECK_FALL} rise 1

frontend http
    bind :{http_port}
    log stdout len 32768 format raw local0
    log-format '{_LOG_FORMAT}'
    error-log-format '{_ERROR_LOG_FORMAT}'
    tcp-request content set-var(txn.ts) date(0,ms)
    http-request set-var(txn.color) str(color),map({state},{fallback})
    http-request set-var(txn.hold) str(hold),map({state},{_HOLD_OFF})
    http-request set-var(txn.color) str({HOLD}) unless {{ var(txn.hold) -m str {_HOLD_OFF} }}
    http-request return status 503 content-type application/json lf-string '{{"status": "maintenance", "retry_after": %[var(txn.hold)]}}' hdr Retry-After %[var(txn.hold)] if {{ var(txn.color) -m str {HOLD} }}
    http-response set-var(txn.upstream_status) status
    http-response set-var(txn.upstream_ms) date(0,ms),sub(txn.ts)
    http-response set-var-fmt(txn.upstream_time) {_seconds("var(txn.upstream_ms)")}
    http-after-response set-header {COLOR_HEADER} %[var(txn.color)]
    use_backend %[var(txn.color)]

{backend_text}"""


# --- routing state on disk (pure render/parse, atomic write) ---------------------------------------


@dataclass(frozen=True)
class RoutingState:
    """Which colour serves, and the Retry-After of a maintenance hold if one is on (then nobody is served)."""

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


def prepare(dirs: ProxyDirs, backends: Mapping[str, Sequence[str]], initial: str, *, http_port: int = HTTP_PORT) -> RoutingState:
    """Create the proxy's directories, write its configuration and, unless one exists, its routing state.

    An existing state file is kept: it is the routing a restarted or re-created proxy must
    come back with. Returns the state the proxy will start with. Raises ``ValueError`` for
    a bad configuration and ``ProxyError`` if the existing state names an undeclared colour.
    """
    config = render_config(backends, http_port=http_port)
    for path in (dirs.config_dir, dirs.run_dir, dirs.log_dir):
        path.mkdir(parents=True, exist_ok=True)
    # The socket directory is the admin API's only door: nobody but the proxy's user (and root) enters.
    os.chmod(dirs.run_dir, 0o700)
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


def container_user() -> str:
    """The user the proxy container runs as.

    As root, the official image's haproxy user (``prepare`` hands it the writable
    directories); otherwise our own uid, which owns them already.
    """
    if os.geteuid() == 0:
        return f"{HAPROXY_UID}:{HAPROXY_GID}"
    return f"{os.geteuid()}:{os.getegid()}"


def command() -> list[str]:
    """The proxy container's command: HAProxy in the foreground, its stdout appended to the access log.

    HAProxy 2.6 makes stdout non-blocking with a plain ``F_SETFL``, which drops
    ``O_APPEND``: a restarted container would then write from offset 0 over the old
    lines. The marker line written first through ``O_APPEND`` moves the shared file
    offset to the end, so the log is appended to, never overwritten. A regular file
    never answers EAGAIN, so HAProxy drops no line (its ``DroppedLogs`` stays 0).
    """
    log = f"{LOG_DIR_IN_CONTAINER}/{ACCESS_LOG_NAME}"
    script = (
        f'exec >>{log} && echo "# deploygate: haproxy starting $(date -u +%Y-%m-%dT%H:%M:%SZ)" '
        f"&& exec haproxy -W -db -f {CONFIG_DIR_IN_CONTAINER}/{CONFIG_NAME}"
    )
    return ["sh", "-c", script]


# --- the runtime API --------------------------------------------------------------------------------


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

    A colour stopped and started again (a rollback resumes the previous one) can still show its
    old "UP" (HAProxy takes a server out only after ``fall`` failed checks) or sit at an address
    its name no longer has until the name is resolved again: routing on that state answered
    503 <NOSRV> for a second (seen in CI). Raises ``ProxyError``.
    """
    _check_color(color)
    client = api(dirs)
    for row in _server_rows(client.stats(), color):
        client.set(f"set server {color}/{row['svname']} health down")


def in_flight(dirs: ProxyDirs, color: str) -> int:
    """Requests the running proxy has at ``color``'s servers right now."""
    _check_color(color)
    for row in api(dirs).stats():
        if row.get("pxname") == color and row.get("svname") == "BACKEND":
            return int(row.get("scur") or 0)
    raise ProxyError(f"the running proxy has no backend {color!r}")


def _wait(probe, *, timeout_s: float, interval_s: float, what: str, failure: str):
    """deploygate's one polling helper, with a proxy that does not answer yet counted as "not yet".

    Returns what ``probe`` returned; raises ``ProxyError`` starting with ``failure`` at the deadline.
    """
    try:
        return wait_until(probe, timeout=timeout_s, interval=interval_s, what=what, transient=(ProxyError,))
    except WaitTimeout as exc:
        raise ProxyError(f"{failure}: {exc}") from None


def wait_answering(dirs: ProxyDirs, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Wait until the proxy's runtime API answers; returns ``show info``. Raises ``ProxyError`` naming the last failure."""
    return _wait(lambda: api(dirs).info(), timeout_s=timeout_s, interval_s=0.2, what="HAProxy's runtime API", failure="HAProxy does not answer")


def wait_drained(dirs: ProxyDirs, color: str, *, timeout_s: float = 30.0) -> None:
    """Wait until no request is in flight at ``color`` (after routing away from it, before stopping it).

    Raises ``ProxyError`` if requests are still in flight after ``timeout_s``.
    """
    _wait(
        lambda: in_flight(dirs, color) == 0, timeout_s=timeout_s, interval_s=0.1,
        what=f"no request in flight at {color}", failure=f"{color} still has requests in flight",
    )  # fmt: skip


def _apply(dirs: ProxyDirs, state: RoutingState) -> None:
    """Make the running proxy route as ``state``, then read it back.

    Order matters between the two keys: a hold goes on before the colour changes and
    comes off after, so no request reaches a colour the caller meant to hold back.
    """
    client = api(dirs)
    entries = state.entries()
    order = ("hold", "color") if state.held else ("color", "hold")
    for key in order:
        client.set(f"set map {STATE_IN_CONTAINER} {key} {entries[key]}")
    applied = _state_from_entries(client.map_entries(), "the running proxy")
    if applied != state:
        raise ProxyError(f"HAProxy routes as {applied} after being told {state}")


def _change(dirs: ProxyDirs, state: RoutingState) -> RoutingState:
    """Write ``state`` to disk, then apply it at runtime.

    The file is the intent: if applying fails (the proxy is down or restarting), the proxy
    routes as the file says when it starts, and ``reapply`` converges a running one.
    """
    write_state(dirs, state)
    try:
        _apply(dirs, state)
    except ProxyError as exc:
        raise ProxyError(f"{exc} (written to {dirs.state_file}: the proxy routes so at its next start, or after reapply)") from None
    return state


def _on_disk(dirs: ProxyDirs) -> RoutingState:
    state = current(dirs)
    if state is None:
        raise ProxyError(f"no routing state at {dirs.state_file}: the proxy was never prepared")
    return state


def route(dirs: ProxyDirs, color: str, *, ready_timeout_s: float = 30.0, fresh: bool = False) -> RoutingState:
    """Send every new request to ``color`` without reloading: in-flight requests finish where they are.

    Waits up to ``ready_timeout_s`` for the running proxy to answer and for ``color`` to
    have a server accepting connections, and changes nothing if it never does; ``fresh``:
    only by a health check made after this call (``recheck``: for a colour just started
    again). A hold that is on stays on (``release_hold`` then serves ``color``). Returns
    the new state. Raises ``ProxyError``.
    """
    _check_color(color)
    serving = current(dirs)
    # A proxy that does not answer yet starts afresh anyway: it has no state to forget.
    if fresh and serving is not None and serving.color != color and _answers(dirs):
        recheck(dirs, color)
    _wait(
        lambda: ready_servers(dirs, color), timeout_s=ready_timeout_s, interval_s=0.2,
        what=f"a server of {color} to be up in the proxy", failure=f"not routing to {color}, nothing changed",
    )  # fmt: skip
    return _change(dirs, RoutingState(color=color, hold_s=_on_disk(dirs).hold_s))


def hold(dirs: ProxyDirs, retry_after_s: int) -> RoutingState:
    """Answer every new request 503 with ``Retry-After: retry_after_s`` from the proxy itself (logged as "hold").

    Requests already at a colour finish. Returns the new state. Raises ``ProxyError``.
    """
    return _change(dirs, RoutingState(color=_on_disk(dirs).color, hold_s=retry_after_s))


def release_hold(dirs: ProxyDirs) -> RoutingState:
    """End a hold: requests go to the colour of the state again. Returns the new state. Raises ``ProxyError``."""
    return _change(dirs, RoutingState(color=_on_disk(dirs).color))


def reapply(dirs: ProxyDirs) -> RoutingState:
    """Make the running proxy route as the state on disk says (after a crash between write and apply).

    Returns that state. Raises ``ProxyError``.
    """
    state = _on_disk(dirs)
    _apply(dirs, state)
    return state
