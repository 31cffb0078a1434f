"""The platform seam: the one interface between deploygate and wherever production runs.

Everything that starts, stops, inspects or runs a one-off container for production goes
through a ``Platform``: the database, the app's colors, the proxy, and one-off jobs
(migrate, probes, pg_dump). The flow, the gates and the fixtures know this interface,
never the docker SDK. A single Docker host (``docker_host.DockerHost``) is the first
implementation; "a color" is a set of replicas so a cluster (Docker Swarm) fits the
same shape: several replicas, on several hosts, each with its own address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from deploygate.cache import CacheUrls
from deploygate.config import Settings
from deploygate.database import DatabaseAddress
from deploygate.log import Say
from deploygate.platform.images import Image
from deploygate.replicas import Standby

COLORS = ("blue", "green")
OTHER_COLOR = {"blue": "green", "green": "blue"}
# In a proxy's mount paths: the instance (node) it runs on, filled in by the platform.
INSTANCE = "{instance}"


@dataclass(frozen=True)
class Replica:
    """One running copy of a color: a container on a single host, a task on a cluster."""

    name: str
    state: str  # running | exited | created | restarting | ...
    health: str  # healthy | unhealthy | starting | none (the image declares no HEALTHCHECK)
    address: str  # reachable from this host; "" when it has none
    port: int | None = None  # where this host reaches it, when not the app's own port (a port published per task)


@dataclass(frozen=True)
class ColorState:
    """What one color of the app runs: its release, its image, its replicas."""

    color: str
    release: str
    image_id: str
    replicas: tuple[Replica, ...]
    processes: Mapping[str, str] = field(default_factory=dict)  # process name (worker...) -> its state

    @property
    def running(self) -> bool:
        return any(r.state == "running" for r in self.replicas)

    @property
    def healthy(self) -> bool:
        return bool(self.replicas) and all(r.state == "running" and r.health in ("healthy", "none") for r in self.replicas)

    def urls(self, port: int) -> list[str]:
        """Base URLs of the replicas as this host reaches them (post checks look at the color directly)."""
        return [f"http://{r.address}:{r.port or port}" for r in self.replicas if r.address]


@dataclass(frozen=True)
class JobResult:
    """What a one-off job printed and how it exited."""

    exit_code: int
    output: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


@dataclass(frozen=True)
class ScratchDatabase:
    """A throwaway Postgres (the rehearsal copy): how this host and how jobs reach it."""

    host_address: DatabaseAddress  # from this host
    network: str  # the network a job joins to reach it
    network_host: str  # its address on that network
    name: str  # the container's name (for logs and cleanup)
    copy_kind: str = ""  # how a copy of a physical backup was made: clone or overlay ("" for a restored one)


class Scratch(Protocol):
    """A running scratch database; ``exec`` runs a command inside its container."""

    database: ScratchDatabase

    def exec(self, argv: Sequence[str]) -> tuple[int, str]: ...


class Platform(Protocol):
    """Where production runs. Every method raises ``DeployGateError`` subclasses with a one-line cause."""

    settings: Settings
    kind: str
    network_name: str  # production's network, as people see it (dry run, logs)
    proxy_name: str

    def color_name(self, color: str) -> str:
        """The color's object name, as people see it (a container, a service)."""

    def wait_ready(self, timeout: float) -> None:
        """Wait until the platform answers again (its engine restarted); raises ``WaitTimeout``."""

    # --- images
    def resolve_image(self, reference: str, say: Say) -> Image:
        """A release of the demo source (built if needed) or an image reference the platform has."""

    def service_image(self, name: str, say: Say) -> Image:
        """deploygate's own images: ``postgres`` (production's major) and ``proxy``."""

    def prune_releases(self, keep: set[str], ours: set[str]) -> list[str]:
        """Remove release images of the app whose id is in ``ours`` (this production deployed them) and not in
        ``keep``; returns the tags removed."""

    # --- production's database
    def ensure_database(self, image: Image, password: str) -> list[str]:
        """The database (and its network and volume) exists and accepts connections; returns what changed."""

    def database(self) -> DatabaseAddress:
        """Production's database as this host reaches it."""

    def database_endpoint(self) -> tuple[str, int]:
        """Production's database as the app's containers and jobs reach it: host, port."""

    def database_image(self) -> str:
        """The image id of production's database server (pg_dump and the copy use its version)."""

    # --- production's cache
    def ensure_cache(self, image: Image) -> list[str]:
        """The cache deploygate runs (``cache.service``) exists and answers; returns what changed ([] when it runs none)."""

    def cache_urls(self) -> CacheUrls | None:
        """Production's cache as the app and this host reach it (the team's or deploygate's); None when it has none."""

    def scratch_cache(self, image_id: str, network: str) -> AbstractContextManager[CacheUrls]:
        """A throwaway Redis of ``image_id`` on ``network`` (the rehearsal copy's), removed on exit."""

    # --- the app's colors
    def color(self, color: str) -> ColorState | None:
        """The color as it is now, or None when it has no replica at all."""

    def start_color(
        self, color: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str] | None = None
    ) -> ColorState:
        """Start ``color`` from ``image`` on production's network (not routed to yet), with its ``processes``
        (name -> command, e.g. a worker) beside the web server. Every app container joins ``app.networks``
        too and gets ``app.extra_hosts`` (and, on a single host, the database's pinned address); a network
        that does not exist raises ``StackError`` before anything is created."""

    def start_processes(self, color: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str]) -> None:
        """Start a color's processes on their own (when they must wait for a migration)."""

    def stop_processes(self, color: str) -> None:
        """Stop a color's processes, keeping its web server (no worker on a schema it cannot handle)."""

    def resume_color(self, color: str, *, processes: bool = True) -> ColorState:
        """Start a color that was stopped (kept for rollback); its processes too unless ``processes`` is false.
        A container whose pinned database address is stale is re-pinned first."""

    def stop_color(self, color: str) -> None:
        """Stop a color (processes first), keeping it for a rollback."""

    def remove_color(self, color: str) -> None:
        """Remove a color and its processes for good (nothing when it does not exist)."""

    def wait_healthy(self, color: str, timeout: float) -> ColorState:
        """Wait until every replica is healthy; fails at once (with its last log lines) when one, or a process, has exited."""

    def color_output(self, color: str, since: float, until: float | None = None) -> str:
        """The output (stdout and stderr) of the color's web replicas from ``since`` (to ``until``: a platform may
        give more), each line after its RFC 3339 timestamp as ``docker logs --timestamps`` prints it ("" when
        the color does not exist)."""

    def upstreams(self, color: str) -> list[str]:
        """``host:port`` of the color's replicas as the proxy reaches them (or a ``upstreams.server_template``:
        up to N replicas behind one DNS name)."""

    # --- one-off jobs (migrate, probes, pg_dump)
    def run_job(
        self,
        image: str,
        argv: Sequence[str],
        *,
        environment: Mapping[str, str],
        mounts: Mapping[str, str] | None = None,
        writable: Sequence[str] = (),
        network: str | None = None,
        say: Say | None = None,
    ) -> JobResult:
        """Run ``argv`` in a fresh container of ``image`` and remove it. ``mounts`` are host path -> path
        inside (read-only unless the host path is in ``writable``); ``network`` defaults to production's,
        where a job is attached as the app's containers are (``app.networks``, host entries)."""

    def standbys(self) -> list[Standby]:
        """The streaming standbys this platform runs beside its database (``database.standbys``), running or not."""

    # --- scratch databases (the rehearsal copy)
    def scratch_postgres(self, image_id: str, *, user: str, dbname: str, mounts: Mapping[str, str]) -> AbstractContextManager[Scratch]:
        """A throwaway Postgres of ``image_id`` (removed on exit, even when its start fails)."""

    def scratch_from_backup(
        self, image_id: str, data_dir: str, *, user: str, dbname: str, copy: str = "auto"
    ) -> AbstractContextManager[Scratch]:
        """A throwaway Postgres of ``image_id`` started on a copy-on-write copy of ``data_dir`` (a physical
        backup's data directory, never written), made as ``copy`` (``backup.copy``) asks; removed on exit
        with what it wrote."""

    def remove_stale_scratch(self) -> list[str]:
        """Scratch databases a crashed run left behind, removed."""

    # --- the proxy's container(s)
    def proxy_instances(self) -> list[str]:
        """The proxies' names, one per node (``[""]``: the one proxy of a single host)."""

    def proxy_urls(self) -> list[str]:
        """Every proxy's published address, as users (and this host) reach it, in the order of ``proxy_instances``."""

    def ensure_proxy(
        self,
        image: Image,
        command: Sequence[str],
        mounts: Mapping[str, str],
        writable: Sequence[str],
        *,
        user: str,
        port_in_container: int,
    ) -> list[str]:
        """The proxies run (as ``user``), ``port_in_container`` published; returns what changed.

        ``mounts`` may hold ``INSTANCE`` in their host paths: each proxy gets its own directories.
        """

    def proxy_exists(self) -> bool:
        """Whether the proxy exists (running or not)."""

    def proxy_running(self, instance: str = "") -> bool:
        """Whether the proxy ``instance`` runs now."""

    # --- the whole of production
    def inventory(self) -> dict[str, str]:
        """Every long-running part of production (not one-off jobs): name -> state."""

    def footprint(self) -> set[str]:
        """Every object production holds on the platform (containers with their state, networks, volumes,
        scratch databases, unnamed volumes nobody uses): what a leak check compares."""

    def down(self, *, volumes: bool = False) -> list[str]:
        """Remove production's containers and network (and its data with ``volumes``)."""
