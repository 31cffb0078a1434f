"""Production brought up, inspected and taken down, on whatever platform runs it.

``up`` is idempotent: it creates what is missing, starts what is stopped and leaves alone
what runs, so a second run changes nothing. Which color is live is read from the
proxy's state, never assumed.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from deploygate import app, cache
from deploygate.config import Settings
from deploygate.database import db_password
from deploygate.errors import StackError
from deploygate.health import HealthSample, sample
from deploygate.log import DeployLog, Say
from deploygate.platform.base import Platform
from deploygate.platform.clone import empty_directory
from deploygate.platform.images import Image
from deploygate.platform.naming import DB_PORT, Names
from deploygate.probe import MigrateResult, Prober
from deploygate.proxy import Proxy, Route
from deploygate.redaction import secrets_of


@dataclass
class UpReport:
    """What ``up`` did: an empty ``changes`` list means production was already as asked."""

    changes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def app_environment(platform: Platform, settings: Settings, cache_namespace: str | None = None) -> dict[str, str]:
    """The environment of the app's containers in production (pointed at production's database, and its cache
    with the namespace of the schema they run on: ``cache_namespace``, the one a color is started with)."""
    host, port = platform.database_endpoint()
    environment = app.environment(settings, host, port, db_password(settings))
    if settings.db_standbys and not settings.db_host:
        # By its name on the project's network, as the app reaches the primary.
        environment |= app.replica_environment(settings, Names(settings.project).db_standby, DB_PORT, db_password(settings))
    urls = platform.cache_urls()
    if urls is not None:
        environment |= cache.environment(settings, urls.app, cache_namespace)
    return environment


def schema_namespace(platform: Platform, settings: Settings, image: Image) -> str | None:
    """The cache namespace of the schema production is at, as ``image`` sees it; None without a cache."""
    if not cache.configured(settings):
        return None
    plan = Prober.configured(platform, settings, image, app_environment(platform, settings)).plan()
    return cache.namespace(plan.applied_leaves)


def manage(platform: Platform, settings: Settings, image: Image, argv: list[str], say: Say | None = None) -> None:
    """Run a command of the app (``manage.py ...``) in a one-off job of ``image`` against production.

    Raises ``StackError`` when it exits non-zero, with its last line.
    """
    result = platform.run_job(image.tag, argv, environment=app_environment(platform, settings), say=say)
    if result.exit_code != 0:
        raise StackError(f"`{' '.join(argv)}` exited {result.exit_code}: {result.last_line}")


def migrate_summary(tag: str, migrated: MigrateResult, seconds: float) -> str:
    """One line for the terminal: how many migrations ``tag`` applied, in how long, and the slowest."""
    applied = [m for m in migrated.migrations if m.direction == "forwards" and not m.error]
    if not applied:
        return f"migrated with {tag}: nothing to apply ({seconds:.1f}s)"
    slowest = max(applied, key=lambda m: m.duration_s)
    return f"migrated with {tag}: {len(applied)} migrations applied in {seconds:.1f}s (slowest {slowest.label}, {slowest.duration_s:.2f}s)"


def _secrets(platform: Platform, settings: Settings) -> list[str]:
    return secrets_of(settings, platform.database())


def seed_argv(settings: Settings) -> list[str]:
    """The configured seed command with its placeholders filled in (empty: no seeding)."""
    if not settings.seed_command.strip():
        return []
    text = settings.seed_command.format(rows=settings.seed_rows, members=settings.seed_members, random_seed=settings.seed_random)
    return shlex.split(text)


def _ensure_app(platform: Platform, settings: Settings, proxy: Proxy, image: Image, report: UpReport, say: Say) -> Route:
    live = proxy.current()
    if live is not None and platform.color(live.color) is None:
        if platform.proxy_exists():
            raise StackError(f"the proxy routes to {live.color}, which is gone; run `nox -s rollback` or `nox -s down`")
        # Neither the proxy nor what it routed to exists: the state is a leftover of a
        # production removed by hand, not a live state to preserve.
        proxy.forget()
        live = None
    color = live.color if live else "blue"
    state = platform.color(color)
    if state is None:
        # migrate's own output can run to hundreds of KB (every migration, the probe's result): the
        # terminal gets one line, the log file all of it.
        log = DeployLog(
            settings.path(settings.logs_dir) / f"up_{time.strftime('%Y%m%d_%H%M%S')}.log", _secrets(platform, settings), echo=False
        )
        say(f"migrating the database with {image.tag} (its output: {log.path})...")
        started = time.monotonic()
        migrated = Prober.configured(platform, settings, image, app_environment(platform, settings), say=log).migrate()
        report.timings["migrate_s"] = time.monotonic() - started
        for migration in migrated.migrations:
            log(
                f"{migration.label}: {migration.duration_s:.3f}s, {migration.strongest_locks()}{', ' + migration.error if migration.error else ''}"
            )
        log(migrate_summary(image.tag, migrated, report.timings["migrate_s"]))
        if not migrated.ok:
            raise StackError(f"migrating production with {image.tag} failed: {migrated.error} (its output: {log.path})")
        say(migrate_summary(image.tag, migrated, report.timings["migrate_s"]))
        seed = seed_argv(settings)
        if seed:
            say(f"seeding: {' '.join(seed)}")
            started = time.monotonic()
            manage(platform, settings, image, seed, say)
            report.timings["seed_s"] = time.monotonic() - started
        environment = app_environment(platform, settings, schema_namespace(platform, settings, image))
        state = platform.start_color(color, image, environment, settings.app_processes)
        report.changes.append(f"created {color} ({state.release})")
    elif not state.running:
        platform.resume_color(color)
        report.changes.append(f"started {color} ({state.release})")
    say(f"waiting for {color} to become healthy...")
    state = platform.wait_healthy(color, settings.health_timeout)
    return Route(color=color, release=state.release)


def up(platform: Platform, settings: Settings, say: Say = print) -> UpReport:
    """Bring production up (idempotently) and return what changed. Raises ``DeployGateError`` subclasses."""
    report = UpReport()
    started = time.monotonic()
    postgres = platform.service_image("postgres", say)
    proxy_image = platform.service_image("proxy", say)
    release = platform.resolve_image(settings.release, say)
    report.changes += [f"built image {image.tag}" for image in (postgres, proxy_image, release) if image.built]
    report.timings["images_s"] = time.monotonic() - started
    report.changes += platform.ensure_database(postgres, db_password(settings, create=True))
    if settings.cache_service != "none":
        report.changes += platform.ensure_cache(platform.service_image("cache", say))
    proxy = Proxy(settings, platform)
    route = _ensure_app(platform, settings, proxy, release, report, say)
    report.changes += proxy.ensure(proxy_image, route)
    report.timings["total_s"] = time.monotonic() - started
    return report


def down(platform: Platform, settings: Settings, *, volumes: bool = False) -> list[str]:
    """Remove production's containers and network (and its data with ``volumes``: the data volume, and what
    ``database.data_dir`` holds, which removing a bind volume leaves in place)."""
    removed = platform.down(volumes=volumes) + Proxy(settings, platform).forget()
    data_dir = settings.path(settings.db_data_dir) if settings.db_data_dir and not settings.db_host else None
    if volumes and data_dir is not None and data_dir.is_dir() and empty_directory(data_dir):
        removed.append(f"the data in {data_dir}")
    return removed


@dataclass(frozen=True)
class Status:
    """What runs now: the live route, every part's state, and the app's health through the proxy."""

    live: Route | None
    parts: dict[str, str]
    health: HealthSample


def status(platform: Platform, settings: Settings) -> Status:
    """Inspect production without changing it."""
    proxy = Proxy(settings, platform)
    return Status(live=proxy.current(), parts=platform.inventory(), health=sample(f"{proxy.url}{settings.health_path}"))
