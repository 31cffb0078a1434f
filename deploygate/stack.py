"""The production stack: network, database (with its volume), the app's blue/green containers, the proxy.

``up`` is idempotent: it creates what is missing, starts what is stopped and leaves
alone what runs, so a second run changes nothing. Which colour is live is read from the
proxy's written configuration, never assumed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import docker
import docker.errors
import requests

from deploygate import images
from deploygate.config import Settings
from deploygate.containers import (
    COLOR_LABEL,
    DIGEST_LABEL,
    PROJECT_LABEL,
    RELEASE_LABEL,
    ROLE_LABEL,
    container_ip,
    get_or_none,
    health_status,
    remove_labelled,
    run_oneoff,
)
from deploygate.database import DatabaseAddress, db_password
from deploygate.errors import StackError
from deploygate.proxy import ProxyPaths, Upstream, command as proxy_command, write_config
from deploygate.waiting import wait_until

Say = Callable[[str], None]
COLORS = ("blue", "green")
DB_PORT = 5432


@dataclass(frozen=True)
class StackNames:
    """Names of the project's Docker objects, all derived from the project name."""

    project: str

    @property
    def network(self) -> str:
        return f"{self.project}_net"

    @property
    def db(self) -> str:
        return f"{self.project}_db"

    @property
    def db_volume(self) -> str:
        return f"{self.project}_pgdata"

    @property
    def proxy(self) -> str:
        return f"{self.project}_proxy"

    def web(self, color: str) -> str:
        return f"{self.project}_web_{color}"


def proxy_paths(settings: Settings) -> ProxyPaths:
    base = settings.path(settings.state_dir) / settings.project / "proxy"
    return ProxyPaths(config_dir=base / "conf", log_dir=base / "logs")


def labels(settings: Settings, role: str, **extra: str) -> dict[str, str]:
    return {PROJECT_LABEL: settings.project, ROLE_LABEL: role, **extra}


def app_environment(settings: Settings, password: str) -> dict[str, str]:
    """What an app container needs to reach the production database."""
    return db_environment(settings, StackNames(settings.project).db, DB_PORT, password)


def db_environment(settings: Settings, host: str, port: int, password: str) -> dict[str, str]:
    """The app's database variables (``<app_db_env_prefix>HOST`` ...) for any database it is pointed at."""
    prefix = settings.app_db_env_prefix
    return {
        f"{prefix}HOST": host,
        f"{prefix}PORT": str(port),
        f"{prefix}NAME": settings.db_name,
        f"{prefix}USER": settings.db_user,
        f"{prefix}PASSWORD": password,
    }


def production_db(client: docker.DockerClient, settings: Settings) -> DatabaseAddress:
    """Address of the production database as seen from this host. Raises ``StackError`` if it is not running."""
    names = StackNames(settings.project)
    container = get_or_none(client, names.db)
    if container is None or container.status != "running":
        raise StackError(f"the production database {names.db} is not running; run `nox -s up`")
    return DatabaseAddress(
        host=container_ip(container, names.network),
        port=DB_PORT,
        name=settings.db_name,
        user=settings.db_user,
        password=db_password(settings),
    )


def proxy_url(settings: Settings) -> str:
    return f"http://{settings.proxy_bind}:{settings.proxy_port}"


# --- up --------------------------------------------------------------------------------------------


@dataclass
class UpReport:
    """What ``up`` did: an empty ``changes`` list means production was already as asked."""

    changes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _ensure_network(client: docker.DockerClient, settings: Settings, report: UpReport) -> None:
    name = StackNames(settings.project).network
    if not client.networks.list(names=[name]):
        client.networks.create(name, driver="bridge", labels=labels(settings, "network"))
        report.changes.append(f"created network {name}")


def _ensure_volume(client: docker.DockerClient, settings: Settings, report: UpReport) -> None:
    name = StackNames(settings.project).db_volume
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        client.volumes.create(name, labels=labels(settings, "db-data"))
        report.changes.append(f"created volume {name}")


def _start_if_stopped(container: docker.models.containers.Container, report: UpReport) -> None:
    if container.status != "running":
        container.start()
        report.changes.append(f"started {container.name}")


def _run_service(client: docker.DockerClient, name: str, image: str, **kwargs: Any) -> docker.models.containers.Container:
    try:
        return client.containers.run(image, name=name, detach=True, restart_policy={"Name": "unless-stopped"}, **kwargs)
    except docker.errors.APIError as exc:
        raise StackError(f"could not start {name}: {exc.explanation or exc}") from None


