"""HAProxy's configuration and its container's command, as pure functions; the names both share.

Both colors are declared once in a configuration that is never reloaded; which color
serves is a map file (``state``) read at start and changed at run time (``switch``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from deploygate import upstreams
from deploygate.upstreams import server_template

__all__ = ["server_template"]  # an upstream's notation, shared with the platforms

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
# The color logged (and sent in COLOR_HEADER) for requests the proxy answered itself during a hold.
HOLD = "hold"
# The color logged for requests HAProxy rejected before routing (malformed, timed out while sending headers).
NO_COLOR = "-"
_HOLD_OFF = "off"
_COLOR_RE = re.compile(r"^[a-z][a-z0-9]{0,30}$")
_RESERVED = {HOLD, _HOLD_OFF}
# Health checks of every server: a server that stops answering is taken out after
# SERVER_DOWN_AFTER_S. Until then a request HAProxy sends to it fails (a replica that dies
# under load: 502, or on a kept-alive client connection a close without answer, unlogged,
# which HAProxy does so that the client retries).
_CHECK_INTERVAL_S = 1
_CHECK_FALL = 2
SERVER_DOWN_AFTER_S = _CHECK_INTERVAL_S * _CHECK_FALL


# --- configuration (pure) -------------------------------------------------------------------------


def _check_color(color: str) -> str:
    if not isinstance(color, str) or not _COLOR_RE.match(color) or color in _RESERVED:
        raise ValueError(f"a color is 1-31 lowercase letters/digits starting with a letter, not {HOLD!r}/{_HOLD_OFF!r}; got {color!r}")
    return color


def _server_lines(color: str, n: int, upstream: str) -> str:
    """The backend line of one upstream: a server, or a server template (``server_template``)."""
    host, port, slots = upstreams.parse(upstream)
    if slots is not None:
        # No libc lookup at start: a name that does not resolve yet (a color with no task) would
        # hold HAProxy's start for every slot in turn; the resolvers fill the slots within a second.
        return f"    server-template {color}{n}_ 1-{slots} {host}:{port} init-addr none"
    return f"    server {color}{n} {host}:{port}"


def _seconds(ms_expr: str) -> str:
    """Log-format text printing the integer milliseconds of ``ms_expr`` as seconds with three decimals.

    HAProxy 2.6 has no fraction formatting, so the digits are computed one by one.
    """
    return f"%[{ms_expr},div(1000)].%[{ms_expr},mod(1000),div(100)]%[{ms_expr},mod(100),div(10)]%[{ms_expr},mod(10)]"


# The keys of deploygate's nginx log, so ``deploygate.proxy.parse_access_line`` reads both:
#   ts             epoch seconds (ms) when the request's headers were in. txn.ts is set by the
#                  first rule: on a kept-alive connection HAProxy's own accept date is the end
#                  of the previous request, not this one.
#   color          the backend that served, or "hold" (answered by the proxy), or "-" (rejected
#                  before routing: see _ERROR_LOG_FORMAT)
#   request_time   seconds from ts to the end of the response
#   upstream, upstream_status, upstream_time  the server's address, its status, seconds from ts
#                  to its response headers ("-" when no server answered)
# plus HAProxy's own: server (backend/server), term (termination state), retries, timers (ms);
# and what the traffic recording keeps (deploygate.recording): ctype and accept (the request's
# Content-Type and Accept), body (a write's body, secrets redacted, base64) and bsize (its size).
# HAProxy writes "-" for a value it does not have (no header, a body not captured). Authorization
# and Cookie are never logged.
_TS = "var(txn.ts,0)"
_LOG_FORMAT = (
    '{"ts":' + _seconds(_TS) + ',"color":"%[var(txn.color)]","method":"%HM",'
    '"uri":"%[capture.req.uri,json(utf8s)]","status":%ST,'
    '"request_time":' + _seconds("date(0,ms),sub(txn.ts)") + ","
    '"upstream":"%si:%sp","upstream_status":"%[var(txn.upstream_status)]",'
    '"upstream_time":"%[var(txn.upstream_time)]","server":"%b/%s","term":"%tsc",'
    '"retries":"%rc","timers":"%TR/%Tw/%Tc/%Tr/%Ta",'
    '"ctype":"%[var(txn.ctype),json(utf8s)]","accept":"%[var(txn.accept),json(utf8s)]",'
    '"body":"%[var(txn.body)]","bsize":%[var(txn.bsize,0)]}'
)
# Requests rejected before any rule ran (malformed, or headers not sent in time) have no
# txn variables; this format keeps their line valid JSON with the same keys.
_ERROR_LOG_FORMAT = (
    '{"ts":%Ts.%ms,"color":"' + NO_COLOR + '","method":"%HM","uri":"","status":%ST,"request_time":0.000,'
    '"upstream":"","upstream_status":"","upstream_time":"","server":"","term":"%tsc","retries":"0","timers":"",'
    '"ctype":"","accept":"","body":"","bsize":0}'
)

# --- the recorded bodies ---------------------------------------------------------------------------

DEFAULT_REDACT_FIELDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "authorization",
    "card_number",
    "cvv",
    "ssn",
)
# The largest body logged: its base64 (4/3 of it) and the URI's 8192 fit the log line's 32768,
# and it is well inside HAProxy's buffer (16384), so a body this size is always whole in it.
MAX_RECORD_BODY_BYTES = 8192
_FIELD_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_WRITES = "POST PUT PATCH DELETE"


def _redactions(fields: Sequence[str]) -> list[tuple[str, str]]:
    """(regex, substitution) pairs that blank the values of ``fields`` in a JSON or form body.

    Written as HAProxy 2.6 reads a converter's arguments inside a single-quoted word: each
    argument in double quotes (so commas and parentheses are the regex's), where ``\"`` is a
    quote and ``\\`` a backslash; ``\1`` in the substitution is a back-reference.
    """
    names = "|".join(name.replace(".", "[.]") for name in fields)
    return [
        # JSON: "name" : "string with \"escapes\"" or a number -> "name":"[redacted]"
        (
            rf"\"({names})\"[[:space:]]*:[[:space:]]*(\"(\\\\.|[^\"\\\\])*\"|[-+.0-9eE]+)",
            r"\"\1\":\"[redacted]\"",
        ),
        # application/x-www-form-urlencoded: name=value -> name=[redacted]
        (f"(^|&)({names})=[^&]*", r"\1\2=[redacted]"),
    ]


# Bodies of these types are captured: regsub stops at a NUL byte, so a binary body (or a multipart
# one, which may carry files) would be logged cut short; such writes are logged without their body.
# (No backslash: the line's own parsing would take it.)
_TEXT_TYPES = "^(text/|application/([a-z0-9.+-]*[+])?(json|xml|x-www-form-urlencoded))"


def _record_rules(body_bytes: int, fields: Sequence[str]) -> str:
    """The frontend's rules that set what the log line records of a request (see _LOG_FORMAT)."""
    rules = [
        "http-request set-var(txn.ctype) req.hdr(content-type)",
        "http-request set-var(txn.accept) req.hdr(accept)",
        "http-request set-var(txn.bsize) req.body_size",
        "http-request set-var(txn.bsize) req.hdr_val(content-length) if { req.hdr(content-length) -m found }",
    ]
    if body_bytes:
        # One rule per step: the variable is redacted in place before the log line ever sees it.
        rules.append(
            f"http-request set-var(txn.body) req.body if {{ method {_WRITES} }} {{ var(txn.bsize) -m int le {body_bytes} }} "
            f"{{ var(txn.ctype) -m reg -i {_TEXT_TYPES} }}"
        )
        for regex, subst in _redactions(fields):
            rules.append(
                f"""http-request set-var(txn.body) 'var(txn.body),regsub("{regex}","{subst}",ig)' if {{ var(txn.body) -m found }}"""
            )
        rules.append("http-request set-var(txn.body) var(txn.body),base64 if { var(txn.body) -m found }")
    return "\n".join(f"    {rule}" for rule in rules)


def render_config(
    backends: Mapping[str, Sequence[str]],
    *,
    http_port: int = HTTP_PORT,
    record_body_bytes: int = 4096,
    redact_fields: Sequence[str] = DEFAULT_REDACT_FIELDS,
) -> str:
    """haproxy.cfg declaring one backend per color, routed by the state map.

    ``backends`` maps each color (in order; at least one) to its upstreams as
    ``host:port`` strings, one server each, so a color can be N replicas, or
    ``server_template`` upstreams (up to N servers behind one DNS name). Hosts are
    resolved at start (``init-addr libc,none``: a color whose container does not exist
    yet does not stop HAProxy from starting) and then through the container's resolvers
    (Docker's DNS), so a recreated container is found at its new address.

    Each request's log line keeps its Content-Type, Accept and, for a write whose body is at
    most ``record_body_bytes`` (0: none) and whose type is text, JSON, XML or a form, the body
    with the values of ``redact_fields`` replaced by ``[redacted]`` (names matched ignoring case)
    before it is logged: the traffic recording's source (``deploygate.recording``).

    Pure: the same arguments give the same text. Raises ``ValueError`` for a bad color,
    upstream, port, body limit (0-MAX_RECORD_BODY_BYTES) or field name ([A-Za-z0-9_.-]+).
    """
    if not backends:
        raise ValueError("at least one color must be declared")
    if not 0 < http_port < 65536:
        raise ValueError(f"http_port must be 1-65535, got {http_port}")
    if not 0 <= record_body_bytes <= MAX_RECORD_BODY_BYTES:
        raise ValueError(f"record_body_bytes must be 0-{MAX_RECORD_BODY_BYTES}, got {record_body_bytes}")
    if isinstance(redact_fields, str) or not all(isinstance(f, str) and _FIELD_RE.match(f) for f in redact_fields):
        raise ValueError(f"redact_fields are names of letters, digits, '_', '.' and '-', got {redact_fields!r}")
    if record_body_bytes and not redact_fields:
        raise ValueError("recording bodies needs at least one field name to redact")
    sections = []
    for color, servers in backends.items():
        _check_color(color)
        if isinstance(servers, str) or not servers:
            raise ValueError(f"color {color!r} needs a list of host:port upstreams, got {servers!r}")
        lines = [f"backend {color}"]
        lines += [_server_lines(color, n, upstream) for n, upstream in enumerate(servers, start=1)]
        sections.append("\n".join(lines) + "\n")
    backend_text = "\n".join(sections)
    fallback = next(iter(backends))
    state = STATE_IN_CONTAINER
    # The body is read before the rules run (up to the buffer, within timeout http-request).
    buffer = "    option http-buffer-request\n" if record_body_bytes else ""
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
    # TCP checks only: a color is routable when something accepts connections; whether the
    # app is healthy is the deploy's question, not the proxy's.
    default-server init-addr libc,none resolvers docker check inter {_CHECK_INTERVAL_S}s fall {_CHECK_FALL} rise 1

frontend http
    bind :{http_port}
{buffer}    log stdout len 32768 format raw local0
    log-format '{_LOG_FORMAT}'
    error-log-format '{_ERROR_LOG_FORMAT}'
    tcp-request content set-var(txn.ts) date(0,ms)
{_record_rules(record_body_bytes, redact_fields)}
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
