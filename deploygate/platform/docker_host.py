"""Production on a single Docker host: one container per color, the database (and its standby) and the proxy beside them.

Each part is built as a spec (``specs``) and run as a container (``docker_containers``). Every container,
network and volume carries ``deploygate.project`` (and a role), so the true state is always read back
from Docker and cleanup finds things by label rather than by remembering names. The platform package
and the engine bootstrap are the only code of the library that speaks to the docker SDK.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import docker
import docker.errors
import requests

from deploygate.cache import CacheUrls
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect, db_password
from deploygate.errors import ConfigError, StackError
from deploygate.log import Say, quiet
from deploygate.platform import cache_service, engine, images, scratch
from deploygate.platform.base import COLORS, ColorState, JobResult
from deploygate.platform.docker_containers import (
    Container,
    address,
    create,
    ensure_service,
    fail_if_dead,
    inventory,
    labelled_objects,
    log_tail,
    pinned_as,
    recreate_spec,
    remove_labelled,
    replica,
    run_to_end,
    status,
    timestamped_output,
)
from deploygate.platform.images import Image
from deploygate.platform.naming import COLOR_LABEL, DB_PORT, PROCESS_LABEL, PROJECT_LABEL, RELEASE_LABEL, ROLE_LABEL, ProjectObjects
from deploygate.platform.networking import missing_networks, missing_networks_error
from deploygate.platform.scratch_host import ScratchHost
from deploygate.platform.specs import (
    ContainerSpec,
    app_readiness,
    attachments_of,
    database_spec,
    for_instance,
    job_spec,
    process_spec,
    proxy_spec,
    standby_spec,
    web_spec,
)
from deploygate.replicas import Standby, ensure_slot
from deploygate.waiting import wait_until

# Where other modules find these (tests, the target rigs).
__all__ = ["DockerHost", "PROJECT_LABEL", "ROLE_LABEL", "remove_labelled"]


class DockerHost(ProjectObjects, ScratchHost):
    """Production on the one engine ``client`` talks to (the ``Platform`` of a single host)."""

    kind = "docker-host"

    def __init__(self, client: docker.DockerClient, settings: Settings) -> None:
        super().__init__(settings)
        self.client = client

    @classmethod
    def connect(cls, settings: Settings, say: Say = print) -> DockerHost:
        """The local engine (installed and started when none answers)."""
        return cls(engine.ensure_engine(say=say), settings)

    # --- helpers ---------------------------------------------------------------------------------

    def _get(self, name: str) -> Container | None:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _db_pin(self) -> dict[str, str]:
        """The database deploygate runs, its standby and its cache, name -> address on the project's network: one
        stopped later keeps its entry, so the app fails at once (and falls back) instead of waiting on DNS."""
        names = [] if self._external_database else [self.names.db] + ([self.names.db_standby] if self.settings.db_standbys else [])
        names += [self.names.cache] if self.settings.cache_service != "none" else []
        containers = {name: self._get(name) for name in names}
        found = {name: address(c, self.names.network) for name, c in containers.items() if c is not None and c.status == "running"}
        return {name: where for name, where in found.items() if where}

    def _checked(self, spec: ContainerSpec) -> ContainerSpec:
        """``spec`` once every network it joins besides the project's exists; raises ``StackError`` (before
        anything is created) otherwise."""
        self._check_networks(spec.networks)
        return spec

    def _check_networks(self, networks: Sequence[str]) -> None:
        extra = networks[1:]
        if extra:
            # The engine's name filter matches parts of names: compare them exactly.
            existing = [n.name for n in self.client.networks.list(names=list(extra))]
            missing = missing_networks(extra, existing)
            if missing:
                raise missing_networks_error(missing, "this Docker engine")

    def _repinned(self, container: Container) -> Container:
        """``container`` (an app container) with the database's address as it is now.

        A running one has the entry rewritten in its hosts file (it may serve: it is not
        replaced unless that fails); a stopped one is created again, stopped, from the same
        image, command, environment and labels, with today's networks and host entries (its
        spec is what the engine writes into its hosts file when it starts).
        """
        pin = self._db_pin()
        container.reload()
        if not pin or pinned_as(container, pin):
            return container
        running = container.status == "running"
        spec = self._checked(recreate_spec(container.attrs, attachments_of(self.settings, pin)))
        container.remove(force=True, v=True)
        created = create(self.client, spec, start=running)
        created.reload()
        return created

    def _ensure_network(self, changes: list[str]) -> None:
        if not self.client.networks.list(names=[self.names.network]):
            self.client.networks.create(self.names.network, driver="bridge", labels=self._labels("network"))
            changes.append(f"created network {self.names.network}")

    def _start_if_stopped(self, container: Container, changes: list[str]) -> None:
        if container.status != "running":
            container.start()
            changes.append(f"started {container.name}")

    def wait_ready(self, timeout: float) -> None:
        # The engine's socket refusing (restarting) is an OSError (requests' errors are): transient.
        wait_until(self.client.ping, timeout=timeout, interval=1.0, what="the Docker engine to answer")

    # --- images ----------------------------------------------------------------------------------

    def resolve_image(self, reference: str, say: Say) -> Image:
        return images.resolve_candidate(self.client, self.settings, reference, say=say)

    def service_image(self, name: str, say: Say) -> Image:
        builders = {"postgres": images.postgres_image, "proxy": images.haproxy_image, "cache": images.redis_image}
        return builders[name](self.client, self.settings, say)

    def prune_releases(self, keep: set[str], ours: set[str]) -> list[str]:
        return images.prune_releases(self.client, self.settings, keep=keep, ours=ours)

    # --- production's database -------------------------------------------------------------------

    def ensure_database(self, image: Image, password: str) -> list[str]:
        changes: list[str] = []
        self._check_networks(attachments_of(self.settings).networks)  # the team's: said before anything is created
        self._ensure_network(changes)
        if self._external_database:
            connect(self.database()).close()  # answers, with these credentials: else a one-line StackError now
            return changes
        if self.settings.db_standbys not in (0, 1):
            raise ConfigError(f"database.standbys must be 0 or 1, got {self.settings.db_standbys}")
        changes += ensure_service(self.client, database_spec(self.settings, image, password))
        if self.settings.db_standbys:
            ensure_slot(self.database(), self.names.db_standby_slot)
            changes += ensure_service(self.client, standby_spec(self.settings, image, password))
        return changes

    def ensure_cache(self, image: Image) -> list[str]:
        return cache_service.ensure(self.client, self.settings, image) if self.settings.cache_service != "none" else []

    def cache_urls(self) -> CacheUrls | None:
        return cache_service.urls(self.client, self.settings)

    def standbys(self) -> list[Standby]:
        if not self.settings.db_standbys or self._external_database:
            return []
        container = self._get(self.names.db_standby)
        # Not running: its name stands in for the address, so asking it fails and names it.
        found = address(container, self.names.network) if container is not None and container.status == "running" else ""
        return [Standby(self.names.db_standby, dataclasses.replace(self.database(), host=found or self.names.db_standby))]

    def _db_container(self) -> Container:
        container = self._get(self.names.db)
        if container is None or container.status != "running":
            raise StackError(f"the production database {self.names.db} is not running; run `nox -s up`")
        return container

    def database(self) -> DatabaseAddress:
        s = self.settings
        if self._external_database:
            return DatabaseAddress(host=s.db_host, port=s.db_port, name=s.db_name, user=s.db_user, password=db_password(s))
        found = address(self._db_container(), self.names.network)
        if not found:
            raise StackError(f"{self.names.db} has no address on {self.names.network}")
        return DatabaseAddress(host=found, port=DB_PORT, name=s.db_name, user=s.db_user, password=db_password(s))

    def database_image(self) -> str:
        if self._external_database:
            # pg_dump and the rehearsal copy must be the server's own major version, whatever was configured.
            with connect(self.database()) as conn:
                major = conn.execute("SHOW server_version_num").fetchone()[0]
            settings = self.settings.replace(postgres_major=int(major) // 10000)
            return images.postgres_image(self.client, settings, quiet).id
        return self._db_container().image.id

    # --- the app's colors -----------------------------------------------------------------------

    def _web(self, color: str) -> Container | None:
        if color not in COLORS:
            raise StackError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
        return self._get(self.names.web(color))

    def _processes(self, color: str) -> list[Container]:
        """The color's process containers (workers...), found by label."""
        selector = [f"{PROJECT_LABEL}={self.settings.project}", f"{COLOR_LABEL}={color}", f"{ROLE_LABEL}=process"]
        return self.client.containers.list(all=True, filters={"label": selector})

    def _state(self, color: str, container: Container) -> ColorState:
        container.reload()
        processes = {c.labels.get(PROCESS_LABEL, c.name): status(c) for c in self._processes(color)}
        return ColorState(
            color=color,
            release=container.labels.get(RELEASE_LABEL, ""),
            image_id=container.image.id,
            replicas=(replica(container, self.names.network),),
            processes=processes,
        )

    def color(self, color: str) -> ColorState | None:
        container = self._web(color)
        return self._state(color, container) if container is not None else None

    def start_color(
        self, color: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str] | None = None
    ) -> ColorState:
        if self._web(color) is not None:
            raise StackError(f"{self.names.web(color)} exists already; remove it first")
        pin = self._db_pin()
        web = self._checked(web_spec(self.settings, color, image, environment, pin=pin))
        container = create(self.client, web)
        self.start_processes(color, image, environment, processes or {})
        return self._state(color, container)

    def start_processes(self, color: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str]) -> None:
        pin = self._db_pin() if processes else {}
        specs = [
            self._checked(process_spec(self.settings, color, image, environment, name, command, pin=pin))
            for name, command in processes.items()
        ]
        for spec in specs:
            create(self.client, spec)

    def stop_processes(self, color: str) -> None:
        for container in self._processes(color):
            if container.status == "running":
                container.stop(timeout=30)

    def _existing_web(self, color: str) -> Container:
        container = self._web(color)
        if container is None:
            raise StackError(f"{self.names.web(color)} does not exist")
        return container

    def resume_color(self, color: str, *, processes: bool = True) -> ColorState:
        for container in [self._existing_web(color), *(self._processes(color) if processes else [])]:
            # The database may have another address than when this color was created or last ran.
            container = self._repinned(container)
            if container.status != "running":
                container.start()
        return self._state(color, self._existing_web(color))

    def stop_color(self, color: str) -> None:
        # Processes first: a worker must not outlive the web server of its release.
        self.stop_processes(color)
        self._existing_web(color).stop(timeout=30)

    def remove_color(self, color: str) -> None:
        for container in [*self._processes(color), self._web(color)]:
            if container is not None:
                container.remove(force=True, v=True)

    def wait_healthy(self, color: str, timeout: float) -> ColorState:
        web, readiness = self._existing_web(color), app_readiness(self.settings)

        def healthy() -> ColorState | None:
            for container in [web, *self._processes(color)]:
                fail_if_dead(container)
            state = self._state(color, web)
            only = state.replicas[0]
            if only.health == "none":
                # No HEALTHCHECK in the image: the app's health URL answering 2xx is the verdict.
                answer = requests.get(f"http://{only.address}:{readiness.port}{readiness.http_path}", timeout=3)
                return state if only.state == "running" and answer.ok else None
            return state if state.healthy else None

        return wait_until(healthy, timeout=timeout, interval=0.5, what=f"{web.name} to become healthy", last_seen=lambda: log_tail(web))

    def color_output(self, color: str, since: float, until: float | None = None) -> str:
        web = self._web(color)
        return timestamped_output(web, since, until) if web is not None else ""

    def upstreams(self, color: str) -> list[str]:
        return [f"{self.names.web(color)}:{self.settings.app_port}"]

    # --- one-off jobs ----------------------------------------------------------------------------

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
        """Lines the job prints go to ``say`` as they come (progress of long work); it is removed even when streaming fails."""
        pin = self._db_pin() if network in (None, self.names.network) else {}
        spec = job_spec(
            self.settings, image, argv, environment, mounts=mounts, writable=writable, network=network, pin=pin, name=self.names.job()
        )
        return run_to_end(self.client, self._checked(spec), say)

    # --- the proxy -------------------------------------------------------------------------------

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
        changes: list[str] = []
        self._ensure_network(changes)
        container = self._get(self.names.proxy)
        if container is None:
            spec = proxy_spec(self.settings, image, command, mounts, writable, user=user, port_in_container=port_in_container)
            # One proxy: its directories are the instance-less ones.
            create(self.client, for_instance(spec, ""))
            changes.append(f"created {self.names.proxy} on {self.settings.proxy_bind}:{self.settings.proxy_port}")
        else:
            self._start_if_stopped(container, changes)
        return changes

    def proxy_exists(self) -> bool:
        return self._get(self.names.proxy) is not None

    def proxy_instances(self) -> list[str]:
        return [""]

    def proxy_urls(self) -> list[str]:
        return [f"http://{self.settings.proxy_bind}:{self.settings.proxy_port}"]

    def proxy_running(self, instance: str = "") -> bool:
        container = self._get(self.names.proxy)
        return container is not None and container.status == "running"

    # --- the whole of production -----------------------------------------------------------------

    def inventory(self) -> dict[str, str]:
        return inventory(self.client, self.settings.project)

    def footprint(self) -> set[str]:
        found = labelled_objects(self.client, self.settings.project)
        found |= {f"scratch {c.name}" for c in scratch.leftovers(self.client, self.names.scratch_prefix)}
        return found | {f"scratch volume {v.name}" for v in scratch.leftover_volumes(self.client, self.names.scratch_prefix)}

    def down(self, *, volumes: bool = False) -> list[str]:
        return remove_labelled(self.client, self.settings.project, volumes=volumes)