def _ensure_db(
    client: docker.DockerClient, settings: Settings, image: images.Image, password: str, report: UpReport
) -> docker.models.containers.Container:
    names = StackNames(settings.project)
    container = get_or_none(client, names.db)
    if container is None:
        container = _run_service(
            client,
            names.db,
            image.tag,
            network=names.network,
            environment={"POSTGRES_USER": settings.db_user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": settings.db_name},
            volumes={names.db_volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
            labels=labels(settings, "db", **{DIGEST_LABEL: image.id}),
        )
        report.changes.append(f"created {names.db}")
    else:
        _start_if_stopped(container, report)

    def ready() -> bool:
        code, _ = container.exec_run(["pg_isready", "-q", "-h", "127.0.0.1", "-U", settings.db_user, "-d", settings.db_name])
        return code == 0

    wait_until(ready, timeout=90, interval=0.5, what=f"{names.db} to accept connections", last_seen=lambda: _log_tail(container))
    return container


def _log_tail(container: docker.models.containers.Container, lines: int = 3) -> str:
    try:
        text = container.logs(tail=lines).decode(errors="replace").strip()
    except docker.errors.APIError:
        return "no logs"
    return " | ".join(text.splitlines()) or "no logs"


def wait_healthy(container: docker.models.containers.Container, timeout: float) -> None:
    """Wait for Docker's HEALTHCHECK to report healthy; raises ``WaitTimeout`` with the last log lines."""

    def healthy() -> bool:
        status = health_status(container)
        if status in ("exited", "dead"):
            raise StackError(f"{container.name} exited: {_log_tail(container)}")
        return status == "healthy"

    wait_until(healthy, timeout=timeout, interval=0.5, what=f"{container.name} to become healthy", last_seen=lambda: _log_tail(container))


def manage(
    client: docker.DockerClient, settings: Settings, image: str, args: list[str], password: str, say: Say | None = None
) -> None:
    """Run ``manage.py <args>`` in a one-off container of ``image`` against production; raises ``StackError`` on failure."""
    result = run_oneoff(
        client,
        image,
        ["python", "manage.py", *args],
        network=StackNames(settings.project).network,
        environment=app_environment(settings, password),
        labels=labels(settings, "oneoff"),
        say=say,
    )
    if result.exit_code != 0:
        raise StackError(f"`manage.py {' '.join(args)}` exited {result.exit_code}: {result.last_line}")


def start_web(
    client: docker.DockerClient, settings: Settings, image: images.Image, color: str, password: str
) -> docker.models.containers.Container:
    """Start the app container of ``color`` from ``image`` on production's network (not yet routed to).

    Labels record colour, release and image digest, so the true state can be read back from Docker.
    """
    if color not in COLORS:
        raise StackError(f"colour must be one of {', '.join(COLORS)}, got {color!r}")
    release = image.tag.rsplit(":", 1)[-1]
    return _run_service(
        client,
        StackNames(settings.project).web(color),
        image.tag,
        network=StackNames(settings.project).network,
        environment=app_environment(settings, password),
        labels=labels(settings, "web", **{COLOR_LABEL: color, RELEASE_LABEL: release, DIGEST_LABEL: image.id}),
    )


def _ensure_web(
    client: docker.DockerClient,
    settings: Settings,
    image: images.Image,
    password: str,
    report: UpReport,
    say: Say,
) -> Upstream:
    names = StackNames(settings.project)
    live = proxy_paths(settings).current()
    if live is not None and get_or_none(client, names.proxy) is None and get_or_none(client, names.web(live.color)) is None:
        # Neither the proxy nor what it routed to exists: the written config is a leftover
        # of a stack removed by hand, not a live state to preserve.
        proxy_paths(settings).config_file.unlink()
        live = None
    color = live.color if live else "blue"
    container = get_or_none(client, names.web(color))
    if container is None:
        if live is not None:
            raise StackError(f"the proxy routes to {names.web(color)} but that container is gone; run `nox -s rollback` or `nox -s down`")
        say(f"migrating the database with {image.tag}...")
        started = time.monotonic()
        manage(client, settings, image.tag, ["migrate", "--no-input"], password, say)
        report.timings["migrate_s"] = time.monotonic() - started
        say(f"seeding {settings.seed_rows:,} person links (skipped when already seeded)...")
        started = time.monotonic()
        manage(
            client,
            settings,
            image.tag,
            ["seed_demo", "--rows", str(settings.seed_rows), "--members", str(settings.seed_members),
             "--seed", str(settings.seed_random), "--if-empty"],
            password,
            say,
        )  # fmt: skip
        report.timings["seed_s"] = time.monotonic() - started
        container = start_web(client, settings, image, color, password)
        report.changes.append(f"created {container.name} ({container.labels[RELEASE_LABEL]})")
    else:
        _start_if_stopped(container, report)
    say(f"waiting for {container.name} to become healthy...")
    wait_healthy(container, settings.health_timeout)
    container.reload()
    return Upstream(color=color, host=container.name, port=settings.app_port, release=container.labels.get(RELEASE_LABEL, ""))


def _ensure_proxy(
    client: docker.DockerClient, settings: Settings, image: images.Image, upstream: Upstream, report: UpReport
) -> None:
    names = StackNames(settings.project)
    paths = proxy_paths(settings)
    if paths.current() is None:
        write_config(paths, upstream)
        report.changes.append(f"wrote proxy config routing to {upstream.color}")
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    container = get_or_none(client, names.proxy)
    if container is None:
        _run_service(
            client,
            names.proxy,
            image.tag,
            command=proxy_command(),
            network=names.network,
            ports={"80/tcp": (settings.proxy_bind, settings.proxy_port)},
            volumes=paths.volumes(),
            labels=labels(settings, "proxy", **{DIGEST_LABEL: image.id}),
        )
        report.changes.append(f"created {names.proxy} on {proxy_url(settings)}")
    else:
        _start_if_stopped(container, report)

    def serving() -> bool:
        return requests.get(f"{proxy_url(settings)}{settings.health_path}", timeout=5).status_code == 200

    wait_until(serving, timeout=30, interval=0.5, what=f"{proxy_url(settings)}{settings.health_path} to answer 200")


def up(client: docker.DockerClient, settings: Settings, say: Say = print) -> UpReport:
    """Bring production up (idempotently) and return what changed. Raises ``DeployGateError`` subclasses."""
    report = UpReport()
    started = time.monotonic()
    built = [
        images.postgres_image(client, settings, say),
        images.nginx_image(client, settings, say),
        images.release_image(client, settings, settings.release, say),
    ]
    report.changes += [f"built image {image.tag}" for image in built if image.built]
    report.timings["images_s"] = time.monotonic() - started
    postgres, nginx, app = built
    _ensure_network(client, settings, report)
    _ensure_volume(client, settings, report)
    password = db_password(settings, create=True)
    _ensure_db(client, settings, postgres, password, report)
    upstream = _ensure_web(client, settings, app, password, report, say)
    _ensure_proxy(client, settings, nginx, upstream, report)
    report.timings["total_s"] = time.monotonic() - started
    return report


def down(client: docker.DockerClient, settings: Settings, *, volumes: bool = False) -> list[str]:
    """Remove the project's containers and network (and its data volume with ``volumes``)."""
    removed = remove_labelled(client, settings.project, volumes=volumes)
    config = proxy_paths(settings).config_file
    if config.exists():
        config.unlink()
        removed.append(f"proxy config {config}")
    return removed


# --- status ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackStatus:
    """What runs now: the live colour and release, every container's state, and the app's health."""

    live: Upstream | None
    containers: dict[str, str]
    health: dict[str, Any] | None
    health_error: str | None


def status(client: docker.DockerClient, settings: Settings) -> StackStatus:
    """Inspect production without changing it."""
    selector = {"label": f"{PROJECT_LABEL}={settings.project}"}
    containers = {}
    for container in client.containers.list(all=True, filters=selector):
        if container.labels.get(ROLE_LABEL) == "oneoff":
            continue
        state = health_status(container)
        release = container.labels.get(RELEASE_LABEL)
        containers[container.name] = f"{state}" + (f" (release {release})" if release else "")
    health, error = None, None
    try:
        response = requests.get(f"{proxy_url(settings)}/health/detailed/", timeout=5)
        health = response.json()
    except (requests.RequestException, ValueError) as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return StackStatus(live=proxy_paths(settings).current(), containers=containers, health=health, health_error=error)
