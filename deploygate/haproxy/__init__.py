"""The HAProxy proxy: its configuration, its routing state on disk, and color switches through its runtime API.

Both colors are declared once in a configuration rendered by a pure function and never
reloaded. Which color serves, and whether a maintenance hold answers instead, is a map
file (``state.map``) HAProxy reads at start; every change is written there atomically
first and then applied to the running proxy with ``set map`` on its runtime API (a unix
socket in a directory mounted into the proxy container only). A switch therefore closes
no client connection: a keep-alive client's next request simply goes to the other
backend. A restarted proxy container reads the same file and routes as before.

Every request is logged as one JSON line (the keys ``deploygate.proxy.parse_access_line``
reads) to the container's stdout, which is a bind-mounted file: see ``command()``.
"""

from deploygate.haproxy.config import (
    ACCESS_LOG_NAME,
    COLOR_HEADER,
    CONFIG_DIR_IN_CONTAINER,
    CONFIG_NAME,
    DEFAULT_REDACT_FIELDS,
    HAPROXY_GID,
    HAPROXY_UID,
    HOLD,
    HTTP_PORT,
    LOG_DIR_IN_CONTAINER,
    MAX_RECORD_BODY_BYTES,
    NO_COLOR,
    RUN_DIR_IN_CONTAINER,
    SERVER_DOWN_AFTER_S,
    SOCKET_NAME,
    STATE_IN_CONTAINER,
    STATE_NAME,
    command,
    container_user,
    render_config,
    server_template,
)
from deploygate.haproxy.runtime import RuntimeAPI, api, backend_counts, in_flight, ready_servers, recheck, runtime_state
from deploygate.haproxy.state import ProxyDirs, RoutingState, current, parse_state, prepare, render_state, write_state
from deploygate.haproxy.switch import hold, reapply, release_hold, route, wait_answering, wait_drained

__all__ = [
    "ACCESS_LOG_NAME",
    "COLOR_HEADER",
    "CONFIG_DIR_IN_CONTAINER",
    "CONFIG_NAME",
    "DEFAULT_REDACT_FIELDS",
    "HAPROXY_GID",
    "HAPROXY_UID",
    "HOLD",
    "HTTP_PORT",
    "LOG_DIR_IN_CONTAINER",
    "MAX_RECORD_BODY_BYTES",
    "NO_COLOR",
    "RUN_DIR_IN_CONTAINER",
    "SERVER_DOWN_AFTER_S",
    "SOCKET_NAME",
    "STATE_IN_CONTAINER",
    "STATE_NAME",
    "ProxyDirs",
    "RoutingState",
    "RuntimeAPI",
    "api",
    "backend_counts",
    "command",
    "container_user",
    "current",
    "hold",
    "in_flight",
    "parse_state",
    "prepare",
    "reapply",
    "recheck",
    "ready_servers",
    "release_hold",
    "render_config",
    "render_state",
    "route",
    "runtime_state",
    "server_template",
    "wait_answering",
    "wait_drained",
    "write_state",
]
