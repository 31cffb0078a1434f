"""A ``ContainerSpec`` as a Docker Swarm service (pure), and what the swarm platform reads back from tasks.

This kernel class has no IPVS, so no service uses Swarm's virtual IPs or routing mesh:
every service is DNS round-robin (``dnsrr``) and publishes its ports in host mode, on the
port a spec fixes (the proxy's) or one the engine picks (a web task's, the database's).
"""

from __future__ import annotations

import datetime
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from docker.constants import STREAM_HEADER_SIZE_BYTES
from docker.types import EndpointSpec, Healthcheck, Mount, RestartPolicy, ServiceMode

from deploygate.platform.base import INSTANCE
from deploygate.platform.specs import ContainerSpec, Port
from deploygate.platform.specs import Mount as SpecMount

# Labels of our own on the services: how many replicas a color runs when it runs, whether
# its image declares a HEALTHCHECK (Swarm then holds a task in "starting" until it is healthy).
REPLICAS_LABEL = "deploygate.replicas"
HEALTHCHECK_LABEL = "deploygate.healthcheck"
# Swarm fills this in per node in a service's mounts: each node's proxy gets its own directories.
NODE_HOSTNAME = "{{.Node.Hostname}}"
# Task states after which a task will never run again.
ENDED = ("complete", "failed", "rejected", "shutdown", "orphaned", "remove")
FAILED = ("failed", "rejected")
# Swarm starts a failed task of a service again after this long (nanoseconds).
_RESTART_DELAY_NS = 1_000_000_000


def dnsrr(ports: Sequence[Port] = ()) -> dict:
    """Endpoint spec: DNS round-robin (no virtual IP: no IPVS here), ports published in host mode.

    A port without ``published`` gets one the engine picks (two tasks on one node would fight for a fixed one).
    """
    spec = EndpointSpec(mode="dnsrr")
    if not ports:
        return spec
    # A plain dict: docker-py's EndpointSpec cannot leave the published port to the engine.
    published = []
    for port in ports:
        published.append({"Protocol": "tcp", "TargetPort": port.inside, "PublishMode": "host"})
        if port.published is not None:
            published[-1]["PublishedPort"] = port.published
    return spec | {"Ports": published}


def _mount(mount: SpecMount) -> Mount:
    """A spec's mount as a service's; a proxy's ``INSTANCE`` in its path becomes the node's hostname."""
    if mount.volume:
        return Mount(target=mount.target, source=mount.source, type="volume", read_only=mount.read_only, labels=dict(mount.volume_labels))
    return Mount(target=mount.target, source=mount.source.replace(INSTANCE, NODE_HOSTNAME), type="bind", read_only=mount.read_only)


def service_kwargs(spec: ContainerSpec, networks: Sequence[str], manager_node: str) -> dict[str, Any]:
    """The keyword arguments of ``services.create`` for ``spec``: on ``networks`` (ids, in the spec's order),
    placed on ``manager_node`` when the spec is pinned to the node of this host's files."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": spec.name,
        "networks": list(networks),
        "env": dict(spec.environment),
        "labels": dict(spec.labels),
        "endpoint_spec": dnsrr(spec.ports),
    }
    if spec.command is not None:
        kwargs["args"] = list(spec.command)
    if spec.extra_hosts:
        kwargs["hosts"] = dict(spec.extra_hosts)
    if spec.user:
        kwargs["user"] = spec.user
    if spec.mounts:
        kwargs["mounts"] = [_mount(m) for m in spec.mounts]
    if spec.per_node:
        kwargs["mode"] = ServiceMode("global")
    elif spec.service:
        kwargs["mode"] = ServiceMode("replicated", replicas=spec.replicas)
    else:
        kwargs["mode"] = ServiceMode("replicated-job")
    kwargs["restart_policy"] = RestartPolicy(condition="any", delay=_RESTART_DELAY_NS) if spec.service else RestartPolicy(condition="none")
    if not spec.healthcheck:
        kwargs["healthcheck"] = Healthcheck(test=["NONE"])
    if spec.pinned_node:
        kwargs["constraints"] = [f"node.id=={manager_node}"]
    return kwargs


def published_port(task: dict) -> int | None:
    """The host port a task's first port is published on (None until the engine reports it)."""
    ports = ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []
    return ports[0].get("PublishedPort") if ports else None


def when(timestamp: str) -> datetime.datetime:
    """An engine's RFC 3339 timestamp (nanoseconds, ``Z``) as an aware datetime; the epoch when there is none."""
    if not timestamp:
        return datetime.datetime.fromtimestamp(0, datetime.UTC)
    head, _, fraction = timestamp.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]:0<6}+00:00")


def one_line(text: str) -> str:
    return " | ".join(line for line in text.splitlines() if line.strip()) or "no logs"


# How long a service's logs may take to arrive: a node whose engine is down holds the stream open forever.
LOGS_DEADLINE_S = 10.0


def service_logs(
    api: Any, service_id: str, since: float = 0, *, tail: int | None = None, timestamps: bool = True, deadline_s: float = LOGS_DEADLINE_S
) -> bytes:
    """A service's output since ``since`` (its last ``tail`` lines if given), or what arrived within ``deadline_s``.

    The manager waits for every task's logs, also on a node whose engine no longer answers, and
    docker-py reads the stream without a socket timeout. So the stream's own socket gets one: the
    time left to the deadline, set before each read; a read that outlasts it ends the reading, and
    what arrived is kept (docker-py's own request, kept to reach its socket: its ``service.logs``
    returns a generator that hides it). Closing the response from another thread instead waits
    for the blocked read's lock, forever (seen in CI).
    """
    params = {
        "details": False,
        "follow": False,
        "stdout": True,
        "stderr": True,
        "since": int(since),
        "timestamps": timestamps,
        "tail": "all" if tail is None else tail,
    }
    response = api._get(api._url("/services/{0}/logs", service_id), params=params, stream=True)
    api._raise_for_status(response)
    sock = _stream_socket(response)
    deadline = time.monotonic() + deadline_s
    chunks: list[bytes] = []
    try:
        # docker-py's own reader of this stream (_multiplexed_response_stream_helper) turns the socket's
        # timeout off first; these frames are read as it reads them, the timeout kept.
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            header = response.raw.read(STREAM_HEADER_SIZE_BYTES)
            if not header:
                break
            _, length = struct.unpack(">BxxxL", header)
            data = response.raw.read(length) if length else b""
            if length and not data:
                break
            chunks.append(data)
    except Exception:  # noqa: BLE001 - a read past the deadline (a timeout, however the layers above wrap it)
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # nothing more is read from it; the close below cannot wait on a read
        except OSError:
            pass
        response.close()
    return b"".join(chunks)


def _stream_socket(response: Any) -> socket.socket:
    """The socket a streamed docker-py response reads from (as ``APIClient._get_raw_response_socket`` finds it)."""
    raw = response.raw._fp.fp.raw
    return getattr(raw, "_sock", raw)
