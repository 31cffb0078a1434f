"""Scratch databases (the rehearsal copy) on the local engine: throwaway Postgres containers of testcontainers.

A copy of a physical backup (``scratch_from_data_dir``) starts on an overlay volume of Docker's local
driver whose lower layer is the backup's data directory: nothing is copied before the server starts,
the backup is never written (a file is copied up into the copy's own directory when the server first
opens it for writing), and the copy goes with its volume and directory.

testcontainers is the library made for throwaway databases in tests: it starts one,
waits until it accepts connections and removes it with its volume. Jobs against a
scratch database join its network (``SCRATCH_NETWORK``). A crashed run's leftovers are
found by testcontainers' label and the project's name prefix.
"""

from __future__ import annotations

import os
import secrets
import shutil
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

# Where a copy's own writes go (the overlay's upper and work directories), beside the backups.
COPIES_DIR = ".copies"
_PGDATA = "/var/lib/postgresql/data"
# A throwaway copy: nothing it writes needs to survive a crash, and nothing it may have inherited
# from production's configuration (archiving, a standby's upstream) may reach out.
_COPY_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "archive_mode": "off",
    "primary_conninfo": "",
    "restore_command": "",
    "listen_addresses": "*",
    "port": str(DB_PORT),
}

# testcontainers' default network: jobs against a scratch database join it.
SCRATCH_NETWORK = "bridge"
_TESTCONTAINERS = {"label": "org.testcontainers=true"}
_TESTCONTAINERS_LABELS = {"org.testcontainers": "true"}


class _Scratch:
    """A running scratch Postgres; ``exec`` runs a command inside it."""

    def __init__(self, container: Any, database: ScratchDatabase) -> None:
        self._container = container
        self.database = database

    def exec(self, argv: Sequence[str]) -> tuple[int, str]:
        code, output = self._container.get_wrapped_container().exec_run(list(argv))
        return code, output.decode(errors="replace")


def _described(container: Any, *, user: str, dbname: str, password: str) -> ScratchDatabase:
    """How this host (the published port) and jobs (the scratch network) reach a started scratch database."""
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return ScratchDatabase(
        host_address=DatabaseAddress(
            host="127.0.0.1", port=int(container.get_exposed_port(DB_PORT)), name=dbname, user=user, password=password
        ),
        network=SCRATCH_NETWORK,
        network_host=address(wrapped, SCRATCH_NETWORK),
        name=wrapped.name,
    )


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
        yield _Scratch(container, _described(container, user=user, dbname=dbname, password=password))
    finally:
        # Removes the container and the anonymous volume of the image's VOLUME; nothing when the start failed early.
        container.stop()


def _copy_dirs(data_dir: str, name: str) -> tuple[str, str, str]:
    """The copy's upper and work directories, owned as the backup's data directory is and private to it."""
    copies = os.path.join(os.path.dirname(os.path.dirname(data_dir)), COPIES_DIR)
    os.makedirs(copies, mode=0o700, exist_ok=True)
    os.chmod(copies, 0o700)  # what a copy writes is production's data
    root = os.path.join(copies, name)
    owner = os.stat(data_dir)
    upper, work = os.path.join(root, "upper"), os.path.join(root, "work")
    for path in (upper, work):
        os.makedirs(path, mode=0o700)
    os.chown(upper, owner.st_uid, owner.st_gid)  # the merged root is the upper's: the server's, mode 0700
    return root, upper, work


@contextmanager
def scratch_from_data_dir(
    client: docker.DockerClient, prefix: str, image_id: str, data_dir: str, *, user: str, dbname: str
) -> Iterator[_Scratch]:
    """A Postgres of ``image_id`` started on an overlay of ``data_dir`` (a base backup), named ``<prefix><random>``.

    The server runs as the image's postgres user (so its entrypoint never chowns, which would copy every
    file up) and gets a password of its own: production's is never handed to the copy. Removed on exit
    with its volume and directories, even when its start fails.
    """
    engine.configure_testcontainers()
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import ExecWaitStrategy

    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    root, upper, work = _copy_dirs(data_dir, name)
    volume = None
    container = None
    try:
        volume = client.volumes.create(
            name,
            driver="local",
            driver_opts={"type": "overlay", "device": "overlay", "o": f"lowerdir={data_dir},upperdir={upper},workdir={work}"},
            labels=_TESTCONTAINERS_LABELS,
        )
        command = ["postgres"] + [f"--{key.replace('_', '-')}={value}" for key, value in _COPY_SETTINGS.items()]
        # Through the socket, where initdb's pg_hba trusts local connections: the password is not set yet.
        ready = ["psql", "-h", "/var/run/postgresql", "-U", user, "-d", dbname, "-Atc", "SELECT 1"]
        container = (
            DockerContainer(image_id)
            .with_name(name)
            .with_command(command)
            .with_exposed_ports(DB_PORT)
            .with_volume_mapping(name, _PGDATA, "rw")
            .with_kwargs(user="postgres")
            .waiting_for(ExecWaitStrategy(ready).with_startup_timeout(120).with_poll_interval(0.1))
        )
        container.start()
        password = secrets.token_urlsafe(16)
        wrapped = container.get_wrapped_container()
        code, output = wrapped.exec_run(
            [
                "sh",
                "-c",
                'echo "ALTER ROLE :"role" PASSWORD :\'pw\'" | psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$ROLE" -d "$DB" -q'
                ' -v role="$ROLE" -v pw="$PW"',
            ],
            environment={"ROLE": user, "DB": dbname, "PW": password},
        )
        if code != 0:
            raise RuntimeError(f"the copy's password could not be set: {output.decode(errors='replace').strip()}")
        yield _Scratch(container, _described(container, user=user, dbname=dbname, password=password))
    finally:
        # Killed, not stopped: a clean shutdown's checkpoint would only copy more files up before they go.
        if container is not None and container.get_wrapped_container() is not None:
            container.get_wrapped_container().remove(force=True, v=True)
        if volume is not None:
            _remove_volume(volume)
        shutil.rmtree(root, ignore_errors=True)


def leftovers(client: docker.DockerClient, prefix: str) -> list[Container]:
    """Scratch databases of ``prefix`` that exist now (a crashed run's, or a running rehearsal's)."""
    return [c for c in client.containers.list(all=True, filters=_TESTCONTAINERS) if c.name.startswith(prefix)]


def remove_stale(client: docker.DockerClient, prefix: str) -> list[str]:
    """Remove the scratch databases of ``prefix``; returns their names."""
    removed = []
    for container in leftovers(client, prefix):
        container.remove(force=True, v=True)
        removed.append(container.name)
    for volume in leftover_volumes(client, prefix):
        upper = dict(part.split("=", 1) for part in volume.attrs.get("Options", {}).get("o", "").split(",") if "=" in part).get("upperdir")
        if not _remove_volume(volume):
            continue
        if upper:
            shutil.rmtree(os.path.dirname(upper), ignore_errors=True)
        removed.append(f"volume {volume.name}")
    return removed


def _remove_volume(volume) -> bool:
    """Remove a copy's volume; False when the engine refuses. Seen here: an engine that still counts a mount
    of a removed container; the volume is then left to ``remove_stale`` (and the footprint check names it)."""
    try:
        volume.remove(force=True)
    except docker.errors.APIError:
        return False
    return True


def leftover_volumes(client: docker.DockerClient, prefix: str) -> list:
    """Overlay volumes of copies of ``prefix`` that exist now (a crashed run's, or a running rehearsal's)."""
    return [v for v in client.volumes.list(filters=_TESTCONTAINERS) if v.name.startswith(prefix)]
