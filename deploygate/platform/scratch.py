"""Scratch databases (the rehearsal copy) on the local engine: throwaway Postgres containers of testcontainers.

A copy of a physical backup (``scratch_from_data_dir``) starts on a volume of Docker's local driver
without copying the backup: a clone of its data directory where the filesystem clones files (XFS with
reflink=1, btrfs: only the blocks the copy writes cost room), else an overlay whose lower layer is the
data directory (any filesystem: a file is copied up whole when the server first opens it for writing).
The backup is never written, and the copy goes with its volume and directory.

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
from deploygate.platform import clone, engine
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
    # A new WAL segment is then made by writing its last byte, not 16 MB of zeros: on a clone, room it never uses.
    "wal_init_zero": "off",
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
# What scratch containers not made by testcontainers carry, so ``remove_stale`` finds them as it finds its own.
SCRATCH_LABELS = _TESTCONTAINERS_LABELS


class _Scratch:
    """A running scratch Postgres; ``exec`` runs a command inside it."""

    def __init__(self, container: Any, database: ScratchDatabase) -> None:
        self._container = container
        self.database = database

    def exec(self, argv: Sequence[str]) -> tuple[int, str]:
        code, output = self._container.get_wrapped_container().exec_run(list(argv))
        return code, output.decode(errors="replace")


def _described(container: Any, *, user: str, dbname: str, password: str, copy_kind: str = "") -> ScratchDatabase:
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
        copy_kind=copy_kind,
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


def _overlay_dirs(data_dir: str, root: str) -> tuple[str, str]:
    """The overlay's upper and work directories in ``root``; the upper owned as the backup's data directory is."""
    owner = os.stat(data_dir)
    upper, work = os.path.join(root, "upper"), os.path.join(root, "work")
    for path in (upper, work):
        os.makedirs(path, mode=0o700)
    os.chown(upper, owner.st_uid, owner.st_gid)  # the merged root is the upper's: the server's, mode 0700
    return upper, work


def _copy_volume(client: docker.DockerClient, name: str, data_dir: str, root: str, copy: str) -> tuple[Any, str]:
    """The copy's data directory as a volume of Docker's local driver, and how it was made: clone or overlay.

    A clone (``copy`` auto or clone, where the filesystem of ``root`` clones files) costs only the blocks the
    copy writes; an overlay (``copy`` auto or overlay) works on any filesystem but copies a file up whole.
    """
    os.makedirs(root, mode=0o700)
    if copy != "overlay" and clone.clones_in(root):
        data = os.path.join(root, "data")
        clone.clone_tree(data_dir, data)
        kind, options = "clone", {"type": "none", "device": data, "o": "bind"}
    elif copy == "clone":
        raise clone.CloneError(
            f"backup.copy is clone, but the filesystem of {os.path.dirname(root)} cannot clone files "
            "(it takes XFS made with reflink=1, or btrfs); set backup.copy to auto or overlay"
        )
    else:
        upper, work = _overlay_dirs(data_dir, root)
        kind, options = "overlay", {"type": "overlay", "device": "overlay", "o": f"lowerdir={data_dir},upperdir={upper},workdir={work}"}
    return client.volumes.create(name, driver="local", driver_opts=options, labels=_TESTCONTAINERS_LABELS), kind


@contextmanager
def scratch_from_data_dir(
    client: docker.DockerClient, prefix: str, image_id: str, data_dir: str, *, user: str, dbname: str, copy: str = "auto"
) -> Iterator[_Scratch]:
    """A Postgres of ``image_id`` started on a copy-on-write copy of ``data_dir`` (a base backup), named ``<prefix><random>``.

    The copy is a clone where the filesystem can (``copy`` auto or clone), else an overlay (see ``_copy_volume``).
    The server runs as the image's postgres user (so its entrypoint never chowns, which would write every
    file) and gets a password of its own: production's is never handed to the copy. Removed on exit
    with its volume and directories, even when its start fails.
    """
    engine.configure_testcontainers()
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import ExecWaitStrategy

    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    copies = os.path.join(os.path.dirname(os.path.dirname(data_dir)), COPIES_DIR)
    os.makedirs(copies, mode=0o700, exist_ok=True)
    os.chmod(copies, 0o700)  # what a copy writes is production's data
    root = os.path.join(copies, name)
    volume = None
    container = None
    try:
        volume, kind = _copy_volume(client, name, data_dir, root, copy)
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
        yield _Scratch(container, _described(container, user=user, dbname=dbname, password=password, copy_kind=kind))
    finally:
        # Killed, not stopped: a clean shutdown's checkpoint would only write more before the copy goes.
        # Found by name when a signal cut short the request that made it (its id never came back).
        wrapped = container.get_wrapped_container() if container is not None else None
        try:
            (wrapped or client.containers.get(name)).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        _remove_volume(volume if volume is not None else _volume_named(client, name))
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
        root = _copy_root(volume.attrs.get("Options") or {})
        if not _remove_volume(volume):
            continue
        if root:
            shutil.rmtree(root, ignore_errors=True)
        removed.append(f"volume {volume.name}")
    return removed


def _copy_root(options: Mapping[str, str]) -> str | None:
    """The directory of a copy's volume (``<backup.dir>/.copies/<name>``), from its driver options."""
    if options.get("type") == "none":
        data = options.get("device", "")
        return os.path.dirname(data) if data else None
    upper = dict(part.split("=", 1) for part in options.get("o", "").split(",") if "=" in part).get("upperdir")
    return os.path.dirname(upper) if upper else None


def _volume_named(client: docker.DockerClient, name: str) -> Any:
    try:
        return client.volumes.get(name)
    except docker.errors.NotFound:
        return None


def _remove_volume(volume) -> bool:
    """Remove a copy's volume (if any); False when the engine refuses. Seen here: an engine that still counts a
    mount of a removed container; the volume is then left to ``remove_stale`` (and the footprint check names it)."""
    if volume is None:
        return True
    try:
        volume.remove(force=True)
    except docker.errors.APIError:
        return False
    return True


def leftover_volumes(client: docker.DockerClient, prefix: str) -> list:
    """Volumes of copies of ``prefix`` that exist now (a crashed run's, or a running rehearsal's)."""
    return [v for v in client.volumes.list(filters=_TESTCONTAINERS) if v.name.startswith(prefix)]
