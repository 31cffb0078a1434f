"""Configuration: each option declared once, resolved as command line > env > deploy.toml > default.

Every resolved value keeps the name of its source so the pytest header and
``nox -s status`` can say where a value came from ("proxy_port: 8080 (from deploy.toml)").
Nothing is read at import time: ``load()`` takes the environment and overrides explicitly,
which keeps it testable.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from deploygate.errors import ConfigError

DEFAULT_CONFIG_FILE = "deploy.toml"
CONFIG_ENV = "DEPLOYGATE_CONFIG"


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _parse_table(text: str) -> dict[str, str]:
    """A table given on the command line or in the environment: a JSON object of strings."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"expected a JSON object of strings, got {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object of strings, got {text!r}")
    return value


def _parse_list(text: str) -> tuple[str, ...]:
    """A list given on the command line or in the environment: a JSON array, or comma-separated names."""
    if text.strip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"expected a JSON array of strings, got {text!r}") from None
        return tuple(value) if isinstance(value, list) else value
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean")


@dataclass(frozen=True)
class Option:
    """One setting: its attribute name, its place in deploy.toml, its default and help."""

    name: str
    toml: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()
    secret: bool = False

    @property
    def env(self) -> str:
        return "DEPLOYGATE_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("project", "stack.project", "app", "prefix of every container, network and volume"),
    Option("proxy_bind", "stack.proxy_bind", "127.0.0.1", "address the proxy publishes on"),
    Option("proxy_port", "stack.proxy_port", 8080, "port the proxy publishes on", _parse_int),
    Option("state_dir", "stack.state_dir", ".deploygate", "where proxy config, access logs and secrets live"),
    Option("cache_dir", "stack.cache_dir", ".deploygate/cache", "downloads reused across projects (the wheelhouse)"),
    Option("platform", "platform.kind", "docker", "where production runs: one Docker host, or a Docker Swarm", choices=("docker", "swarm")),
    Option(
        "swarm_manager", "platform.swarm_manager", "",
        "the swarm manager's engine (unix:///... or tcp://host:port); empty: DOCKER_HOST",
    ),  # fmt: skip
    Option(
        "swarm_nodes", "platform.swarm_nodes", "",
        "comma-separated engines of every swarm node, to copy images to where no registry serves them (empty: nodes pull)",
    ),  # fmt: skip
    Option("replicas", "platform.replicas", 2, "replicas of each colour of the app on a swarm", _parse_int),
    Option("db_name", "database.name", "app", "production database name"),
    Option("db_user", "database.user", "app", "production database user"),
    Option(
        "db_password", "database.password", "", "production database password (generated when empty)", secret=True
    ),
    Option("postgres_major", "database.postgres_major", 15, "PostgreSQL major version of the database deploygate runs", _parse_int),
    Option(
        "db_host", "database.host", "",
        "an existing PostgreSQL server (as this host and the app's containers reach it); empty: deploygate runs one",
    ),  # fmt: skip
    Option("db_port", "database.port", 5432, "port of the existing server", _parse_int),
    Option("db_password_file", "database.password_file", "", "a file holding the database password (instead of DEPLOYGATE_DB_PASSWORD)"),
    Option("backup_dir", "backup.dir", "backups", "where backups and their manifests are written"),
    Option("backup_keep", "backup.keep", 5, "backups kept by retention (older ones are deleted)", _parse_int),
    Option("lock_timeout_ms", "migrate.lock_timeout_ms", 5000, "lock_timeout of migrate, in the rehearsal and the deploy", _parse_int),
    Option("migration_budget_s", "migrate.budget_s", 60, "longest a single migration may take on the copy", _parse_int),
    Option("lock_budget_ms", "migrate.lock_budget_ms", 2000, "longest ACCESS EXCLUSIVE lock a migration may hold", _parse_int),
    Option("expected_plan", "migrate.expected_plan", "", "comma-separated app.migration the candidate must apply (empty: whatever it has)"),
    Option("health_max_errors", "gates.health_max_errors", 5, "most errors the health URL's JSON body may report", _parse_int),
    Option("health_p95_ms", "gates.health_p95_ms", 200, "p95 response time budget of production, ms", _parse_int),
    Option("health_samples", "gates.health_samples", 20, "requests sampled for the response-time check", _parse_int),
    Option("db_connections_min", "gates.db_connections_min", 3, "fewest database connections a healthy production has", _parse_int),
    Option("db_connections_max", "gates.db_connections_max", 10, "most database connections a healthy production has", _parse_int),
    Option(
        "compat_scope", "gates.compat_scope", "changed",
        "models the ORM exercises cover: changed (those whose tables the plan changes, and those whose foreign keys reach them) or all",
        choices=("changed", "all"),
    ),  # fmt: skip
    Option("deploy_window", "policy.window", "02:00-04:00", "local time range deploys may start in (HH:MM-HH:MM)"),
    Option("deploy_timezone", "policy.timezone", "Asia/Manila", "time zone of the deploy window"),
    Option("min_hours_between_deploys", "policy.min_hours_between_deploys", 48, "no deploy within this many hours of the last", _parse_int),
    Option("max_error_rate_pct", "policy.max_error_rate_pct", 5, "most 5xx percentage of the last error_window_hours", _parse_int),
    Option("error_window_hours", "policy.error_window_hours", 24, "hours of traffic the error-rate policy looks at", _parse_int),
    Option("monitor_window_s", "deploy.monitor_window_s", 300, "seconds of watching after the switch (errors per colour, health) before the deploy is kept", _parse_int),
    Option("monitor_max_errors", "deploy.monitor_max_errors", 10, "5xx on the new colour that trigger a rollback", _parse_int),
    Option("post_p95_ms", "deploy.post_p95_ms", 500, "p95 response time budget of the new colour in the post checks", _parse_int),
    Option("forward_fix_after_min", "deploy.forward_fix_after_min", 30, "minutes after the switch within which `rollback` undoes a finished deploy on request; past them it needs --force", _parse_int),
    Option("keep_releases", "deploy.keep_releases", 3, "release images kept (older ones are removed)", _parse_int),
    Option("traffic_rate", "deploy.traffic_rate", 25, "requests/s of the traffic probe during a deploy (0: none)", _parse_int),
    Option(
        "traffic_read_paths", "deploy.traffic_read_paths", "/health/",
        "comma-separated GET paths of the traffic probe, in turn; {id} becomes an id a write created (skipped until one exists)",
    ),  # fmt: skip
    Option(
        "traffic_write_path", "deploy.traffic_write_path", "",
        "POST path of the traffic probe, one request in five (empty: reads only); a write counts as created when "
        "its 2xx answer is JSON with an integer id (the report's \"N writes, M created\": M < N with no failures means "
        "the app answers without an id, not lost rows)",
    ),  # fmt: skip
    Option(
        "traffic_write_body", "deploy.traffic_write_body", "{}",
        "JSON body of the traffic probe's writes; {n} becomes the write's number",
    ),  # fmt: skip
    Option("hold_retry_after_s", "deploy.hold_retry_after_s", 10, "Retry-After of the proxy's maintenance-hold answers", _parse_int),
    Option("logs_dir", "report.logs_dir", "logs", "deploy logs and reports"),
    Option("reports_dir", "report.dir", "reports", "where gate results (JUnit, JSON) are written"),
    Option("app_source", "app.source", "", "a directory with the app source and releases.toml, built by deploygate (the demo's way)"),
    Option("release", "app.release", "v1", "what production runs after `up`: an image reference, or a release of app.source"),
    Option("app_image", "app.image", "", "image repository of the releases deploygate builds from app.source"),
    Option("app_port", "app.port", 8000, "port the app listens on inside its container", _parse_int),
    Option("app_python", "app.python", "python3", "the Python of the app's image (deploygate's probe runs on it)"),
    Option(
        "app_database_url", "app.database_url", "",
        "a variable that gets the database as one postgres:// URL (e.g. DATABASE_URL); empty: <db_env_prefix>HOST, PORT, ...",
    ),  # fmt: skip
    Option("app_db_env_prefix", "app.db_env_prefix", "DB_", "the app reads <prefix>HOST/PORT/NAME/USER/PASSWORD"),
    Option("app_env", "app.env", {}, "plain environment of every app container (web, processes, migrate, probes)", _parse_table),
    Option(
        "app_secrets", "app.secrets", {},
        'secret environment: NAME = "env:VARIABLE" or "file:/path"; resolved when needed, never logged', _parse_table,
    ),  # fmt: skip
    Option(
        "app_processes", "app.processes", {},
        'long-running processes from the app\'s image beside the web server, e.g. worker = "python manage.py process_queue"',
        _parse_table,
    ),  # fmt: skip
    Option(
        "app_checks", "app.checks", "",
        "a directory of the app's own pytest-django checks, mounted into its image and run there (empty: none)",
    ),  # fmt: skip
    Option("app_checks_in_image", "app.checks_in_image", "", "the app's checks as a path inside its image, instead of app.checks"),
    Option(
        "app_networks", "app.networks", (),
        "existing Docker networks the app's containers join beside the project's own (e.g. the team's, for its Redis)",
        _parse_list,
    ),  # fmt: skip
    Option(
        "app_extra_hosts", "app.extra_hosts", {},
        'host entries of the app\'s containers (/etc/hosts), e.g. "redis.internal" = "10.0.0.5"', _parse_table,
    ),  # fmt: skip
    Option("health_path", "app.health_path", "/health/", "the app's health URL: 2xx is healthy; a JSON body may add detail"),
    Option("health_timeout", "app.health_timeout", 60, "seconds a new app container has to become healthy", _parse_int),
    Option(
        "seed_command", "seed.command", "",
        "run once in the app's image on an empty production by `up` (empty: none); {rows} {members} {random_seed} are filled in",
    ),  # fmt: skip
    Option("seed_rows", "seed.rows", 200_000, "{rows} of the seed command", _parse_int),
    Option("seed_members", "seed.members", 2_000, "{members} of the seed command", _parse_int),
    Option("seed_random", "seed.random_seed", 42, "{random_seed} of the seed command", _parse_int),
    Option(
        "image_source",
        "images.source",
        "auto",
        "auto: official images when a registry answers, else built locally",
        choices=("auto", "local", "registry"),
    ),
    Option("debian_mirror", "images.debian_mirror", "http://deb.debian.org/debian", "mirror for debootstrap and apt"),
    Option("debian_suite", "images.debian_suite", "bookworm", "Debian suite of the locally built base image"),
)
_BY_NAME = {opt.name: opt for opt in OPTIONS}
_BY_TOML = {opt.toml: opt for opt in OPTIONS}
# Options whose value is a whole TOML table ([app.env] ...), not a table of options.
_TABLES = {opt.toml for opt in OPTIONS if isinstance(opt.default, dict)}


