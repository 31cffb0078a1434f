"""`deploygate init`: deploygate's files in a team's Django repository, guessed from the project, every guess a flag.

It finds manage.py and the settings module, reads which environment variables the
settings ask for (one database URL or DB_*-style variables, secrets), finds a health URL
in the project's urls.py, and writes deploy.toml, a noxfile.py with the same sessions as
deploygate's own, an example pytest-django check and CI files (GitHub Actions, GitLab CI).
Like ``kamal init`` it never replaces a file that is there (``--force`` does); a file
already holding what would be written is left as it is, so a second run changes nothing.
Nothing here reads stdin: a CI job can run it unattended.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploygate.errors import ConfigError

# Folders never searched for manage.py or urls.py: environments, caches, dependencies.
SKIPPED_DIRS = {".git", ".hg", ".nox", ".tox", ".venv", "venv", "env", "node_modules", "__pycache__", "site-packages", ".deploygate"}
# A URL whose name says "health"; the first found wins (a project rarely has two).
HEALTH_NAMES = re.compile(r"^\^?/?(?P<path>(?:health[\w-]*|healthz|livez|readyz|ping|ht|status)/?)\$?$", re.IGNORECASE)
# Names of variables whose value is a secret: given as "env:NAME", never written down.
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "API_KEY", "PRIVATE")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class Guess:
    """One value init settled on, and where it came from (said in the output and in deploy.toml)."""

    value: str
    source: str  # "flag", "default", or the file it was read from


@dataclass(frozen=True)
class Project:
    """What init found in (or was told about) the Django repository at ``root``."""

    root: Path
    manage_py: Path
    settings_module: Guess
    database_url: Guess  # the URL variable; empty value: DB_*-style, see db_env_prefix
    db_env_prefix: Guess
    health_path: Guess
    app_port: Guess
    secrets: dict[str, str] = field(default_factory=dict)
    env_hints: tuple[str, ...] = ()  # variables the settings read that deploy.toml leaves to the user


@dataclass(frozen=True)
class Answers:
    """init's flags: every question it could ask, answered on the command line (None: guess)."""

    manage_py: str | None = None
    settings_module: str | None = None
    database_url: str | None = None
    db_env_prefix: str | None = None
    health_path: str | None = None
    app_port: int | None = None
    project: str | None = None
    release: str | None = None
    image_repo: str | None = None
    proxy_port: int = 8080
    db_name: str | None = None
    db_user: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    processes: Mapping[str, str] = field(default_factory=dict)
    checks_dir: str = "deploy_checks"  # empty: no example check, no app.checks
    window: str = "02:00-04:00"
    timezone: str = "UTC"
    branch: str = "main"
    runs_on: str = "[self-hosted, production]"
    github: bool = True
    gitlab: bool = True


# --- finding things -----------------------------------------------------------------------


def _walk(root: Path, name: str) -> list[Path]:
    """Files called ``name`` under ``root``, shallowest first, outside SKIPPED_DIRS."""
    found = [path for path in root.rglob(name) if not SKIPPED_DIRS & set(path.relative_to(root).parts[:-1])]
    return sorted(found, key=lambda path: (len(path.parts), str(path)))


def find_manage_py(root: Path, given: str | None = None) -> Path:
    """manage.py: the one given (relative to ``root``), else the shallowest. Raises ``ConfigError`` when there is none."""
    if given:
        path = (root / given).resolve()
        if not path.is_file():
            raise ConfigError(f"--manage-py {given}: no such file under {root}")
        return path
    found = _walk(root, "manage.py")
    if not found:
        raise ConfigError(f"no manage.py under {root}: run init in a Django repository, or give --manage-py PATH")
    return found[0]


