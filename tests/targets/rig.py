"""A target run by hand with the docker SDK, configured from its deploy.toml: what a person would do without deploygate.

Postgres on a network of its own, one-off commands (``migrate``), web and worker containers,
all labelled with the rig's project and removed afterwards, even on failure. The target
integration tests use it to prove a target works on its own, so that a failure of a
deploygate test on it is deploygate's, not the target's.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import docker
import docker.models.containers
import requests

from deploygate import config
from deploygate.platform import images
from deploygate.platform.docker_host import PROJECT_LABEL, remove_labelled
from deploygate.waiting import wait_until

Container = docker.models.containers.Container
# A password URL parsing could get wrong: it must be percent-encoded in DATABASE_URL.
DB_PASSWORD_SUFFIX = "@/:%?#"


def logs(container: Container) -> str:
    return container.logs().decode(errors="replace")


@dataclass
class Rig:
    """Postgres on a network of its own, and what every app container gets from deploy.toml."""

    client: docker.DockerClient
    project: str
    network: str
    db: Container
    db_user: str
    environment: dict[str, str]
    app: dict[str, Any]

    def oneoff(self, image: images.Image, argv: list[str], environment: dict[str, str] | None = None) -> tuple[int, str]:
        """Run ``argv`` in ``image`` to its end; its exit code and output. ``environment`` replaces the rig's."""
        container = self.client.containers.run(
            image.id,
            argv,
            detach=True,
            network=self.network,
            environment=self.environment if environment is None else environment,
            labels={PROJECT_LABEL: self.project},
        )
        try:
            code = container.wait(timeout=120)["StatusCode"]
            return code, logs(container)
        finally:
            container.remove(force=True)

    def start(self, name: str, image: images.Image, command: list[str] | None = None, **kwargs: Any) -> Container:
        """A long-running container of ``image``: its own CMD unless ``command``."""
        return self.client.containers.run(
            image.id,
            command,
            name=f"{self.project}_{name}",
            detach=True,
            network=self.network,
            environment=self.environment,
            labels={PROJECT_LABEL: self.project},
            **kwargs,
        )

    def start_web(self, name: str, image: images.Image) -> str:
        """Start the web container (the app port on a free loopback port), wait until its health URL answers 200; its base URL."""
        port = f"{self.app['port']}/tcp"
        container = self.start(name, image, ports={port: ("127.0.0.1", None)})
        container.reload()
        url = f"http://127.0.0.1:{container.ports[port][0]['HostPort']}"

        def healthy() -> bool:
            container.reload()
            if container.status == "exited":
                raise AssertionError(f"{container.name} exited: {logs(container)[-2000:]}")
            return requests.get(url + self.app["health_path"], timeout=5).status_code == 200

        wait_until(healthy, timeout=60, what=f"{container.name} to answer 200", last_seen=lambda: logs(container)[-500:])
        return url

    def start_worker(self, name: str, image: images.Image, first_pass: str = "pass: processed") -> Container:
        """Start the worker with deploy.toml's command and wait until its log shows ``first_pass``."""
        container = self.start(name, image, shlex.split(self.app["processes"]["worker"]))
        wait_until(
            lambda: first_pass in logs(container),
            timeout=60,
            what=f"{container.name}'s first pass",
            last_seen=lambda: logs(container)[-500:],
        )
        return container

    def wait_db_ready(self) -> None:
        # Over TCP: during its first start the image runs a temporary server on the socket only.
        def ready() -> bool:
            self.db.reload()
            if self.db.status == "exited":
                raise AssertionError(f"Postgres exited: {logs(self.db)[-2000:]}")
            return self.db.exec_run(["pg_isready", "-q", "-h", "127.0.0.1", "-U", self.db_user])[0] == 0

        wait_until(ready, timeout=60, what="Postgres to accept connections", last_seen=lambda: logs(self.db)[-500:])


def app_environment(app: dict[str, Any], database_url: str, from_env: dict[str, str]) -> dict[str, str]:
    """deploy.toml's [app.env], its secrets resolved from ``from_env``, and the database URL variable."""
    environment = dict(app["env"])
    for name, reference in app["secrets"].items():
        source, _, variable = reference.partition(":")
        assert source == "env", f"this rig resolves env: secrets only, not {reference!r}"
        environment[name] = from_env[variable]
    environment[app["database_url"]] = database_url
    return environment


@contextmanager
def plain_rig(
    client: docker.DockerClient, settings: config.Settings, project: str, target_config: dict[str, Any], from_env: dict[str, str]
) -> Iterator[Rig]:
    """Postgres of deploy.toml's major version, its database and user, on the rig's network; everything
    labelled ``project`` is removed before and after. ``from_env`` resolves the app's env: secrets."""
    database = target_config["database"]
    postgres = images.postgres_image(client, settings.replace(postgres_major=database["postgres_major"]), print)
    remove_labelled(client, project)
    network = f"{project}_net"
    password = secrets.token_urlsafe(12) + DB_PASSWORD_SUFFIX
    try:
        client.networks.create(network, driver="bridge", labels={PROJECT_LABEL: project})
        db = client.containers.run(
            postgres.id,
            name=f"{project}_db",
            detach=True,
            network=network,
            environment={"POSTGRES_USER": database["user"], "POSTGRES_PASSWORD": password, "POSTGRES_DB": database["name"]},
            labels={PROJECT_LABEL: project},
        )
        url = f"postgres://{quote(database['user'], safe='')}:{quote(password, safe='')}@{db.name}:5432/{database['name']}"
        environment = app_environment(target_config["app"], url, from_env)
        rig = Rig(client, project, network, db, database["user"], environment, target_config["app"])
        rig.wait_db_ready()
        yield rig
    finally:
        remove_labelled(client, project)
