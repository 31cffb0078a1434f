"""Production on a Docker Swarm: services on an existing swarm, reached through its manager's engine.

The same shape as a single host (``docker_host``), one service per part:
- each colour of the app is a service of ``replicas`` tasks (``<project>_web_<colour>``), its
  processes (workers) services beside it; stopping a colour scales it to 0 (kept for a
  rollback), resuming scales it back;
- the proxy is a global service: one HAProxy per node, each with its own directories
  (``{{.Node.Hostname}}`` in its mounts), switched through its own runtime API socket;
- the database is a service pinned to the manager's node with a volume there, or an
  existing server (``db_host``);
- one-off jobs (migrate, probes, pg_dump) are ``replicated-job`` services that run once
  (``--restart-condition none``), read back from their service logs and removed.

This kernel class has no IPVS, so nothing uses Swarm's virtual IPs or routing mesh:
every service is DNS round-robin (``dnsrr``) on an attachable overlay network, and the
proxy finds a colour's tasks at ``tasks.<service>`` through Docker's DNS. Ports are
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

import datetime
import os
import shlex
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any, Mapping, Sequence

import docker
import docker.errors
import docker.models.services
import requests
from docker.types import EndpointSpec, Healthcheck, Mount, RestartPolicy, ServiceMode

from deploygate import haproxy
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect, db_password
from deploygate.errors import DatabaseUnavailable, StackError
from deploygate.log import Say
from deploygate.platform import images
from deploygate.platform.base import COLOURS, INSTANCE, ColourState, JobResult, Replica, Scratch
from deploygate.platform.docker_host import DockerHost
from deploygate.platform.images import Image
from deploygate.platform.networking import Attachments, app_attachments, missing_networks, missing_networks_error
from deploygate.platform.naming import (
    COLOR_LABEL,
    DB_PORT,
    DIGEST_LABEL,
    PROCESS_LABEL,
    PROJECT_LABEL,
    RELEASE_LABEL,
    ROLE_LABEL,
    ProjectObjects,
)
from deploygate.waiting import wait_until

Service = docker.models.services.Service
# Labels of our own on the services: how many replicas a colour runs when it runs, whether
# its image declares a HEALTHCHECK (Swarm then holds a task in "starting" until it is healthy).
REPLICAS_LABEL = "deploygate.replicas"
HEALTHCHECK_LABEL = "deploygate.healthcheck"
# Swarm fills this in per node in a service's mounts: each node's proxy gets its own directories.
NODE_HOSTNAME = "{{.Node.Hostname}}"
# Task states after which a task will never run again.
_ENDED = ("complete", "failed", "rejected", "shutdown", "orphaned", "remove")
_FAILED = ("failed", "rejected")
_LOG_LINES = 3
# A job not running this long after its creation is stuck (no node can run it, its image is missing...).
_JOB_START_TIMEOUT_S = 120
# A colour's proxy backend has room for twice its replicas: while Swarm replaces a task
# (a node went down) old and new may both be in DNS for a moment.
_SLOTS_PER_REPLICA = 2


def _api_error(what: str, exc: docker.errors.APIError) -> StackError:
    return StackError(f"{what}: {exc.explanation or exc}")


def _when(timestamp: str) -> datetime.datetime:
    """An engine's RFC 3339 timestamp (nanoseconds, ``Z``) as an aware datetime; the epoch when there is none."""
    if not timestamp:
        return datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
    head, _, fraction = timestamp.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]:0<6}+00:00")


def _one_line(text: str) -> str:
    return " | ".join(line for line in text.splitlines() if line.strip()) or "no logs"


