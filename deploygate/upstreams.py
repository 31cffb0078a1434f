"""Where the proxy reaches a color's replicas: the words a platform and the proxy share.

An upstream is ``host:port`` (one server), or ``host:port*N``: up to N servers, one per
address the name resolves to (a cluster's replicas behind one DNS name, Docker Swarm's
``tasks.<service>``). The platform says which (``Platform.upstreams``); the proxy renders
it (HAProxy's ``server`` or ``server-template``). Neither imports the other.
"""

from __future__ import annotations

import re

# Between an upstream and a number of slots: "tasks.proj_web_green:8000*4".
SLOTS_SEP = "*"
MAX_SLOTS = 64
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})$")


def check_server(address: str) -> tuple[str, int]:
    """``host, port`` of ``address`` (``host:port``, a DNS name or IPv4 address); raises ``ValueError``."""
    host, sep, port = address.rpartition(":")
    if not sep or not _HOST_RE.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"an upstream is host:port (a DNS name or IPv4 address), got {address!r}")
    return host, int(port)


def check_slots(text: str) -> int:
    """The number of slots ``text`` names; raises ``ValueError`` outside 1-``MAX_SLOTS``."""
    if not text.isdigit() or not 0 < int(text) <= MAX_SLOTS:
        raise ValueError(f"a server template has 1-{MAX_SLOTS} slots, got {text!r}")
    return int(text)


def server_template(address: str, slots: int) -> str:
    """The upstream "up to ``slots`` servers, one per address the name in ``address`` resolves to".

    Raises ``ValueError`` for a bad address or count.
    """
    check_server(address)
    check_slots(str(slots))
    return f"{address}{SLOTS_SEP}{slots}"


def parse(upstream: str) -> tuple[str, int, int | None]:
    """``host, port, slots`` of an upstream (``slots`` None: one server); raises ``ValueError``."""
    address, sep, slots = upstream.partition(SLOTS_SEP)
    host, port = check_server(address)
    return host, port, check_slots(slots) if sep else None