def guess_settings_module(manage_py: Path, given: str | None = None) -> Guess:
    """The settings module: given; else the one manage.py (or a Dockerfile) sets as DJANGO_SETTINGS_MODULE;
    else the package beside manage.py holding settings.py (or settings/) and wsgi.py or urls.py.

    Raises ``ConfigError`` when none is found.
    """
    if given:
        return Guess(given, "flag")
    # os.environ.setdefault("DJANGO_SETTINGS_MODULE", "x.settings"), ENV DJANGO_SETTINGS_MODULE=x.settings (or a space):
    # a dotted name only, so prose about the variable in a comment is not taken for one.
    setdefault = re.compile(r"""DJANGO_SETTINGS_MODULE["']?(?:\s*[,=]\s*|\s+)["']?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)""")
    for source in (manage_py, *_walk(manage_py.parent, "Dockerfile")[:1], *_walk(manage_py.parent.parent, "Dockerfile")[:1]):
        match = setdefault.search(source.read_text(errors="replace"))
        if match:
            return Guess(match.group(1), str(source))
    base = manage_py.parent
    for package in sorted(p for p in base.iterdir() if p.is_dir() and (p / "__init__.py").is_file()):
        if (package / "settings.py").is_file() and ((package / "wsgi.py").is_file() or (package / "urls.py").is_file()):
            return Guess(f"{package.name}.settings", str(package / "settings.py"))
        if (package / "settings" / "__init__.py").is_file():
            production = package / "settings" / "production.py"
            module = f"{package.name}.settings" + (".production" if production.is_file() else "")
            return Guess(module, str(production if production.is_file() else package / "settings"))
    raise ConfigError(f"no settings module found beside {manage_py}: give --settings-module NAME")


def _settings_files(manage_py: Path, module: str) -> list[Path]:
    """The settings module's file(s): a module, or every .py of a settings package."""
    path = manage_py.parent.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        files = [path.with_suffix(".py")]
        package = path.parent
        # A settings/production.py usually starts with `from .base import *`: read its siblings too.
        if (package / "__init__.py").is_file() and package.name == "settings":
            files += sorted(p for p in package.glob("*.py") if p not in files)
        return files
    if (path / "__init__.py").is_file():
        return sorted(path.glob("*.py"))
    return []


def settings_variables(files: Iterable[Path]) -> list[str]:
    """Environment variables the settings read, in order of appearance: ALL_CAPS string constants given as the
    first argument of a call (``os.environ.get("X")``, ``os.getenv("X")``, ``env("X")``, a helper such as
    ``_required("X")``) or as the key of a subscript (``os.environ["X"]``). A file that does not parse is skipped."""
    names: list[str] = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args:
                key = node.args[0]
            elif isinstance(node, ast.Subscript):
                key = node.slice
            else:
                continue
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and ENV_NAME.match(key.value):
                if key.value not in names and key.value != "DJANGO_SETTINGS_MODULE":
                    names.append(key.value)
    return names


def guess_database(variables: list[str], *, url: str | None, prefix: str | None, source: str) -> tuple[Guess, Guess]:
    """(URL variable, DB_* prefix): one URL variable when the settings read one (``DATABASE_URL``,
    ``POSTGRES_URL``...), else the prefix of the ``<PREFIX>HOST`` they read; DATABASE_URL when they read neither."""
    if url is not None or prefix is not None:
        return Guess(url or "", "flag" if url else "default"), Guess(prefix or "DB_", "flag" if prefix else "default")
    for name in variables:
        if name.endswith(("DATABASE_URL", "DB_URL", "POSTGRES_URL", "POSTGRESQL_URL", "PG_URL")):
            return Guess(name, source), Guess("DB_", "default")
    for name in variables:
        if name.endswith("HOST") and re.search(r"(DB|DATABASE|POSTGRES|PG|SQL)_?HOST$", name):
            prefix_found = name[: -len("HOST")]
            return Guess("", source), Guess(prefix_found, source)
    return Guess("DATABASE_URL", "default"), Guess("DB_", "default")


