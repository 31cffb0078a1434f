"""Production on a single Docker host: one container per colour, the database and the proxy beside them.

Every container, network and volume carries ``deploygate.project`` (and a role), so the
true state is always read back from Docker and cleanup finds things by label rather than
by remembering names. This module and the engine bootstrap are the only code of the
library that speaks to the docker SDK.
"""

from __future__ import annotations

import codecs
import secrets
import shlex
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import docker
import docker.errors
import docker.models.containers
import requests

from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect, db_password
from deploygate.errors import StackError
from deploygate.log import Say, quiet
from deploygate.platform import engine, images
from deploygate.platform.base import COLOURS, INSTANCE, ColourState, JobResult, Replica, ScratchDatabase
from deploygate.platform.images import Image
from deploygate.platform.networking import (
    Attachments,
    app_attachments,
    extra_hosts_of,
    hosts_file_pinned,
    missing_networks,
    missing_networks_error,
    pinned_addresses,
    stale_pin,
)
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

# testcontainers' default network: jobs against a scratch database join it.
SCRATCH_NETWORK = "bridge"
_LOG_LINES = 3

Container = docker.models.containers.Container


def log_tail(container: Container, lines: int = _LOG_LINES) -> str:
    """The container's last log lines on one line (``no logs`` when it has none or cannot be asked)."""
    try:
        text = container.logs(tail=lines).decode(errors="replace").strip()
    except docker.errors.APIError:
        return "no logs"
    return " | ".join(text.splitlines()) or "no logs"


