"""What production runs, as data: containers, services and jobs built by pure functions.

A ``ContainerSpec`` says what runs (image, command, environment, mounts, ports, networks,
host entries, labels, restart, readiness) and nothing of how: a single host
(``docker_containers``) turns it into a container, a swarm (``swarm_services``) into a
service. The builders here take the settings and what the platform found on its engine
(the database's address to pin), and give the same spec for the same input, so each is
unit-tested by its exact fields; running a spec is the platform's only job. Kamal's
commands are built and tested the same way, apart from the one runner that executes them.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from deploygate.cache import REDIS_PORT
from deploygate.config import Settings
from deploygate.platform.base import INSTANCE
from deploygate.platform.images import Image
from deploygate.platform.naming import DB_PORT, DIGEST_LABEL, PROCESS_LABEL, Names, color_labels, labels
from deploygate.platform.networking import Attachments, app_attachments

# Where the Postgres image keeps its data.
PGDATA = "/var/lib/postgresql/data"
# How long the production database may take to accept connections after its start.
DATABASE_READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Mount:
    """A host path (or, with ``volume``, a named volume) seen at ``target`` inside."""

    source: str
    target: str
    read_only: bool = True
    volume: bool = False
    volume_labels: Mapping[str, str] = field(default_factory=dict)  # a volume created for it carries these
    # Docker's local driver options a volume created for it gets: a bind on a host directory (database.data_dir).
    volume_options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Port:
    """A port inside that this host must reach.

    ``published``: the host port it is published on (``host_ip`` on a single host, every
    node of a swarm); None when the platform chooses how this host reaches it: a single
    host reaches a container at its address, a swarm publishes a task's port on a port its
    engine picks (never a fixed one: two tasks on one node would fight for it).
    """

    inside: int
    published: int | None = None
    host_ip: str = ""


@dataclass(frozen=True)
class Readiness:
    """How a platform knows a started part is ready (testcontainers' waiting strategies, as data).

    ``command``: run inside, ready when it exits 0; ``http_path`` on ``port``: ready when it
    answers 2xx (the app's verdict when its image declares no HEALTHCHECK, else Docker's).
    """

    command: tuple[str, ...] = ()
    http_path: str = ""
    port: int | None = None
    timeout_s: float | None = None  # None: the caller's


@dataclass(frozen=True)
class ContainerSpec:
    """One part of production (or a one-off job) as data; a platform runs it."""

    role: str  # db | web | process | proxy | oneoff: its ROLE_LABEL
    name: str | None  # None: the engine names it (a one-off container)
    image: str  # a tag or an id
    command: tuple[str, ...] | None = None  # None: the image's own
    environment: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    ports: tuple[Port, ...] = ()
    networks: tuple[str, ...] = ()  # the first is the one it is created on, the project's own for the app
    extra_hosts: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    service: bool = True  # restarted unless stopped; False: a one-off job that runs once
    replicas: int = 1
    per_node: bool = False  # one on every node (the proxy of a swarm)
    pinned_node: bool = False  # runs on the node whose files it uses (its volume, this host's paths): a swarm's manager
    healthcheck: bool = True  # False: the image's HEALTHCHECK is ignored (it means nothing for a one-off command)
    readiness: Readiness | None = None

    @property
    def attachments(self) -> Attachments:
        return Attachments(networks=self.networks, extra_hosts=self.extra_hosts)


def bind_mounts(mounts: Mapping[str, str] | None, writable: Sequence[str] = ()) -> tuple[Mount, ...]:
    """Host path -> path inside as ``Mount``s, read-only unless the host path is in ``writable``."""
    return tuple(Mount(source=host, target=inside, read_only=host not in writable) for host, inside in (mounts or {}).items())


def for_instance(spec: ContainerSpec, instance: str) -> ContainerSpec:
    """``spec`` with ``INSTANCE`` in its mounts' host paths filled in by ``instance`` (each proxy's own directories);
    ``""``: the one proxy of a single host, whose directories are the instance-less ones."""
    old, new = (f"/{INSTANCE}", "") if instance == "" else (INSTANCE, instance)
    return replace(spec, mounts=tuple(replace(m, source=m.source.replace(old, new)) for m in spec.mounts))


def attachments_of(settings: Settings, pin: Mapping[str, str] | None = None) -> Attachments:
    """The app's networks (the project's, then ``app.networks``) and host entries (``app.extra_hosts``, the ``pin``).

    Raises ``ConfigError`` for a bad host entry.
    """
    return app_attachments(Names(settings.project).network, settings.app_networks, settings.app_extra_hosts, pin)


def app_readiness(settings: Settings) -> Readiness:
    """A color is ready when every replica is healthy: Docker's verdict, or its health URL answering 2xx."""
    return Readiness(http_path=settings.health_path, port=settings.app_port)


