"""Configuration: each option declared once, resolved as command line > env > deploy.toml > default.

The options are typed attributes of ``Settings`` (``deploygate.option``): ``settings.proxy_port``
is an ``int`` to a type checker as to the reader, and ``OPTIONS`` lists the same declarations
for loading, the pytest header, ``deploygate settings`` and the README's table.
Every resolved value keeps the name of its source so the pytest header and
``nox -s status`` can say where a value came from ("proxy_port: 8080 (from deploy.toml)").
Nothing is read at import time: ``load()`` takes the environment and overrides explicitly,
which keeps it testable.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploygate.errors import ConfigError
from deploygate.haproxy.config import DEFAULT_REDACT_FIELDS
from deploygate.option import Option, as_text, integer, names, records, table, text

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG_FILE", "OPTIONS", "ConfigError", "Option", "Settings", "as_text", "load"]

DEFAULT_CONFIG_FILE = "deploy.toml"
CONFIG_ENV = "DEPLOYGATE_CONFIG"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration: one typed attribute per option, ``sources`` says where each came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    config_file: Path | None = None
    root: Path = field(default_factory=Path.cwd)

    # The options, in the order of the reference (deploygate settings, README): the attribute is the flat name.
    project = text("stack.project", "app", "prefix of every container, network and volume")
    proxy_bind = text("stack.proxy_bind", "127.0.0.1", "address the proxy publishes on")
    proxy_port = integer("stack.proxy_port", 8080, "port the proxy publishes on")
    state_dir = text("stack.state_dir", ".deploygate", "where proxy config, access logs and secrets live")
    cache_dir = text("stack.cache_dir", ".deploygate/cache", "downloads reused across projects (the wheelhouse)")
    platform = text("platform.kind", "docker", "where production runs: one Docker host, or a Docker Swarm", choices=("docker", "swarm"))
    swarm_manager = text("platform.swarm_manager", "", "the swarm manager's engine (unix:///... or tcp://host:port); empty: DOCKER_HOST")
    swarm_nodes = text(
        "platform.swarm_nodes",
        "",
        "comma-separated engines of every swarm node, to copy images to where no registry serves them (empty: nodes pull)",
    )
    replicas = integer("platform.replicas", 2, "replicas of each color of the app on a swarm")
    db_name = text("database.name", "app", "production database name")
    db_user = text("database.user", "app", "production database user")
    db_password = text("database.password", "", "production database password (generated when empty)", secret=True)
    postgres_major = integer("database.postgres_major", 15, "PostgreSQL major version of the database deploygate runs")
    db_host = text("database.host", "", "an existing PostgreSQL server (as this host and the app's containers reach it); empty: ours")
    db_port = integer("database.port", 5432, "port of the existing server")
    db_data_dir = text(
        "database.data_dir",
        "",
        "a host directory for the data of the Postgres deploygate runs (empty: a volume in Docker's storage); on the "
        "filesystem of backup.dir, where it clones files, the predeploy's backup is a snapshot (backup.method)",
    )
    db_standbys = integer(
        "database.standbys",
        0,
        "streaming hot standbys deploygate runs beside its own database (0 or 1: <project>_db_replica, through a replication slot)",
    )
    db_replicas = records(
        "database.replicas",
        "your database's streaming replicas the switch waits for ([[database.replicas]] host, port, application_name), "
        "each reached as this host reaches it with the database's user and password",
        {"host": str, "port": int, "application_name": str},
    )
    cache_service = text(
        "cache.service",
        "none",
        "a Redis deploygate runs beside production (<project>_cache, nothing on disk), or none",
        choices=("none", "redis"),
    )
    cache_url = text("cache.url", "", "your own Redis (redis://[:password@]host:port/db), as this host and the app reach it", secret=True)
    cache_url_env = text("cache.url_env", "CACHE_URL", "the variable the app reads its cache's location from (CACHES LOCATION)")
    cache_namespace_env = text("cache.namespace_env", "DEPLOYGATE_CACHE_NAMESPACE", "the variable giving a color its schema's KEY_PREFIX")
    db_password_file = text("database.password_file", "", "a file holding the database password (instead of DEPLOYGATE_DB_PASSWORD)")
    backup_dir = text("backup.dir", "backups", "where backups and their manifests are written")
    backup_keep = integer("backup.keep", 5, "backups kept by retention (older ones are deleted)")
    backup_method = text(
        "backup.method",
        "auto",
        "the predeploy's backup: snapshot (pg_backup_start and clones of database.data_dir: no data copied), physical "
        "(pg_basebackup; the copy starts on either without copying), logical (pg_dump), or auto (the first of these "
        "the server and the filesystems allow)",
        choices=("auto", "snapshot", "physical", "logical"),
    )
    backup_dump_jobs = integer(
        "backup.dump_jobs",
        1,
        "pg_dump's parallel jobs for a logical backup: 1 writes one custom-format file; more write the directory "
        "format, a job per table at a time (it helps when several tables are large, not one)",
    )
    backup_copy = text(
        "backup.copy",
        "auto",
        "how the rehearsal's copy of a physical backup is made: clone (reflinks, where backup.dir is on XFS made with "
        "reflink=1 or btrfs: only the blocks a copy writes cost room), overlay (any filesystem: a file is copied whole "
        "when first written), or auto (clone where the filesystem can, else overlay)",
        choices=("auto", "clone", "overlay"),
    )
    lock_timeout_ms = integer("migrate.lock_timeout_ms", 5000, "lock_timeout of migrate, in the rehearsal and the deploy")
    migration_budget_s = integer("migrate.budget_s", 60, "longest a single migration may take on the copy")
    lock_budget_ms = integer("migrate.lock_budget_ms", 2000, "longest ACCESS EXCLUSIVE lock a migration may hold")
    expected_plan = text("migrate.expected_plan", "", "comma-separated app.migration the candidate must apply (empty: whatever it has)")
    replica_lag_max_s = integer(
        "gates.replica_lag_max_s",
        30,
        "longest the switch waits for every replica (database.standbys, [[database.replicas]]) to replay the migration",
    )
    health_max_errors = integer("gates.health_max_errors", 5, "most errors the health URL's JSON body may report")
    health_p95_ms = integer("gates.health_p95_ms", 200, "p95 response time budget of production, ms")
    health_samples = integer("gates.health_samples", 20, "requests sampled for the response-time check")
    db_connections_min = integer("gates.db_connections_min", 3, "fewest database connections a healthy production has")
    db_connections_max = integer("gates.db_connections_max", 10, "most database connections a healthy production has")
    compat_scope = text(
        "gates.compat_scope",
        "changed",
        "models the ORM exercises cover: changed (those whose tables the plan changes, and those whose foreign keys reach them) or all",
        choices=("changed", "all"),
    )
    on_inconclusive = text(
        "gates.on_inconclusive",
        # Accept by default: a quiet hour is no evidence against a release, and a gate that rolls healthy releases
        # back for lack of traffic gets switched off. The 5xx, error-signature and health limits still apply.
        "accept",
        "what a monitoring window with too few requests to judge does: accept (keep the release, the log and the report "
        "saying it was not judged against the baseline), extend (watch one more window, then roll back), or rollback",
        choices=("extend", "rollback", "accept"),
    )
    deploy_window = text("policy.window", "02:00-04:00", "local time range deploys may start in (HH:MM-HH:MM)")
    deploy_timezone = text("policy.timezone", "Asia/Manila", "time zone of the deploy window")
    min_hours_between_deploys = integer(
        "policy.min_hours_between_deploys",
        48,
        "no deploy within this many hours of the last",
    )
    max_error_rate_pct = integer("policy.max_error_rate_pct", 5, "most 5xx percentage of the last error_window_hours")
    error_window_hours = integer("policy.error_window_hours", 24, "hours of traffic the error-rate policy looks at")
    monitor_window_s = integer(
        "deploy.monitor_window_s",
        300,
        "seconds of watching after the switch (errors per color, health) before the deploy is kept",
    )
    monitor_max_errors = integer("deploy.monitor_max_errors", 10, "5xx on the new color that trigger a rollback")
    monitor_baseline_s = integer(
        "deploy.monitor_baseline_s",
        300,
        "seconds before the switch whose requests and app errors of the serving color are the baseline the new color is judged against",
    )
    monitor_min_requests = integer(
        "deploy.monitor_min_requests",
        100,
        "fewest requests the baseline and the new color each need to be judged (the monitor's own health polls not counted); "
        "fewer: the window is inconclusive (gates.on_inconclusive)",
    )
    monitor_max_error_rate_pct = integer("deploy.monitor_max_error_rate_pct", 5, "most 5xx percentage of the new color in the window")
    monitor_error_rate_margin_pct = integer("deploy.monitor_error_rate_margin_pct", 1, "5xx percentage points above the baseline's")
    monitor_max_p95_ms = integer("deploy.monitor_max_p95_ms", 1000, "p95 response time budget of the new color in the window, ms")
    monitor_p95_factor_pct = integer(
        "deploy.monitor_p95_factor_pct",
        200,
        "the new color's p95 in the window as a percentage of the baseline's, at most (never below baseline + monitor_p95_slack_ms)",
    )
    monitor_p95_slack_ms = integer(
        "deploy.monitor_p95_slack_ms",
        20,
        "ms above the baseline's p95 that are noise, whatever monitor_p95_factor_pct says (a 5 ms p95 doubles on a hiccup)",
    )
    monitor_max_new_signatures = integer(
        "deploy.monitor_max_new_signatures",
        0,
        "error signatures (exception type and innermost frame of the app's code) the new color may show that the baseline did not",
    )
    post_p95_ms = integer("deploy.post_p95_ms", 500, "p95 response time budget of the new color in the post checks")
    forward_fix_after_min = integer(
        "deploy.forward_fix_after_min",
        30,
        "minutes after the switch within which `rollback` undoes a finished deploy on request; past them it needs --force",
    )
    keep_releases = integer("deploy.keep_releases", 3, "release images kept (older ones are removed)")
    traffic_rate = integer("deploy.traffic_rate", 25, "requests/s of the traffic probe during a deploy (0: none)")
    traffic_read_paths = text(
        "deploy.traffic_read_paths",
        "/health/",
        "comma-separated GET paths of the traffic probe, in turn; {id} becomes an id a write created (skipped until one exists)",
    )
    traffic_write_path = text(
        "deploy.traffic_write_path",
        "",
        "POST path of the traffic probe, one request in five (empty: reads only); a write counts as created when "
        'its 2xx answer is JSON with an integer id (the report\'s "N writes, M created": M < N with no failures means '
        "the app answers without an id, not lost rows)",
    )
    traffic_write_body = text(
        "deploy.traffic_write_body",
        "{}",
        "JSON body of the traffic probe's writes; {n} becomes the write's number",
    )
    hold_retry_after_s = integer("deploy.hold_retry_after_s", 10, "Retry-After of the proxy's maintenance-hold answers")
    replay_record = integer(
        "replay.record", 1, "1: keep a sample of production's requests for replay (<state_dir>/<project>/replay/requests.jsonl); 0: none"
    )
    replay_max_requests = integer("replay.max_requests", 2000, "most requests the replay sample keeps (every route kept while it can)")
    replay_per_route = integer("replay.per_route", 50, "most requests the replay sample keeps of one route (method and path, ids as {id})")
    replay_max_age_hours = integer("replay.max_age_hours", 168, "hours a recorded request stays in the replay sample")
    replay_body_bytes = integer(
        "replay.body_bytes", 4096, "largest write body the proxy logs for replay (0-8192; 0: none; larger: not replayed)"
    )
    replay_redact_fields = names(
        "replay.redact_fields",
        "body fields (JSON, form) whose values the proxy logs as [redacted]; Authorization and Cookie are never logged",
        DEFAULT_REDACT_FIELDS,
    )
    logs_dir = text("report.logs_dir", "logs", "deploy logs and reports")
    reports_dir = text("report.dir", "reports", "where gate results (JUnit, JSON) are written")
    app_source = text(
        "app.source",
        "",
        "a directory with the app source and releases.toml, built by deploygate (the demo's way)",
    )
    release = text("app.release", "v1", "what production runs after `up`: an image reference, or a release of app.source")
    app_image = text("app.image", "", "image repository of the releases deploygate builds from app.source")
    app_port = integer("app.port", 8000, "port the app listens on inside its container")
    app_python = text("app.python", "python3", "the Python of the app's image (deploygate's probe runs on it)")
    app_database_url = text(
        "app.database_url",
        "",
        "a variable that gets the database as one postgres:// URL (e.g. DATABASE_URL); empty: <db_env_prefix>HOST, PORT, ...",
    )
    app_db_env_prefix = text("app.db_env_prefix", "DB_", "the app reads <prefix>HOST/PORT/NAME/USER/PASSWORD")
    app_env = table("app.env", "plain environment of every app container (web, processes, migrate, probes)")
    app_secrets = table(
        "app.secrets",
        'secret environment: NAME = "env:VARIABLE" or "file:/path"; resolved when needed, never logged',
    )
    app_processes = table(
        "app.processes",
        'long-running processes from the app\'s image beside the web server, e.g. worker = "python manage.py process_queue"',
    )
    app_checks = text(
        "app.checks",
        "",
        "a directory of the app's own pytest-django checks, mounted into its image and run there (empty: none)",
    )
    app_checks_in_image = text(
        "app.checks_in_image",
        "",
        "the app's checks as a path inside its image, instead of app.checks",
    )
    app_networks = names(
        "app.networks",
        "existing Docker networks the app's containers join beside the project's own (e.g. the team's, for its Redis)",
    )
    app_extra_hosts = table(
        "app.extra_hosts",
        'host entries of the app\'s containers (/etc/hosts), e.g. "redis.internal" = "10.0.0.5"',
    )
    health_path = text("app.health_path", "/health/", "the app's health URL: 2xx is healthy; a JSON body may add detail")
    health_timeout = integer("app.health_timeout", 60, "seconds a new app container has to become healthy")
    seed_command = text(
        "seed.command",
        "",
        "run once in the app's image on an empty production by `up` (empty: none); {rows} {members} {random_seed} are filled in",
    )
    seed_rows = integer("seed.rows", 200_000, "{rows} of the seed command")
    seed_members = integer("seed.members", 2000, "{members} of the seed command")
    seed_random = integer("seed.random_seed", 42, "{random_seed} of the seed command")
    image_source = text(
        "images.source",
        "auto",
        "auto: official images when a registry answers, else built locally",
        choices=("auto", "local", "registry"),
    )
    debian_mirror = text("images.debian_mirror", "http://deb.debian.org/debian", "mirror for debootstrap and apt")
    debian_suite = text("images.debian_suite", "bookworm", "Debian suite of the locally built base image")

    def replace(self, **values: Any) -> Settings:
        """A copy with some values replaced (their source becomes "override")."""
        unknown = sorted(set(values) - set(self.values))
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        return Settings(
            values={**self.values, **values},
            sources={**self.sources, **{name: "override" for name in values}},
            config_file=self.config_file,
            root=self.root,
        )

    def path(self, value: str) -> Path:
        """A configured path, relative paths taken from the project root."""
        candidate = Path(value)
        return candidate if candidate.is_absolute() else self.root / candidate

    def describe(self) -> list[str]:
        """One line per option, ``name: value (from source)``; secrets shown as ***."""
        lines = []
        for opt in OPTIONS:
            shown = "***" if opt.secret and self.values[opt.name] else self.values[opt.name]
            lines.append(f"{opt.name}: {as_text(shown)} (from {self.sources[opt.name]})")
        return lines


OPTIONS: tuple[Option[Any], ...] = tuple(value for value in vars(Settings).values() if isinstance(value, Option))
_BY_NAME = {opt.name: opt for opt in OPTIONS}
_BY_TOML = {opt.toml: opt for opt in OPTIONS}
# Options whose value is a whole TOML table ([app.env] ...), not a table of options.
_TABLES = {opt.toml for opt in OPTIONS if isinstance(opt.default, dict)}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in _TABLES:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _coerce(opt: Option[Any], raw: Any, source: str) -> Any:
    try:
        return opt.coerce(raw)
    except ValueError as exc:
        raise ConfigError(f"{opt.name} from {source}: {exc}") from None


def load(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    root: Path | None = None,
) -> Settings:
    """Resolve every option. Raises ``ConfigError`` for a missing file, unknown keys or bad values."""
    environ = os.environ if environ is None else environ
    root = Path.cwd() if root is None else root
    explicit = config_file or environ.get(CONFIG_ENV)
    path = Path(explicit) if explicit else root / DEFAULT_CONFIG_FILE
    if not path.is_absolute():
        path = root / path
    file_values: dict[str, Any] = {}
    if path.exists():
        try:
            file_values = _flatten(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        unknown = sorted(set(file_values) - set(_BY_TOML))
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")

    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        if opt.name in overrides and overrides[opt.name] is not None:
            values[opt.name] = _coerce(opt, overrides[opt.name], "command line")
            sources[opt.name] = "command line"
        elif opt.env in environ:
            values[opt.name] = _coerce(opt, environ[opt.env], f"env {opt.env}")
            sources[opt.name] = "env"
        elif opt.toml in file_values:
            values[opt.name] = _coerce(opt, file_values[opt.toml], path.name)
            sources[opt.name] = path.name
        else:
            values[opt.name] = opt.default
            sources[opt.name] = "default"
    return Settings(values=values, sources=sources, config_file=path if path.exists() else None, root=root)


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["proxy_port=9090"]`` -> ``{"proxy_port": "9090"}``; raises ``ConfigError`` on a bad pair."""
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set expects name=value, got {pair!r}")
        result[name.strip()] = value
    return result
