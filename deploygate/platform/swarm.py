"""Production on a Docker Swarm: services on an existing swarm, reached through its manager's engine.

The same shape as a single host (``docker_host``), one service per part:
- each color of the app is a service of ``replicas`` tasks (``<project>_web_<color>``), its
  processes (workers) services beside it; stopping a color scales it to 0 (kept for a
  rollback), resuming scales it back;
- the proxy is a global service: one HAProxy per node, each with its own directories
  (``{{.Node.Hostname}}`` in its mounts), switched through its own runtime API socket;
- the database is a service pinned to the manager's node with a volume there, or an
  existing server (``db_host``);
- one-off jobs (migrate, probes, pg_dump) are ``replicated-job`` services that run once
  (``--restart-condition none``), read back from their service logs and removed.

This kernel class has no IPVS, so nothing uses Swarm's virtual IPs or routing mesh:
every service is DNS round-robin (``dnsrr``) on an attachable overlay network, and the
proxy finds a color's tasks at ``tasks.<service>`` through Docker's DNS. Ports are
published in host mode only: the proxy's on a fixed port of every node; each web task's
and the database's on a port its engine picks (never a fixed one: two tasks, or an old and
a new one, on one node would fight for it), which is how this host reaches a replica
directly for the post checks and a health URL.

Images: deploygate builds or finds them on the local engine (``DOCKER_HOST``); where no
registry serves them, they are copied (save | load) to every engine of ``swarm_nodes``.
Scratch databases (the rehearsal copy) and the jobs against them are plain containers on
that local engine, exactly as on a single host: they never touch production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace

import docker
import docker.errors
import requests

from deploygate.cache import CacheUrls
from deploygate.database import DatabaseAddress, connect, db_password
from deploygate.errors import ConfigError, DatabaseUnavailable, StackError
from deploygate.log import Say
from deploygate.platform import images, swarm_jobs
from deploygate.platform.base import COLORS, ColorState, JobResult, Replica, Scratch
from deploygate.platform.images import Image
from deploygate.platform.naming import COLOR_LABEL, DIGEST_LABEL, PROCESS_LABEL, RELEASE_LABEL, ROLE_LABEL
from deploygate.platform.specs import (
    app_readiness,
    attachments_of,
    database_spec,
    job_spec,
    process_spec,
    proxy_spec,
    web_spec,
)
from deploygate.platform.swarm_objects import Service, SwarmObjects
from deploygate.platform.swarm_services import FAILED, HEALTHCHECK_LABEL, REPLICAS_LABEL, published_port, service_logs, when
from deploygate.replicas import Standby
from deploygate.upstreams import server_template
from deploygate.waiting import wait_until

# A color's proxy backend has room for twice its replicas: while Swarm replaces a task
# (a node went down) old and new may both be in DNS for a moment.
_SLOTS_PER_REPLICA = 2
# Swarm starts the database's task again elsewhere in time, and its first start initialises its volume.
_DATABASE_READY_TIMEOUT_S = 120


class SwarmPlatform(SwarmObjects):
    """Production as services on the swarm whose manager ``manager`` talks to (the ``Platform`` of a cluster)."""

    kind = "swarm"

    # --- images ----------------------------------------------------------------------------------

    def _distribute(self, image: Image) -> Image:
        return self._images.distribute(image)

    def _by_reference(self, reference: str) -> Image:
        return self._images.by_reference(reference)

    def resolve_image(self, reference: str, say: Say) -> Image:
        return self._distribute(self.local.resolve_image(reference, say))

    def service_image(self, name: str, say: Say) -> Image:
        return self._distribute(self.local.service_image(name, say))

    def prune_releases(self, keep: set[str], ours: set[str]) -> list[str]:
        removed = self.local.prune_releases(keep, ours)
        for node in self._images.engines().values():
            # Best effort: a node's engine refuses to remove what a task still uses.
            images.prune_releases(node, self.settings, keep=keep, ours=ours)
        return removed

    # --- production's database -------------------------------------------------------------------

    def ensure_database(self, image: Image, password: str) -> list[str]:
        changes: list[str] = []
        # The team's networks exist: said before anything is created.
        self._check_networks(attachments_of(self.settings).networks, "the swarm (an overlay network, created on a manager)")
        self._ensure_network(changes)
        if self._external_database:
            connect(self.database()).close()
            return changes
        if self.settings.db_standbys:
            raise ConfigError("database.standbys is for a single host; on a swarm, list your replicas in [[database.replicas]]")
        if self.settings.db_data_dir:
            raise ConfigError("database.data_dir is for a single host; on a swarm, the database's data is a volume of the manager's node")
        if self._service(self.names.db) is None:
            # Pinned to the manager's node: the volume lives on one node's engine.
            self._create(database_spec(self.settings, image, password))
            changes.append(f"created {self.names.db} on the manager's node")

        def ready() -> bool | None:
            service = self._service(self.names.db)
            if not self._running_tasks(service):
                failed = [t for t in self._tasks(service, current=False) if t["Status"]["State"] in FAILED]
                if failed:
                    raise StackError(f"{self.names.db} failed: {failed[0]['Status'].get('Err', '')}: {self._log_tail(service)}")
                return None
            try:
                address = self.database()
            except StackError:
                return None  # running, its published port not reported yet
            connect(address).close()
            return True

        # Asked from this host, through the port its task publishes (where ``database()`` reaches it); not
        # accepting connections yet: the server is still starting.
        wait_until(
            ready,
            timeout=_DATABASE_READY_TIMEOUT_S,
            interval=0.5,
            what=f"{self.names.db} to accept connections",
            transient=(DatabaseUnavailable, OSError),
            last_seen=lambda: self._log_tail(self._service(self.names.db)),
        )
        return changes

    def database(self) -> DatabaseAddress:
        s = self.settings
        if self._external_database:
            return DatabaseAddress(host=s.db_host, port=s.db_port, name=s.db_name, user=s.db_user, password=db_password(s))
        service = self._service(self.names.db)
        running = self._running_tasks(service) if service is not None else []
        if not running:
            raise StackError(f"the production database {self.names.db} is not running; run `nox -s up`")
        task = running[0]
        address, port = self._node_addresses().get(task["NodeID"], ""), published_port(task)
        if not address or not port:
            raise StackError(f"{self.names.db} has no published address yet")
        return DatabaseAddress(host=address, port=port, name=s.db_name, user=s.db_user, password=db_password(s))

    def ensure_cache(self, image: Image) -> list[str]:
        if self.settings.cache_service != "none":
            raise ConfigError("cache.service is for a single host; on a swarm, give your own Redis as cache.url")
        return []

    def cache_urls(self) -> CacheUrls | None:
        return CacheUrls(app=self.settings.cache_url, host=self.settings.cache_url) if self.settings.cache_url else None

    def scratch_cache(self, image_id: str, network: str) -> AbstractContextManager[CacheUrls]:
        return self.local.scratch_cache(image_id, network)

    def standbys(self) -> list[Standby]:
        return []  # database.standbys is refused on a swarm (``ensure_database``)

    def database_image(self) -> str:
        if self._external_database:
            # The server's own major, built on the local engine; a job of it is copied to the nodes when it runs.
            return self.local.database_image()
        service = self._service(self.names.db)
        if service is None:
            raise StackError(f"the production database {self.names.db} does not exist; run `nox -s up`")
        return service.attrs["Spec"]["Labels"][DIGEST_LABEL]

    # --- the app's colors -----------------------------------------------------------------------

    def _web(self, color: str) -> Service | None:
        if color not in COLORS:
            raise StackError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
        return self._service(self.names.web(color))

    def _existing_web(self, color: str) -> Service:
        service = self._web(color)
        if service is None:
            raise StackError(f"{self.names.web(color)} does not exist")
        return service

    def _processes(self, color: str) -> list[Service]:
        return self._services(**{COLOR_LABEL: color, ROLE_LABEL: "process"})

    def _replica(self, service: Service, task: dict, addresses: Mapping[str, str]) -> Replica:
        state = task["Status"]["State"]
        has_check = service.attrs["Spec"]["Labels"].get(HEALTHCHECK_LABEL) == "yes"
        # Swarm holds a task with a HEALTHCHECK in "starting" until the check passes, and fails it when it does not.
        health = ("healthy" if state == "running" else "starting") if has_check else "none"
        return Replica(
            name=f"{service.name}.{task.get('Slot', '')}",
            state=state,
            health=health,
            address=addresses.get(task.get("NodeID", ""), ""),
            port=published_port(task),
        )

    def _state(self, color: str, service: Service) -> ColorState:
        service.reload()
        labels = service.attrs["Spec"]["Labels"]
        addresses = self._node_addresses()
        replicas = tuple(sorted((self._replica(service, t, addresses) for t in self._tasks(service)), key=lambda r: r.name))
        processes = {}
        for process in self._processes(color):
            running = self._running_tasks(process)
            processes[process.attrs["Spec"]["Labels"].get(PROCESS_LABEL, process.name)] = "running" if running else "stopped"
        return ColorState(
            color=color,
            release=labels.get(RELEASE_LABEL, ""),
            image_id=labels.get(DIGEST_LABEL, ""),
            replicas=replicas,
            processes=processes,
        )

    def color(self, color: str) -> ColorState | None:
        service = self._web(color)
        return self._state(color, service) if service is not None else None

    def start_color(
        self, color: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str] | None = None
    ) -> ColorState:
        if self._web(color) is not None:
            raise StackError(f"{self.names.web(color)} exists already; remove it first")
        image = self._distribute(image)
        has_check = bool((self.local.client.images.get(image.id).attrs.get("Config") or {}).get("Healthcheck"))
        spec = web_spec(self.settings, color, image, environment, replicas=self.settings.replicas)
        bookkeeping = {REPLICAS_LABEL: str(spec.replicas), HEALTHCHECK_LABEL: "yes" if has_check else "no"}
        service = self._create(replace(spec, labels={**spec.labels, **bookkeeping}))
        self.start_processes(color, image, environment, processes or {})
        return self._state(color, service)

    def start_processes(self, color: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str]) -> None:
        if not processes:
            return
        image = self._distribute(image)
        for name, command in processes.items():
            self._create(process_spec(self.settings, color, image, environment, name, command))

    def _scale(self, service: Service, replicas: int) -> None:
        service.reload()
        if service.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas") != replicas:
            try:
                service.scale(replicas)
            except docker.errors.APIError as exc:
                raise StackError(f"could not scale {service.name} to {replicas}: {exc.explanation or exc}") from None

    def stop_processes(self, color: str) -> None:
        for service in self._processes(color):
            self._scale(service, 0)

    def resume_color(self, color: str, *, processes: bool = True) -> ColorState:
        web = self._existing_web(color)
        self._scale(web, int(web.attrs["Spec"]["Labels"].get(REPLICAS_LABEL, self.settings.replicas)))
        if processes:
            for service in self._processes(color):
                self._scale(service, 1)
        return self._state(color, web)

    def stop_color(self, color: str) -> None:
        # Processes first: a worker must not outlive the web server of its release.
        self.stop_processes(color)
        self._scale(self._existing_web(color), 0)

    def remove_color(self, color: str) -> None:
        for service in [*self._processes(color), self._web(color)]:
            if service is not None:
                service.remove()

    def _fail_if_failing(self, service: Service) -> None:
        """Raise ``StackError`` (with its last log lines) when a task of ``service`` failed: it will not become healthy.

        Not transient: Swarm restarts a failed task, and an unhealthy one is killed and
        failed the same way, so a wait fails now rather than at its deadline.
        """
        service.reload()
        # Only this version of the service (a scale is an update too): an older spec's failures were judged then.
        since = when(service.attrs.get("UpdatedAt") or service.attrs.get("CreatedAt", ""))
        for task in self._tasks(service, current=False):
            status = task["Status"]
            if status["State"] in FAILED and when(task.get("CreatedAt", "")) >= since:
                raise StackError(f"a task of {service.name} failed ({status.get('Err') or status['State']}): {self._log_tail(service)}")

    def wait_healthy(self, color: str, timeout: float) -> ColorState:
        web = self._existing_web(color)
        wanted = int(web.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 0))

        readiness = app_readiness(self.settings)

        def healthy() -> ColorState | None:
            for service in [web, *self._processes(color)]:
                self._fail_if_failing(service)
            state = self._state(color, web)
            if len(state.replicas) < wanted or not all(r.state == "running" for r in state.replicas):
                return None
            if any(r.health == "none" for r in state.replicas):
                # No HEALTHCHECK in the image: the app's health URL answering 2xx on every replica is the verdict.
                urls = state.urls(readiness.port)
                answers = [requests.get(f"{url}{readiness.http_path}", timeout=3) for url in urls]
                return state if len(urls) == len(state.replicas) and all(a.ok for a in answers) else None
            return state if state.healthy else None

        what = f"{web.name} to become healthy ({wanted} replicas)"
        return wait_until(healthy, timeout=timeout, interval=0.5, what=what, last_seen=lambda: self._log_tail(web))

    def color_output(self, color: str, since: float, until: float | None = None) -> str:
        # The service logs API has no "until": the caller keeps the lines of its period.
        service = self._web(color)
        if service is None:
            return ""
        return service_logs(self.manager.api, service.id, since).decode(errors="replace")

    def upstreams(self, color: str) -> list[str]:
        slots = max(1, self.settings.replicas * _SLOTS_PER_REPLICA)
        return [server_template(f"tasks.{self.names.web(color)}:{self.settings.app_port}", slots)]

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
        """A ``replicated-job`` service on the manager's node (where ``mounts`` are), its output from the service's logs.

        A job against a scratch database (``network`` given) runs beside it on the local engine.
        """
        if network is not None and network != self.names.network:
            return self.local.run_job(image, argv, environment=environment, mounts=mounts, writable=writable, network=network, say=say)
        reference = self._by_reference(image)
        # Against production: attached as the app's services are; its image by a tag every node knows.
        spec = job_spec(self.settings, reference.tag, argv, environment, mounts=mounts, writable=writable, name=self.names.job())
        return swarm_jobs.run_to_end(self.manager, self._create(spec), argv, reference.tag, say)

    # --- scratch databases: on the local engine, as on a single host -----------------------------

    def scratch_postgres(self, image_id: str, *, user: str, dbname: str, mounts: Mapping[str, str]) -> AbstractContextManager[Scratch]:
        return self.local.scratch_postgres(image_id, user=user, dbname=dbname, mounts=mounts)

    def scratch_from_backup(
        self, image_id: str, data_dir: str, *, user: str, dbname: str, copy: str = "auto"
    ) -> AbstractContextManager[Scratch]:
        return self.local.scratch_from_backup(image_id, data_dir, user=user, dbname=dbname, copy=copy)

    def remove_stale_scratch(self) -> list[str]:
        return self.local.remove_stale_scratch()

    # --- the proxy: a global service, one HAProxy per node ---------------------------------------

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
        if self._service(self.names.proxy) is not None:
            return changes  # Swarm keeps a global service's task running on every node by itself
        image = self._distribute(image)
        # Each node's proxy gets its own directories: the mounts' INSTANCE becomes the node's hostname.
        self._create(proxy_spec(self.settings, image, command, mounts, writable, user=user, port_in_container=port_in_container))
        changes.append(f"created {self.names.proxy} on every node, port {self.settings.proxy_port}")
        return changes

    def proxy_exists(self) -> bool:
        return self._service(self.names.proxy) is not None

    def proxy_instances(self) -> list[str]:
        return [n["Description"]["Hostname"] for n in self._nodes()]

    def proxy_urls(self) -> list[str]:
        return [f"http://{n['Status'].get('Addr', '')}:{self.settings.proxy_port}" for n in self._nodes()]

    def proxy_running(self, instance: str = "") -> bool:
        node = next((n for n in self._nodes() if n["Description"]["Hostname"] == instance), None)
        service = self._service(self.names.proxy)
        if node is None or service is None or node["Status"]["State"] != "ready":
            return False
        return any(t.get("NodeID") == node["ID"] for t in self._running_tasks(service))