def web_spec(
    settings: Settings,
    color: str,
    image: Image,
    environment: Mapping[str, str],
    *,
    pin: Mapping[str, str] | None = None,
    replicas: int = 1,
) -> ContainerSpec:
    """The web server of ``color``: ``replicas`` copies of ``image`` on the app's networks, with its host entries
    (``pin``: the database's name -> address, on a single host). Raises ``ConfigError`` for a bad host entry."""
    attachments = attachments_of(settings, pin)
    return ContainerSpec(
        role="web",
        name=Names(settings.project).web(color),
        image=image.tag,
        environment=dict(environment),
        ports=(Port(settings.app_port),),
        networks=attachments.networks,
        extra_hosts=dict(attachments.extra_hosts),
        labels=color_labels(settings.project, "web", color, image),
        replicas=replicas,
        readiness=app_readiness(settings),
    )


def process_spec(
    settings: Settings,
    color: str,
    image: Image,
    environment: Mapping[str, str],
    name: str,
    command: str,
    *,
    pin: Mapping[str, str] | None = None,
) -> ContainerSpec:
    """A process of ``color`` beside its web server (a worker): ``command`` (shell words) in ``image``, attached as the app is."""
    attachments = attachments_of(settings, pin)
    return ContainerSpec(
        role="process",
        name=Names(settings.project).process(name, color),
        image=image.tag,
        command=tuple(shlex.split(command)),
        environment=dict(environment),
        networks=attachments.networks,
        extra_hosts=dict(attachments.extra_hosts),
        labels=color_labels(settings.project, "process", color, image, **{PROCESS_LABEL: name}),
    )


def job_spec(
    settings: Settings,
    image: str,
    argv: Sequence[str],
    environment: Mapping[str, str],
    *,
    mounts: Mapping[str, str] | None = None,
    writable: Sequence[str] = (),
    network: str | None = None,
    pin: Mapping[str, str] | None = None,
    name: str | None = None,
) -> ContainerSpec:
    """A one-off job: ``argv`` in a fresh container of ``image``, run once, on the node of ``mounts``.

    Against production (``network`` None or production's) it is attached as the app's containers
    are (the app's image reaches what the app reaches, pg_dump's gets the database's ``pin``);
    otherwise it joins ``network`` alone (a scratch database's).
    """
    names = Names(settings.project)
    attachments = attachments_of(settings, pin) if network in (None, names.network) else Attachments(networks=(network,))
    return ContainerSpec(
        role="oneoff",
        name=name,
        image=image,
        command=tuple(argv),
        environment=dict(environment),
        mounts=bind_mounts(mounts, writable),
        networks=attachments.networks,
        extra_hosts=dict(attachments.extra_hosts),
        labels=labels(settings.project, "oneoff"),
        service=False,
        pinned_node=True,
        healthcheck=False,
    )