def guess_health_path(project_dir: Path, given: str | None = None) -> Guess:
    """A health URL from the project's urls.py files (``path("healthz", ...)``, ``re_path(r"^health/$", ...)``,
    ``path("ht/", include("health_check.urls"))``), as an absolute path; ``/health/`` when there is none."""
    if given:
        return Guess(given if given.startswith("/") else f"/{given}", "flag")
    for urls in _walk(project_dir, "urls.py"):
        try:
            tree = ast.parse(urls.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            route = node.args[0].value
            match = HEALTH_NAMES.match(route) if isinstance(route, str) else None
            if match:
                prefix = _include_prefix(project_dir, urls)
                return Guess(f"/{prefix}{match.group('path')}", str(urls))
    return Guess("/health/", "default")


def _include_prefix(project_dir: Path, urls: Path) -> str:
    """The prefix under which the root URLconf includes ``urls`` (``path("api/", include("catalog.urls"))``), if any."""
    module = ".".join(urls.relative_to(project_dir).with_suffix("").parts)
    for root_urls in _walk(project_dir, "urls.py"):
        if root_urls == urls:
            continue
        text = root_urls.read_text(errors="replace")
        match = re.search(r"""path\(\s*r?["']\^?([\w/-]*)["']\s*,\s*include\(\s*["']""" + re.escape(module) + r"""["']""", text)
        if match:
            return match.group(1)
    return ""


def guess_app_port(project_dir: Path, given: int | None = None) -> Guess:
    """The port the image serves on: given; the Dockerfile's EXPOSE; else 8000 (gunicorn's and runserver's usual)."""
    if given:
        return Guess(str(given), "flag")
    for dockerfile in _walk(project_dir, "Dockerfile")[:1] + _walk(project_dir.parent, "Dockerfile")[:1]:
        match = re.search(r"^\s*EXPOSE\s+(\d+)", dockerfile.read_text(errors="replace"), re.MULTILINE)
        if match:
            return Guess(match.group(1), str(dockerfile))
    return Guess("8000", "default")


def _relative(guess: Guess, root: Path) -> Guess:
    """A guess whose source is a file, named relative to the repository."""
    source = Path(guess.source)
    if source.is_absolute() and source.is_relative_to(root):
        return Guess(guess.value, str(source.relative_to(root)))
    return guess


def discover(root: Path, answers: Answers) -> Project:
    """Everything init needs to know about the repository at ``root``; flags win over guesses.

    Raises ``ConfigError`` when there is no manage.py or no settings module to be found.
    """
    root = root.resolve()
    manage_py = find_manage_py(root, answers.manage_py)
    module = guess_settings_module(manage_py, answers.settings_module)
    files = _settings_files(manage_py, module.value)
    variables = settings_variables(files)
    source = str(files[0]) if files else module.source
    url, prefix = guess_database(variables, url=answers.database_url, prefix=answers.db_env_prefix, source=source)
    url, prefix, module = (_relative(guess, root) for guess in (url, prefix, module))
    database_names = (
        {url.value} | {prefix.value + part for part in ("HOST", "PORT", "NAME", "USER", "PASSWORD")} if not url.value else {url.value}
    )
    secrets = {name: f"env:{name}" for name in variables if any(word in name for word in SECRET_WORDS) and name not in database_names}
    secrets.update(answers.secrets)
    hints = tuple(name for name in variables if name not in secrets and name not in database_names and name not in answers.env)
    return Project(
        root=root,
        manage_py=manage_py,
        settings_module=module,
        database_url=url,
        db_env_prefix=prefix,
        health_path=_relative(guess_health_path(manage_py.parent, answers.health_path), root),
        app_port=_relative(guess_app_port(manage_py.parent, answers.app_port), root),
        secrets=secrets,
        env_hints=hints,
    )


# --- writing ------------------------------------------------------------------------------


def project_name(root: Path, given: str | None = None) -> str:
    """A Docker-safe project name: given, else the repository folder's name in lower case."""
    name = given or re.sub(r"[^a-z0-9]+", "", root.name.lower()) or "app"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ConfigError(f"--project {name!r}: use lower-case letters, digits, '_', '.', '-' (it prefixes Docker names)")
    return name


def describe(project: Project) -> list[str]:
    """What init found, one line each, with where each value came from."""
    relative = project.manage_py.relative_to(project.root)
    lines = [f"manage.py: {relative}"]
    for label, guess in (
        ("settings module", project.settings_module),
        ("database URL variable", project.database_url),
        ("database variables prefix", project.db_env_prefix),
        ("health path", project.health_path),
        ("app port", project.app_port),
    ):
        if label == "database variables prefix" and project.database_url.value:
            continue
        if label == "database URL variable" and not project.database_url.value:
            continue
        lines.append(f"{label}: {guess.value} ({'from ' + guess.source if guess.source not in ('flag', 'default') else guess.source})")
    if project.secrets:
        lines.append(f"secrets (from the deploying machine's environment): {', '.join(project.secrets)}")
    if project.env_hints:
        lines.append(f"also read by the settings, left to you in deploy.toml [app.env]: {', '.join(project.env_hints)}")
    return lines
