"""Scratch databases (the rehearsal copy) on the local engine: throwaway Postgres containers of testcontainers.

testcontainers is the library made for throwaway databases in tests: it starts one,
waits until it accepts connections and removes it with its volume. Jobs against a
scratch database join its network (``SCRATCH_NETWORK``). A crashed run's leftovers are
found by testcontainers' label and the project's name prefix.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import docker

from deploygate.database import DatabaseAddress
from deploygate.platform import engine
from deploygate.platform.base import ScratchDatabase
from deploygate.platform.docker_containers import Container, address
from deploygate.platform.naming import DB_PORT

# testcontainers' default network: jobs against a scratch database join it.
SCRATCH_NETWORK = "bridge"
_TESTCONTAINERS = {"label": "org.testcontainers=true"}


class _Scratch:
    """A running scratch Postgres; ``exec`` runs a command inside it."""

    def __init__(self, container: Any, database: ScratchDatabase) -> None:
        self._container = container
        self.database = database

    def exec(self, argv: Sequence[str]) -> tuple[int, str]:
        code, output = self._container.get_wrapped_container().exec_run(list(argv))
        return code, output.decode(errors="replace")


@contextmanager
def scratch_postgres(prefix: str, image_id: str, *, user: str, dbname: str, mounts: Mapping[str, str]) -> Iterator[_Scratch]:
    """A Postgres of ``image_id`` named ``<prefix><random>``, ``mounts`` read-only; removed on exit, even when its start fails."""
    # testcontainers reads its settings from the environment when first imported.
    engine.configure_testcontainers()
    from testcontainers.community.postgres import PostgresContainer

    password = secrets.token_urlsafe(16)
    container = PostgresContainer(image=image_id, username=user, password=password, dbname=dbname, driver=None)
    container.with_name(f"{prefix}{uuid.uuid4().hex[:8]}")
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
            network_host=address(wrapped, SCRATCH_NETWORK),
            name=wrapped.name,
        )
        yield _Scratch(container, database)
    finally:
        # Removes the container and the anonymous volume of the image's VOLUME; nothing when the start failed early.
        container.stop()


def leftovers(client: docker.DockerClient, prefix: str) -> list[Container]:
    """Scratch databases of ``prefix`` that exist now (a crashed run's, or a running rehearsal's)."""
    return [c for c in client.containers.list(all=True, filters=_TESTCONTAINERS) if c.name.startswith(prefix)]


def remove_stale(client: docker.DockerClient, prefix: str) -> list[str]:
    """Remove the scratch databases of ``prefix``; returns their names."""
    removed = []
    for container in leftovers(client, prefix):
        container.remove(force=True, v=True)
        removed.append(container.name)
    return removed