def _address(container: Container, network: str) -> str:
    return ((container.attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network, {}).get("IPAddress") or ""


def _health(container: Container) -> str:
    """Docker's HEALTHCHECK verdict, or "none" when the image declares no healthcheck."""
    health = (container.attrs.get("State") or {}).get("Health")
    return health.get("Status", "unknown") if health else "none"


def _status(container: Container) -> str:
    return (container.attrs.get("State") or {}).get("Status", "unknown")


def _replica(container: Container, network: str) -> Replica:
    return Replica(name=container.name, state=_status(container), health=_health(container), address=_address(container, network))


def _fail_if_dead(container: Container) -> None:
    """Raise ``StackError`` (with its last log lines) when the container's process died.

    Not transient: a process that died will not become healthy (its restart policy only
    makes it crash again), so a wait fails now, not at its deadline.
    """
    try:
        container.reload()
    except docker.errors.NotFound:
        raise StackError(f"{container.name} was removed while deploygate waited for it") from None
    state, restarts = _status(container), container.attrs.get("RestartCount", 0)
    if state in ("exited", "dead"):
        code = (container.attrs.get("State") or {}).get("ExitCode")
        raise StackError(f"{container.name} exited (code {code}): {log_tail(container)}")
    if state == "restarting" or restarts > 0:
        raise StackError(f"{container.name} exited and keeps being restarted ({restarts} so far): {log_tail(container)}")


def _api_error(what: str, exc: docker.errors.APIError) -> StackError:
    return StackError(f"{what}: {exc.explanation or exc}")


def recreate_spec(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What a container of the app was created with, from its inspect ``attrs``: the keyword arguments
    that create it again (by image id: the tag may have moved since).

    Networks and host entries are not in it: they are today's (``Attachments``), which is the point.
    """
    config = attrs.get("Config") or {}
    environment = dict(entry.partition("=")[::2] for entry in config.get("Env") or [])
    return {"image": attrs["Image"], "command": config.get("Cmd"), "environment": environment, "labels": dict(config.get("Labels") or {})}


def whole_lines(pending: str, text: str) -> tuple[list[str], str]:
    """The complete lines of ``pending + text`` and what is left of an unfinished last line.

    A log chunk may end mid-line (a long JSON result arrives in pieces): saying only whole
    lines lets a caller that filters lines (the probe's result marker) see each one whole.
    """
    *lines, rest = (pending + text).split("\n")
    return lines, rest


class _Scratch:
    """A scratch Postgres started by testcontainers (the library made for throwaway databases in tests)."""

    def __init__(self, container: Any, database: ScratchDatabase) -> None:
        self._container = container
        self.database = database

    def exec(self, argv: Sequence[str]) -> tuple[int, str]:
        code, output = self._container.get_wrapped_container().exec_run(list(argv))
        return code, output.decode(errors="replace")


class DockerHost(ProjectObjects):
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

    def _run_service(self, name: str, image: str, **kwargs: Any) -> Container:
        try:
            return self.client.containers.run(image, name=name, detach=True, restart_policy={"Name": "unless-stopped"}, **kwargs)
        except docker.errors.APIError as exc:
            raise _api_error(f"could not start {name}", exc) from None

    def _db_pin(self) -> dict[str, str]:
        """The database deploygate runs, its name -> its address on the project's network; {} for an
        existing server (its resolution is the user's) or when none runs (DNS answers then, as before)."""
        if self._external_database:
            return {}
        container = self._get(self.names.db)
        address = _address(container, self.names.network) if container is not None and container.status == "running" else ""
        return {self.names.db: address} if address else {}

    def _attachments(self) -> Attachments:
        """Networks and host entries of the app's containers now; raises ``StackError`` when a network of
        ``app.networks`` does not exist (before anything is created), ``ConfigError`` for a bad host entry."""
        s = self.settings
        attachments = app_attachments(self.names.network, s.app_networks, s.app_extra_hosts, self._db_pin())
        if attachments.extra_networks:
            # The engine's name filter matches parts of names: compare them exactly.
            existing = [n.name for n in self.client.networks.list(names=list(attachments.extra_networks))]
            missing = missing_networks(attachments.extra_networks, existing)
            if missing:
                raise missing_networks_error(missing, "this Docker engine")
        return attachments

    def _create_app(
        self, name: str | None, image: str, attachments: Attachments, *, service: bool, start: bool = True, **kwargs: Any
    ) -> Container:
        """A container of the app's image on its networks with its host entries, started unless ``start`` is false.

        Created, joined to the other networks, then started: this engine's API (1.41) takes
        one network at creation, and a process that started before joining could not reach
        what it needs at its start. ``service``: restarted unless stopped (not a one-off job).
        """
        if service:
            kwargs["restart_policy"] = {"Name": "unless-stopped"}
        try:
            container = self.client.containers.create(
                image, name=name, network=attachments.primary, extra_hosts=dict(attachments.extra_hosts) or None, **kwargs
            )
        except docker.errors.APIError as exc:
            raise _api_error(f"could not start {name or image}", exc) from None
        try:
            for network in attachments.extra_networks:
                self.client.networks.get(network).connect(container)
            if start:
                container.start()
        except docker.errors.APIError as exc:
            container.remove(force=True, v=True)
            raise _api_error(f"could not start {name or image}", exc) from None
        return container

    def _repinned(self, container: Container) -> Container:
        """``container`` (an app container) with the database's address as it is now.

        A running one has the entry rewritten in its hosts file (it may serve: it is not
        replaced unless that fails); a stopped one is created again, stopped, from the same
        image, command, environment and labels, with today's networks and host entries (its
        spec is what the engine writes into its hosts file when it starts).
        """
        pin = self._db_pin()
        container.reload()
        if not pin:
            return container
        created_with = extra_hosts_of((container.attrs.get("HostConfig") or {}).get("ExtraHosts"))
        if container.status == "running":
            code, output = container.exec_run(["cat", "/etc/hosts"])
            text = output.decode(errors="replace")
            if code != 0:
                # No cat in the image: nothing rewrote its hosts file, which is then what it was created with.
                if not stale_pin(created_with, pin):
                    return container
            elif not stale_pin(pinned_addresses(text), pin):
                return container
            else:
                hosts = hosts_file_pinned(text, pin)
                # As root whatever the image's user; `>` keeps the file the engine bind-mounts (a rename would not).
                code, _ = container.exec_run(["sh", "-c", 'printf "%s" "$HOSTS" > /etc/hosts'], user="0", environment={"HOSTS": hosts})
                if code == 0:
                    return container
            # A stale pin that cannot be rewritten: the container cannot reach its database, replacing it costs less.
        elif not stale_pin(created_with, pin):
            return container
        running, spec, name = container.status == "running", recreate_spec(container.attrs), container.name
        container.remove(force=True, v=True)
        image = spec.pop("image")
        created = self._create_app(name, image, self._attachments(), service=True, start=running, **spec)
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
        builders = {"postgres": images.postgres_image, "proxy": images.haproxy_image}
        return builders[name](self.client, self.settings, say)

    def prune_releases(self, keep: set[str]) -> list[str]:
        return images.prune_releases(self.client, self.settings, keep=keep)

    # --- production's database -------------------------------------------------------------------

    def ensure_database(self, image: Image, password: str) -> list[str]:
        changes: list[str] = []
        self._attachments()  # the team's networks exist: said before anything is created
        self._ensure_network(changes)
        if self._external_database:
            connect(self.database()).close()  # answers, with these credentials: else a one-line StackError now
            return changes
        try:
            self.client.volumes.get(self.names.db_volume)
        except docker.errors.NotFound:
            self.client.volumes.create(self.names.db_volume, labels=self._labels("db-data"))
            changes.append(f"created volume {self.names.db_volume}")
        container = self._get(self.names.db)
        if container is None:
            container = self._run_service(
                self.names.db,
                image.tag,
                network=self.names.network,
                environment={"POSTGRES_USER": self.settings.db_user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": self.settings.db_name},
                volumes={self.names.db_volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
                labels=self._labels("db", **{DIGEST_LABEL: image.id}),
            )
            changes.append(f"created {self.names.db}")
        else:
            self._start_if_stopped(container, changes)

        def ready() -> bool:
            container.reload()
            if container.status in ("exited", "dead"):
                raise StackError(f"{self.names.db} exited: {log_tail(container)}")
            argv = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", self.settings.db_user, "-d", self.settings.db_name]
            return container.exec_run(argv)[0] == 0

        wait_until(ready, timeout=90, interval=0.5, what=f"{self.names.db} to accept connections", last_seen=lambda: log_tail(container))
        return changes

    def _db_container(self) -> Container:
        container = self._get(self.names.db)
        if container is None or container.status != "running":
            raise StackError(f"the production database {self.names.db} is not running; run `nox -s up`")
        return container

    def database(self) -> DatabaseAddress:
        s = self.settings
        if self._external_database:
            return DatabaseAddress(host=s.db_host, port=s.db_port, name=s.db_name, user=s.db_user, password=db_password(s))
        address = _address(self._db_container(), self.names.network)
        if not address:
            raise StackError(f"{self.names.db} has no address on {self.names.network}")
        return DatabaseAddress(host=address, port=DB_PORT, name=s.db_name, user=s.db_user, password=db_password(s))

    def database_image(self) -> str:
        if self._external_database:
            # pg_dump and the rehearsal copy must be the server's own major version, whatever was configured.
            with connect(self.database()) as conn:
                major = conn.execute("SHOW server_version_num").fetchone()[0]
            settings = self.settings.replace(postgres_major=int(major) // 10000)
            return images.postgres_image(self.client, settings, quiet).id
        return self._db_container().image.id

    # --- the app's colours -----------------------------------------------------------------------

    def _web(self, colour: str) -> Container | None:
        if colour not in COLOURS:
            raise StackError(f"colour must be one of {', '.join(COLOURS)}, got {colour!r}")
        return self._get(self.names.web(colour))

    def _processes(self, colour: str) -> list[Container]:
        """The colour's process containers (workers...), found by label."""
        selector = [f"{PROJECT_LABEL}={self.settings.project}", f"{COLOR_LABEL}={colour}", f"{ROLE_LABEL}=process"]
        return self.client.containers.list(all=True, filters={"label": selector})

    def _state(self, colour: str, container: Container) -> ColourState:
        container.reload()
        processes = {c.labels.get(PROCESS_LABEL, c.name): _status(c) for c in self._processes(colour)}
        return ColourState(
            colour=colour,
            release=container.labels.get(RELEASE_LABEL, ""),
            image_id=container.image.id,
            replicas=(_replica(container, self.names.network),),
            processes=processes,
        )

    def colour(self, colour: str) -> ColourState | None:
        container = self._web(colour)
        return self._state(colour, container) if container is not None else None

    def start_colour(
        self, colour: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str] | None = None
    ) -> ColourState:
        if self._web(colour) is not None:
            raise StackError(f"{self.names.web(colour)} exists already; remove it first")
        container = self._create_app(
            self.names.web(colour),
            image.tag,
            self._attachments(),
            service=True,
            environment=dict(environment),
            labels=self._labels_of("web", colour, image),
        )
        self.start_processes(colour, image, environment, processes or {})
        return self._state(colour, container)

    def start_processes(self, colour: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str]) -> None:
        if not processes:
            return
        attachments = self._attachments()
        for name, command in processes.items():
            self._create_app(
                self.names.process(name, colour),
                image.tag,
                attachments,
                service=True,
                command=shlex.split(command),
                environment=dict(environment),
                labels=self._labels_of("process", colour, image, **{PROCESS_LABEL: name}),
            )

    def stop_processes(self, colour: str) -> None:
        for container in self._processes(colour):
            if container.status == "running":
                container.stop(timeout=30)

    def _existing_web(self, colour: str) -> Container:
        container = self._web(colour)
        if container is None:
            raise StackError(f"{self.names.web(colour)} does not exist")
        return container

    def resume_colour(self, colour: str, *, processes: bool = True) -> ColourState:
        for container in [self._existing_web(colour), *(self._processes(colour) if processes else [])]:
            # The database may have another address than when this colour was created or last ran.
            container = self._repinned(container)
            if container.status != "running":
                container.start()
        return self._state(colour, self._existing_web(colour))

    def stop_colour(self, colour: str) -> None:
        # Processes first: a worker must not outlive the web server of its release.
        self.stop_processes(colour)
        self._existing_web(colour).stop(timeout=30)

    def remove_colour(self, colour: str) -> None:
        for container in [*self._processes(colour), self._web(colour)]:
            if container is not None:
                container.remove(force=True, v=True)

    def wait_healthy(self, colour: str, timeout: float) -> ColourState:
        web = self._existing_web(colour)

        def healthy() -> ColourState | None:
            for container in [web, *self._processes(colour)]:
                _fail_if_dead(container)
            state = self._state(colour, web)
            replica = state.replicas[0]
            if replica.health == "none":
                # No HEALTHCHECK in the image: the app's health URL answering 2xx is the verdict.
                answer = requests.get(f"http://{replica.address}:{self.settings.app_port}{self.settings.health_path}", timeout=3)
                return state if replica.state == "running" and answer.ok else None
            return state if state.healthy else None

        return wait_until(healthy, timeout=timeout, interval=0.5, what=f"{web.name} to become healthy", last_seen=lambda: log_tail(web))

    def upstreams(self, colour: str) -> list[str]:
        return [f"{self.names.web(colour)}:{self.settings.app_port}"]

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
        volumes = {host: {"bind": inside, "mode": "rw" if host in writable else "ro"} for host, inside in (mounts or {}).items()}
        spec = {"command": list(argv), "environment": dict(environment), "labels": self._labels("oneoff"), "volumes": volumes}
        try:
            if network is None or network == self.names.network:
                # Against production: attached as the app's containers are (the app's image reaches what the app
                # reaches; pg_dump's gets the database's pin too).
                container = self._create_app(None, image, self._attachments(), service=False, **spec)
            else:
                container = self.client.containers.run(image, detach=True, network=network, **spec)
        except docker.errors.APIError as exc:
            raise _api_error(f"could not start `{' '.join(argv)}` in {image}", exc) from None
        try:
            chunks, pending = [], ""
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for raw in container.logs(stream=True, follow=True):
                text = decoder.decode(raw)
                chunks.append(text)
                if say:
                    lines, pending = whole_lines(pending, text)
                    for line in lines:
                        if line.strip():
                            say(f"  | {line}")
            if say and pending.strip():
                say(f"  | {pending}")
            exit_code = container.wait().get("StatusCode", 1)
            return JobResult(exit_code=exit_code, output="".join(chunks))
        except docker.errors.APIError as exc:
            raise _api_error(f"the job `{' '.join(argv)}` in {image} failed", exc) from None
        finally:
            try:
                # v=True: an image with a VOLUME (Postgres, for pg_dump) leaves an anonymous volume per run otherwise.
                container.remove(force=True, v=True)
            except docker.errors.APIError:
                pass

    # --- scratch databases -----------------------------------------------------------------------

    @contextmanager
    def scratch_postgres(self, image_id: str, *, user: str, dbname: str, mounts: Mapping[str, str]) -> Iterator[_Scratch]:
        # testcontainers reads its settings from the environment when first imported.
        engine.configure_testcontainers()
        from testcontainers.community.postgres import PostgresContainer

        password = secrets.token_urlsafe(16)
        container = PostgresContainer(image=image_id, username=user, password=password, dbname=dbname, driver=None)
        container.with_name(f"{self.names.scratch_prefix}{uuid.uuid4().hex[:8]}")
        for host, inside in mounts.items():
            container.with_volume_mapping(host, inside, "ro")
        try:
            container.start()
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            database = ScratchDatabase(
                host_address=DatabaseAddress(
                    host="127.0.0.1", port=int(container.get_exposed_port(DB_PORT)), name=dbname, user=user, password=password
                ),
                network=SCRATCH_NETWORK,
                network_host=_address(wrapped, SCRATCH_NETWORK),
                name=wrapped.name,
            )
            yield _Scratch(container, database)
        finally:
            # Removes the container and the anonymous volume of the image's VOLUME; nothing when the start failed early.
            container.stop()

    def remove_stale_scratch(self) -> list[str]:
        removed = []
        for container in self.client.containers.list(all=True, filters={"label": "org.testcontainers=true"}):
            if container.name.startswith(self.names.scratch_prefix):
                container.remove(force=True, v=True)
                removed.append(container.name)
        return removed

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
        # One proxy: its directories are the instance-less ones.
        mounts = {host.replace(f"/{INSTANCE}", ""): inside for host, inside in mounts.items()}
        writable = [path.replace(f"/{INSTANCE}", "") for path in writable]
        container = self._get(self.names.proxy)
        if container is None:
            self._run_service(
                self.names.proxy,
                image.tag,
                command=list(command),
                user=user,
                network=self.names.network,
                ports={f"{port_in_container}/tcp": (self.settings.proxy_bind, self.settings.proxy_port)},
                volumes={host: {"bind": inside, "mode": "rw" if host in writable else "ro"} for host, inside in mounts.items()},
                labels=self._labels("proxy", **{DIGEST_LABEL: image.id}),
            )
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
        found = {}
        for container in self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.settings.project}"}):
            if container.labels.get(ROLE_LABEL) == "oneoff":
                continue
            state = _health(container)
            state = (container.attrs.get("State") or {}).get("Status", "unknown") if state == "none" else state
            release = container.labels.get(RELEASE_LABEL)
            found[container.name] = state + (f" (release {release})" if release else "")
        return found

    def footprint(self) -> set[str]:
        selector = {"label": f"{PROJECT_LABEL}={self.settings.project}"}
        found = {f"container {c.name} ({c.status})" for c in self.client.containers.list(all=True, filters=selector)}
        found |= {f"network {n.name}" for n in self.client.networks.list(filters=selector)}
        found |= {f"volume {v.name}" for v in self.client.volumes.list(filters=selector)}
        found |= {f"scratch {c.name}" for c in self.client.containers.list(all=True, filters={"label": "org.testcontainers=true"})
                  if c.name.startswith(self.names.scratch_prefix)}  # fmt: skip
        # Unnamed volumes nobody uses: a one-off removed without its volume leaves one each (engine-wide).
        found |= {f"dangling volume {v.name}" for v in self.client.volumes.list(filters={"dangling": True})}
        return found

    def down(self, *, volumes: bool = False) -> list[str]:
        return remove_labelled(self.client, self.settings.project, volumes=volumes)


def remove_labelled(client: docker.DockerClient, project: str, *, volumes: bool = False) -> list[str]:
    """Remove every container and network (and volume if asked) labelled with ``project``."""
    selector = {"label": f"{PROJECT_LABEL}={project}"}
    removed = []
    for container in client.containers.list(all=True, filters=selector):
        container.remove(force=True, v=True)  # anonymous volumes only; named ones go with `volumes`
        removed.append(f"container {container.name}")
    for network in client.networks.list(filters=selector):
        network.remove()
        removed.append(f"network {network.name}")
    if volumes:
        for volume in client.volumes.list(filters=selector):
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
    return removed