class SwarmPlatform(ProjectObjects):
    """Production as services on the swarm whose manager ``manager`` talks to (the ``Platform`` of a cluster)."""

    kind = "swarm"

    def __init__(self, manager: docker.DockerClient, local: DockerHost, nodes: Sequence[str], settings: Settings) -> None:
        self.manager = manager
        self.local = local  # builds images; runs scratch databases and the jobs against them
        self.nodes = list(nodes)  # every node's engine endpoint (image copies)
        super().__init__(settings)
        self._copied: set[tuple[str, str]] = set()  # (node endpoint, image id) known to be there

    @classmethod
    def connect(cls, settings: Settings, say: Say = print) -> SwarmPlatform:
        """The manager of ``swarm_manager`` (else DOCKER_HOST), the local engine, the engines of ``swarm_nodes``.

        Raises ``StackError`` when the manager does not answer or is not a swarm manager.
        """
        local = DockerHost.connect(settings, say)
        endpoint = settings.swarm_manager or os.environ.get("DOCKER_HOST", "")
        try:
            manager = docker.DockerClient(base_url=endpoint, timeout=120) if settings.swarm_manager else local.client
            control = manager.info().get("Swarm", {}).get("ControlAvailable")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise StackError(f"the swarm manager {endpoint or 'of DOCKER_HOST'} does not answer: {type(exc).__name__}") from None
        if not control:
            raise StackError(f"the engine at {endpoint or 'DOCKER_HOST'} is not a swarm manager (docker swarm init, or point swarm_manager at one)")
        return cls(manager, local, [e.strip() for e in settings.swarm_nodes.split(",") if e.strip()], settings)

    def wait_ready(self, timeout: float) -> None:
        wait_until(self.manager.ping, timeout=timeout, interval=1.0, what="the swarm manager to answer")

    # --- helpers ---------------------------------------------------------------------------------

    def _service(self, name: str) -> Service | None:
        # services.get also matches by id prefix: compare names exactly.
        found = [s for s in self.manager.services.list(filters={"name": name}) if s.name == name]
        return found[0] if found else None

    def _services(self, **labels: str) -> list[Service]:
        selector = [f"{PROJECT_LABEL}={self.settings.project}", *(f"{k}={v}" for k, v in labels.items())]
        return self.manager.services.list(filters={"label": selector})

    def _tasks(self, service: Service, *, current: bool = True) -> list[dict]:
        """The service's tasks (``current``: only those Swarm wants running, not the ones it replaced)."""
        return service.tasks(filters={"desired-state": "running"}) if current else service.tasks()

    def _nodes(self) -> list[dict]:
        """The swarm's nodes, the manager's own first (its proxy and address are the ones to try first)."""
        me = self._manager_node_id()
        nodes = [n.attrs for n in self.manager.nodes.list()]
        return sorted(nodes, key=lambda n: (n["ID"] != me, n["Description"]["Hostname"]))

    def _manager_node_id(self) -> str:
        return self.manager.info()["Swarm"]["NodeID"]

    def _node_addresses(self) -> dict[str, str]:
        return {n["ID"]: n["Status"].get("Addr", "") for n in self._nodes()}

    def _network_id(self) -> str | None:
        """The overlay's id in the swarm's own store (a node's local copy may outlive a removed network)."""
        try:
            return self.manager.api.inspect_network(self.names.network, scope="swarm")["Id"]
        except docker.errors.NotFound:
            return None

    def _ensure_network(self, changes: list[str]) -> None:
        if self._network_id() is None:
            self.manager.networks.create(self.names.network, driver="overlay", attachable=True, labels=self._labels("network"))
            changes.append(f"created overlay network {self.names.network}")

    def _swarm_networks(self, names: Sequence[str]) -> dict[str, str]:
        """Name -> id of those of ``names`` the swarm has (swarm-scoped: a service joins no node's local network)."""
        found = {}
        for name in names:
            try:
                found[name] = self.manager.api.inspect_network(name, scope="swarm")["Id"]
            except docker.errors.NotFound:
                continue
        return found

    def _attachments(self) -> Attachments:
        """Networks and host entries of the app's services; raises ``StackError`` when a network of
        ``app.networks`` is not on the swarm (before anything is created), ``ConfigError`` for a bad host entry.

        No pin of the database: its task gets another address whenever Swarm starts it again, and the
        manager's restart is not the single engine's.
        """
        s = self.settings
        attachments = app_attachments(self.names.network, s.app_networks, s.app_extra_hosts)
        missing = missing_networks(attachments.extra_networks, self._swarm_networks(attachments.extra_networks))
        if missing:
            raise missing_networks_error(missing, "the swarm (an overlay network, created on a manager)")
        return attachments

    def _create(self, name: str, image: str, *, attachments: Attachments | None = None, **kwargs: Any) -> Service:
        """A service on the project's overlay; with ``attachments`` (the app's services) on its other networks
        too, with its host entries."""
        network = self._network_id()
        if network is None:
            raise StackError(f"the overlay network {self.names.network} does not exist; run `nox -s up`")
        networks = [network]
        if attachments is not None:
            # By id, as the project's own: a name could match a node's stale local copy of a removed network.
            ids = self._swarm_networks(attachments.extra_networks)
            missing = missing_networks(attachments.extra_networks, ids)
            if missing:  # removed since it was checked
                raise missing_networks_error(missing, "the swarm")
            networks += [ids[n] for n in attachments.extra_networks]
            if attachments.extra_hosts:
                kwargs["hosts"] = dict(attachments.extra_hosts)
        try:
            # By id: a name could also match a stale local copy of an earlier network of the same name.
            return self.manager.services.create(image, name=name, networks=networks, **kwargs)
        except docker.errors.APIError as exc:
            raise _api_error(f"could not create the service {name}", exc) from None

    def _log_tail(self, service: Service, lines: int = _LOG_LINES) -> str:
        try:
            return _one_line(b"".join(service.logs(stdout=True, stderr=True, tail=lines)).decode(errors="replace"))
        except docker.errors.APIError:
            return "no logs"

    @staticmethod
    def _published_port(task: dict) -> int | None:
        ports = ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []
        return ports[0].get("PublishedPort") if ports else None

    @staticmethod
    def _dnsrr(*target_ports: int) -> dict:
        """Endpoint spec: DNS round-robin (no virtual IP: no IPVS here), ports published in host mode on a port the engine picks."""
        # A plain dict: docker-py's EndpointSpec cannot leave the published port to the engine.
        return EndpointSpec(mode="dnsrr") | {"Ports": [{"Protocol": "tcp", "TargetPort": p, "PublishMode": "host"} for p in target_ports]}

    # --- images ----------------------------------------------------------------------------------

    def _node_engines(self) -> dict[str, docker.DockerClient]:
        """Every node's engine that answers now; one that does not (its node is down) cannot run a task anyway."""
        engines = {}
        for endpoint in self.nodes:
            try:
                engines[endpoint] = docker.DockerClient(base_url=endpoint, timeout=300)
            except (docker.errors.DockerException, requests.RequestException):
                continue
        return engines

    def _distribute(self, image: Image) -> Image:
        """``image`` on every node of ``swarm_nodes`` under its tag (copied from the local engine where missing)."""
        missing = [e for e in self.nodes if (e, image.id) not in self._copied]
        for endpoint, node in self._node_engines().items() if missing else ():
            if endpoint not in missing:
                continue
            try:
                there = node.images.get(image.id)
                if image.tag not in there.tags:
                    repository, _, tag = image.tag.rpartition(":")
                    there.tag(repository, tag)
            except docker.errors.ImageNotFound:
                try:
                    source = self.local.client.images.get(image.id)
                except docker.errors.ImageNotFound:
                    raise StackError(f"{image.tag} ({image.id[:19]}) is no longer on the local engine: removed while it was copied to the nodes") from None
                try:
                    node.images.load(source.save(named=image.tag))
                except (docker.errors.APIError, requests.RequestException) as exc:
                    raise StackError(f"copying {image.tag} to the node at {endpoint} failed: {exc}") from None
            self._copied.add((endpoint, image.id))
        return image

    def _by_reference(self, reference: str) -> Image:
        """An image the local engine has (by tag or id) as an ``Image`` with a tag every node knows."""
        try:
            found = self.local.client.images.get(reference)
        except docker.errors.ImageNotFound:
            if reference.startswith("sha256:"):
                raise StackError(f"the image {reference[:19]} is not on the local engine (removed?): nothing to run on the swarm") from None
            # Not built here: a registry's image every node pulls by itself.
            return Image(tag=reference, id=reference, built=False)
        tags = sorted(found.tags)
        if not tags:
            raise StackError(f"the image {reference[:19]} has no tag to run it by on the swarm")
        tag = reference if reference in tags else tags[0]
        return self._distribute(Image(tag=tag, id=found.id, built=False))

    def resolve_image(self, reference: str, say: Say) -> Image:
        return self._distribute(self.local.resolve_image(reference, say))

    def service_image(self, name: str, say: Say) -> Image:
        return self._distribute(self.local.service_image(name, say))

    def prune_releases(self, keep: set[str]) -> list[str]:
        removed = self.local.prune_releases(keep)
        for node in self._node_engines().values():
            # Best effort: a node's engine refuses to remove what a task still uses.
            images.prune_releases(node, self.settings, keep=keep)
        return removed

    # --- production's database -------------------------------------------------------------------

    def ensure_database(self, image: Image, password: str) -> list[str]:
        changes: list[str] = []
        self._attachments()  # the team's networks exist: said before anything is created
        self._ensure_network(changes)
        if self._external_database:
            connect(self.database()).close()
            return changes
        if self._service(self.names.db) is None:
            s = self.settings
            self._create(
                self.names.db,
                image.tag,
                env={"POSTGRES_USER": s.db_user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": s.db_name},
                # The volume lives on one node's engine: the database stays on that node.
                mounts=[Mount(target="/var/lib/postgresql/data", source=self.names.db_volume, type="volume",
                              labels=self._labels("db-data"))],
                constraints=[f"node.id=={self._manager_node_id()}"],
                endpoint_spec=self._dnsrr(DB_PORT),
                labels=self._labels("db", **{DIGEST_LABEL: image.id}),
                restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
            )  # fmt: skip
            changes.append(f"created {self.names.db} on the manager's node")

        def ready() -> bool | None:
            service = self._service(self.names.db)
            if not self._running_tasks(service):
                failed = [t for t in self._tasks(service, current=False) if t["Status"]["State"] in _FAILED]
                if failed:
                    raise StackError(f"{self.names.db} failed: {failed[0]['Status'].get('Err', '')}: {self._log_tail(service)}")
                return None
            try:
                address = self.database()
            except StackError:
                return None  # running, its published port not reported yet
            connect(address).close()
            return True

        # Not accepting connections yet: the server is still starting.
        wait_until(ready, timeout=120, interval=0.5, what=f"{self.names.db} to accept connections",
                   transient=(DatabaseUnavailable, OSError), last_seen=lambda: self._log_tail(self._service(self.names.db)))  # fmt: skip
        return changes

    def _running_tasks(self, service: Service) -> list[dict]:
        return [t for t in self._tasks(service) if t["Status"]["State"] == "running"]

    def database(self) -> DatabaseAddress:
        s = self.settings
        if self._external_database:
            return DatabaseAddress(host=s.db_host, port=s.db_port, name=s.db_name, user=s.db_user, password=db_password(s))
        service = self._service(self.names.db)
        running = self._running_tasks(service) if service is not None else []
        if not running:
            raise StackError(f"the production database {self.names.db} is not running; run `nox -s up`")
        task = running[0]
        address, port = self._node_addresses().get(task["NodeID"], ""), self._published_port(task)
        if not address or not port:
            raise StackError(f"{self.names.db} has no published address yet")
        return DatabaseAddress(host=address, port=port, name=s.db_name, user=s.db_user, password=db_password(s))

    def database_image(self) -> str:
        if self._external_database:
            # The server's own major, built on the local engine; a job of it is copied to the nodes when it runs.
            return self.local.database_image()
        service = self._service(self.names.db)
        if service is None:
            raise StackError(f"the production database {self.names.db} does not exist; run `nox -s up`")
        return service.attrs["Spec"]["Labels"][DIGEST_LABEL]

    # --- the app's colours -----------------------------------------------------------------------

    def _web(self, colour: str) -> Service | None:
        if colour not in COLOURS:
            raise StackError(f"colour must be one of {', '.join(COLOURS)}, got {colour!r}")
        return self._service(self.names.web(colour))

    def _existing_web(self, colour: str) -> Service:
        service = self._web(colour)
        if service is None:
            raise StackError(f"{self.names.web(colour)} does not exist")
        return service

    def _processes(self, colour: str) -> list[Service]:
        return self._services(**{COLOR_LABEL: colour, ROLE_LABEL: "process"})

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
            port=self._published_port(task),
        )

    def _state(self, colour: str, service: Service) -> ColourState:
        service.reload()
        labels = service.attrs["Spec"]["Labels"]
        addresses = self._node_addresses()
        replicas = tuple(sorted((self._replica(service, t, addresses) for t in self._tasks(service)), key=lambda r: r.name))
        processes = {}
        for process in self._processes(colour):
            running = self._running_tasks(process)
            processes[process.attrs["Spec"]["Labels"].get(PROCESS_LABEL, process.name)] = "running" if running else "stopped"
        return ColourState(
            colour=colour, release=labels.get(RELEASE_LABEL, ""), image_id=labels.get(DIGEST_LABEL, ""),
            replicas=replicas, processes=processes,
        )  # fmt: skip

    def colour(self, colour: str) -> ColourState | None:
        service = self._web(colour)
        return self._state(colour, service) if service is not None else None

    def start_colour(
        self, colour: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str] | None = None
    ) -> ColourState:
        if self._web(colour) is not None:
            raise StackError(f"{self.names.web(colour)} exists already; remove it first")
        image = self._distribute(image)
        has_check = bool((self.local.client.images.get(image.id).attrs.get("Config") or {}).get("Healthcheck"))
        replicas = self.settings.replicas
        service = self._create(
            self.names.web(colour),
            image.tag,
            attachments=self._attachments(),
            env=dict(environment),
            mode=ServiceMode("replicated", replicas=replicas),
            endpoint_spec=self._dnsrr(self.settings.app_port),
            labels=self._labels_of("web", colour, image, **{REPLICAS_LABEL: str(replicas), HEALTHCHECK_LABEL: "yes" if has_check else "no"}),
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
        )
        self.start_processes(colour, image, environment, processes or {})
        return self._state(colour, service)

    def start_processes(self, colour: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str]) -> None:
        if not processes:
            return
        image = self._distribute(image)
        attachments = self._attachments()
        for name, command in processes.items():
            self._create(
                self.names.process(name, colour),
                image.tag,
                attachments=attachments,
                args=shlex.split(command),
                env=dict(environment),
                mode=ServiceMode("replicated", replicas=1),
                endpoint_spec=EndpointSpec(mode="dnsrr"),
                labels=self._labels_of("process", colour, image, **{PROCESS_LABEL: name}),
                restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
            )

    def _scale(self, service: Service, replicas: int) -> None:
        service.reload()
        if service.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas") != replicas:
            try:
                service.scale(replicas)
            except docker.errors.APIError as exc:
                raise _api_error(f"could not scale {service.name} to {replicas}", exc) from None

    def stop_processes(self, colour: str) -> None:
        for service in self._processes(colour):
            self._scale(service, 0)

    def resume_colour(self, colour: str, *, processes: bool = True) -> ColourState:
        web = self._existing_web(colour)
        self._scale(web, int(web.attrs["Spec"]["Labels"].get(REPLICAS_LABEL, self.settings.replicas)))
        if processes:
            for service in self._processes(colour):
                self._scale(service, 1)
        return self._state(colour, web)

    def stop_colour(self, colour: str) -> None:
        # Processes first: a worker must not outlive the web server of its release.
        self.stop_processes(colour)
        self._scale(self._existing_web(colour), 0)

    def remove_colour(self, colour: str) -> None:
        for service in [*self._processes(colour), self._web(colour)]:
            if service is not None:
                service.remove()

    def _fail_if_failing(self, service: Service) -> None:
        """Raise ``StackError`` (with its last log lines) when a task of ``service`` failed: it will not become healthy.

        Not transient: Swarm restarts a failed task, and an unhealthy one is killed and
        failed the same way, so a wait fails now rather than at its deadline.
        """
        service.reload()
        # Only this version of the service (a scale is an update too): an older spec's failures were judged then.
        since = _when(service.attrs.get("UpdatedAt") or service.attrs.get("CreatedAt", ""))
        for task in self._tasks(service, current=False):
            status = task["Status"]
            if status["State"] in _FAILED and _when(task.get("CreatedAt", "")) >= since:
                raise StackError(f"a task of {service.name} failed ({status.get('Err') or status['State']}): {self._log_tail(service)}")

    def wait_healthy(self, colour: str, timeout: float) -> ColourState:
        web = self._existing_web(colour)
        wanted = int(web.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 0))

        def healthy() -> ColourState | None:
            for service in [web, *self._processes(colour)]:
                self._fail_if_failing(service)
            state = self._state(colour, web)
            if len(state.replicas) < wanted or not all(r.state == "running" for r in state.replicas):
                return None
            if any(r.health == "none" for r in state.replicas):
                # No HEALTHCHECK in the image: the app's health URL answering 2xx on every replica is the verdict.
                urls = state.urls(self.settings.app_port)
                answers = [requests.get(f"{url}{self.settings.health_path}", timeout=3) for url in urls]
                return state if len(urls) == len(state.replicas) and all(a.ok for a in answers) else None
            return state if state.healthy else None

        return wait_until(healthy, timeout=timeout, interval=0.5, what=f"{web.name} to become healthy ({wanted} replicas)",
                          last_seen=lambda: self._log_tail(web))  # fmt: skip

    def upstreams(self, colour: str) -> list[str]:
        slots = max(1, self.settings.replicas * _SLOTS_PER_REPLICA)
        return [haproxy.server_template(f"tasks.{self.names.web(colour)}:{self.settings.app_port}", slots)]

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
        name = f"{self.settings.project}_job_{uuid.uuid4().hex[:8]}"
        service = self._create(
            name,
            reference.tag,
            # Against production: attached as the app's services are.
            attachments=self._attachments(),
            args=list(argv),
            env=dict(environment),
            mode=ServiceMode("replicated-job"),
            restart_policy=RestartPolicy(condition="none"),
            # The image's HEALTHCHECK (a web server's) means nothing for a command: without this the task waits on it.
            healthcheck=Healthcheck(test=["NONE"]),
            mounts=[Mount(target=inside, source=host, type="bind", read_only=host not in writable) for host, inside in (mounts or {}).items()],
            constraints=[f"node.id=={self._manager_node_id()}"],
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            labels=self._labels("oneoff"),
        )
        try:
            task = self._wait_job(service, argv)
            output = b"".join(service.logs(stdout=True, stderr=True)).decode(errors="replace")
            if say:
                for line in output.splitlines():
                    if line.strip():
                        say(f"  | {line}")
            status = task["Status"]
            if status["State"] == "rejected":
                raise StackError(f"the job `{' '.join(argv)}` in {reference.tag} could not start: {status.get('Err', '')}")
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            return JobResult(exit_code=0 if status["State"] == "complete" else (code if code is not None else 1), output=output)
        except docker.errors.APIError as exc:
            raise _api_error(f"the job `{' '.join(argv)}` in {reference.tag} failed", exc) from None
        finally:
            self._remove_job(service)

    def _remove_job(self, service: Service) -> None:
        """Remove the job's service and its task's container (with its anonymous volumes, e.g. Postgres' VOLUME).

        Swarm leaves the container of a completed job's task behind, attached to the overlay.
        """
        try:
            containers = [(t.get("Status") or {}).get("ContainerStatus", {}).get("ContainerID") for t in service.tasks()]
            service.remove()
        except docker.errors.APIError:
            return
        for container_id in filter(None, containers):
            try:
                # Jobs run on the manager's node: its engine is the one that holds the container.
                self.manager.containers.get(container_id).remove(force=True, v=True)
            except docker.errors.APIError:
                pass

    def _wait_job(self, service: Service, argv: Sequence[str]) -> dict:
        """The job's task once it ended; raises ``StackError`` when it never starts."""
        created = time.monotonic()
        while True:
            tasks = service.tasks()
            ended = [t for t in tasks if t["Status"]["State"] in _ENDED]
            if ended:
                return ended[0]
            started = [t for t in tasks if t["Status"]["State"] == "running"]
            if not started and time.monotonic() - created > _JOB_START_TIMEOUT_S:
                last = tasks[0]["Status"] if tasks else {"State": "not scheduled"}
                raise StackError(f"the job `{' '.join(argv)}` did not start within {_JOB_START_TIMEOUT_S}s: "
                                 f"{last['State']} {last.get('Err', '')}".strip())  # fmt: skip
            time.sleep(0.3)

    # --- scratch databases: on the local engine, as on a single host -----------------------------

    def scratch_postgres(self, image_id: str, *, user: str, dbname: str, mounts: Mapping[str, str]) -> AbstractContextManager[Scratch]:
        return self.local.scratch_postgres(image_id, user=user, dbname=dbname, mounts=mounts)

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
        self._create(
            self.names.proxy,
            image.tag,
            args=list(command),
            user=user,
            mode=ServiceMode("global"),
            mounts=[
                Mount(target=inside, source=host.replace(INSTANCE, NODE_HOSTNAME), type="bind", read_only=host not in writable)
                for host, inside in mounts.items()
            ],
            endpoint_spec=EndpointSpec(mode="dnsrr")
            | {"Ports": [{"Protocol": "tcp", "TargetPort": port_in_container, "PublishedPort": self.settings.proxy_port, "PublishMode": "host"}]},
            labels=self._labels("proxy", **{DIGEST_LABEL: image.id}),
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
        )  # fmt: skip
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

    # --- the whole of production -----------------------------------------------------------------

    def inventory(self) -> dict[str, str]:
        found = {}
        for service in self._services():
            labels = service.attrs["Spec"]["Labels"]
            if labels.get(ROLE_LABEL) == "oneoff":
                continue
            tasks = self._tasks(service)
            running = sum(t["Status"]["State"] == "running" for t in tasks)
            release = labels.get(RELEASE_LABEL)
            found[service.name] = f"{running}/{len(tasks)} running" + (f" (release {release})" if release else "")
        return found

    def footprint(self) -> set[str]:
        selector = {"label": f"{PROJECT_LABEL}={self.settings.project}"}
        found = {f"service {s.name} ({len(self._running_tasks(s))} running)" for s in self._services()}
        found |= {f"network {n.name}" for n in self.manager.networks.list(filters=selector)}
        found |= {f"volume {v.name}" for v in self.manager.volumes.list(filters=selector)}
        found |= {f"local {item}" for item in self.local.footprint() if not item.startswith("dangling")}
        # Task containers left on the manager's engine (a job's, whose service is gone, would be a leak).
        found |= {f"container {c.name} ({c.status})" for c in self.manager.containers.list(all=True, filters={"label": "com.docker.swarm.service.name"})
                  if c.labels["com.docker.swarm.service.name"].startswith(f"{self.settings.project}_")}  # fmt: skip
        found |= {f"dangling volume {v.name}" for v in self.manager.volumes.list(filters={"dangling": True})}
        return found

    def down(self, *, volumes: bool = False) -> list[str]:
        removed = []
        for service in self._services():
            service.remove()
            removed.append(f"service {service.name}")
        # Tasks stop after their service is removed: the network and the volume are free only then.
        selector = {"label": f"{PROJECT_LABEL}={self.settings.project}"}

        def remove_network() -> bool:
            network = self._network_id()
            if network is not None:
                self.manager.api.remove_network(network)
                removed.append(f"network {self.names.network}")
            return True

        wait_until(remove_network, timeout=60, interval=0.5, what=f"{self.names.network} to be free", transient=(docker.errors.APIError,))
        if volumes:

            def remove_volumes() -> bool:
                for volume in self.manager.volumes.list(filters=selector):
                    volume.remove(force=True)
                    removed.append(f"volume {volume.name}")
                return True

            wait_until(remove_volumes, timeout=60, interval=0.5, what="production's volume to be free", transient=(docker.errors.APIError,))
        return removed