@dataclass(frozen=True)
class Settings:
    """Resolved configuration: attribute access to values, ``sources`` says where each came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    config_file: Path | None = None
    root: Path = field(default_factory=Path.cwd)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

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


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in _TABLES:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _coerce(opt: Option, raw: Any, source: str) -> Any:
    try:
        if isinstance(opt.default, tuple):
            value = opt.parse(raw) if isinstance(raw, str) else raw
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {raw!r}")
            value = tuple(value)
        elif isinstance(opt.default, dict):
            value = opt.parse(raw) if isinstance(raw, str) else raw
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f"expected a table of strings, got {raw!r}")
        elif isinstance(raw, str) and not isinstance(opt.default, str):
            value = opt.parse(raw)
        elif isinstance(opt.default, bool) != isinstance(raw, bool) or not isinstance(raw, type(opt.default)):
            raise ValueError(f"expected {type(opt.default).__name__}, got {raw!r}")
        else:
            value = raw
    except ValueError as exc:
        raise ConfigError(f"{opt.name} from {source}: {exc}") from None
    if opt.choices and value not in opt.choices:
        raise ConfigError(f"{opt.name} from {source}: {value!r} is not one of {', '.join(opt.choices)}")
    return value


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


def as_text(value: Any) -> str:
    """A setting as it is written on a command line (``--set name=<this>``): tables and lists as JSON."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["proxy_port=9090"]`` -> ``{"proxy_port": "9090"}``; raises ``ConfigError`` on a bad pair."""
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set expects name=value, got {pair!r}")
        result[name.strip()] = value
    return result
