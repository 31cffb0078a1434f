"""The project's objects on a Docker Swarm, as its manager's engine knows them: services, tasks, nodes, networks.

How ``swarm.SwarmPlatform`` asks the swarm what exists (names compared exactly, networks by
their swarm-scoped id), creates a service from a spec, and counts or removes everything the
project holds (by label, like a single host).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Self

import docker
import docker.errors
import docker.models.services
import requests

from deploygate.config import Settings
from deploygate.errors import StackError
from deploygate.log import Say
from deploygate.platform.docker_host import DockerHost
from deploygate.platform.naming import PROJECT_LABEL, RELEASE_LABEL, ROLE_LABEL, ProjectObjects
from deploygate.platform.networking import missing_networks, missing_networks_error
from deploygate.platform.specs import ContainerSpec
from deploygate.platform.swarm_images import NodeImages
from deploygate.platform.swarm_services import one_line, service_kwargs, service_logs
from deploygate.waiting import wait_until

Service = docker.models.services.Service
_LOG_LINES = 3


class SwarmObjects(ProjectObjects):
    """The project's objects on the swarm whose manager ``manager`` talks to: found, created, counted and removed.

    ``local`` (the engine of this host) builds the images and runs scratch databases.
    """

    def __init__(self, manager: docker.DockerClient, local: DockerHost, nodes: Sequence[str], settings: Settings) -> None:
        self.manager = manager
        self.local = local  # builds images; runs scratch databases and the jobs against them
        self.nodes = list(nodes)  # every node's engine endpoint (image copies)
        super().__init__(settings)
        self._images = NodeImages(local.client, self.nodes)

    @classmethod
    def connect(cls, settings: Settings, say: Say = print) -> Self:
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
            raise StackError(
                f"the engine at {endpoint or 'DOCKER_HOST'} is not a swarm manager (docker swarm init, or point swarm_manager at one)"
            )
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

    def _check_networks(self, networks: Sequence[str], where: str) -> dict[str, str]:
        """Name -> id of the networks after the first (the team's); raises ``StackError`` when one of them is not on
        the swarm (swarm-scoped: a service joins no node's local network), ``where`` naming it in the error."""
        ids = self._swarm_networks(networks[1:])
        missing = missing_networks(networks[1:], ids)
        if missing:
            raise missing_networks_error(missing, where)
        return ids

    def _create(self, spec: ContainerSpec) -> Service:
        """The service of ``spec``; its networks by id: a name could match a node's stale local copy of a removed
        network. No pin of the database for the app: its task gets another address whenever Swarm starts it again."""
        network = self._network_id()
        if network is None:
            raise StackError(f"the overlay network {self.names.network} does not exist; run `nox -s up`")
        ids = self._check_networks(spec.networks, "the swarm")
        kwargs = service_kwargs(spec, [network, *(ids[n] for n in spec.networks[1:])], self._manager_node_id())
        try:
            return self.manager.services.create(kwargs.pop("image"), **kwargs)
        except docker.errors.APIError as exc:
            raise StackError(f"could not create the service {spec.name}: {exc.explanation or exc}") from None

    def _log_tail(self, service: Service, lines: int = _LOG_LINES) -> str:
        try:
            # Within a deadline: a task on a node whose engine is down holds the stream open forever.
            return one_line(service_logs(self.manager.api, service.id, tail=lines, timestamps=False).decode(errors="replace"))
        except docker.errors.APIError:
            return "no logs"

    def _running_tasks(self, service: Service) -> list[dict]:
        return [t for t in self._tasks(service) if t["Status"]["State"] == "running"]

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
        found |= {
            f"container {c.name} ({c.status})"
            for c in self.manager.containers.list(all=True, filters={"label": "com.docker.swarm.service.name"})
            if c.labels["com.docker.swarm.service.name"].startswith(f"{self.settings.project}_")
        }
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