def database_spec(settings: Settings, image: Image, password: str) -> ContainerSpec:
    """Production's Postgres: its data in the project's volume, on the project's network, ready when it accepts connections.

    Its readiness asks the server itself on 127.0.0.1: the image's first start runs a
    temporary server on a unix socket only, which must not count.
    """
    names = Names(settings.project)
    data_dir = settings.path(settings.db_data_dir) if settings.db_data_dir else None
    return ContainerSpec(
        role="db",
        name=names.db,
        image=image.tag,
        environment={"POSTGRES_USER": settings.db_user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": settings.db_name},
        mounts=(
            Mount(
                source=names.db_volume,
                target=PGDATA,
                read_only=False,
                volume=True,
                volume_labels=labels(settings.project, "db-data"),
                volume_options={"type": "none", "o": "bind", "device": str(data_dir)} if data_dir else {},
            ),
        ),
        ports=(Port(DB_PORT),),
        networks=(names.network,),
        labels=labels(settings.project, "db", **{DIGEST_LABEL: image.id}),
        pinned_node=True,
        readiness=Readiness(
            command=("pg_isready", "-q", "-h", "127.0.0.1", "-U", settings.db_user, "-d", settings.db_name),
            timeout_s=DATABASE_READY_TIMEOUT_S,
        ),
    )


def standby_spec(settings: Settings, image: Image, password: str) -> ContainerSpec:
    """A streaming hot standby of production's Postgres (the same image), through its own replication slot.

    Its first start copies the primary (``pg_basebackup``, in the image's entrypoint); it is ready once it
    answers on 127.0.0.1, which a standby does only when it has reached a consistent state.
    """
    names = Names(settings.project)
    primary = database_spec(settings, image, password)
    return replace(
        primary,
        role="db-replica",
        name=names.db_standby,
        environment={
            "POSTGRES_USER": settings.db_user,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_STANDBY_OF": names.db,
            "POSTGRES_STANDBY_SLOT": names.db_standby_slot,
            "POSTGRES_STANDBY_NAME": names.db_standby,
        },
        mounts=(
            replace(
                primary.mounts[0],
                source=names.db_standby_volume,
                volume_labels=labels(settings.project, "db-replica-data"),
                volume_options={},  # the standby's data stays in Docker's storage: only the primary's is snapshotted
            ),
        ),
        labels=labels(settings.project, "db-replica", **{DIGEST_LABEL: image.id}),
    )


# The cache's memory limit: a cache evicts the least recently used entries rather than refusing writes.
CACHE_MAXMEMORY = "256mb"


def cache_spec(settings: Settings, image: Image) -> ContainerSpec:
    """Production's Redis (``cache.service``): nothing kept on disk (a cache restarts empty), least recently
    used entries evicted at its memory limit, on the project's network; ready when it answers PING."""
    names = Names(settings.project)
    return ContainerSpec(
        role="cache",
        name=names.cache,
        image=image.tag,
        command=(
            "redis-server",
            *("--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"),
            *("--maxmemory", CACHE_MAXMEMORY, "--maxmemory-policy", "allkeys-lru"),
        ),
        ports=(Port(REDIS_PORT),),
        networks=(names.network,),
        labels=labels(settings.project, "cache", **{DIGEST_LABEL: image.id}),
        readiness=Readiness(command=("redis-cli", "ping"), timeout_s=30.0),
    )


def proxy_spec(
    settings: Settings,
    image: Image,
    command: Sequence[str],
    mounts: Mapping[str, str],
    writable: Sequence[str],
    *,
    user: str,
    port_in_container: int,
) -> ContainerSpec:
    """The proxy: ``command`` in ``image`` as ``user``, one per node, ``port_in_container`` published on ``proxy_port``.

    Its ``mounts`` may hold ``base.INSTANCE`` in their host paths: the platform fills in each proxy's own.
    """
    return ContainerSpec(
        role="proxy",
        name=Names(settings.project).proxy,
        image=image.tag,
        command=tuple(command),
        mounts=bind_mounts(mounts, writable),
        ports=(Port(port_in_container, published=settings.proxy_port, host_ip=settings.proxy_bind),),
        networks=(Names(settings.project).network,),
        labels=labels(settings.project, "proxy", **{DIGEST_LABEL: image.id}),
        user=user,
        per_node=True,
    )
