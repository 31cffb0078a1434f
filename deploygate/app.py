"""What the app's containers are given: the environment every container of a release gets.

Web colors, processes (workers), one-off jobs (migrate, seed) and the probes all run the
app's image with this environment, pointed at one database (production, or the rehearsal
copy): the configured plain values (``[app.env]``), the secrets (``[app.secrets]``,
resolved from the environment or files when needed, never written anywhere by
deploygate), and the database settings, as one URL or as separate variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from deploygate.config import Settings
from deploygate.errors import ConfigError

ENV_PREFIX, FILE_PREFIX = "env:", "file:"


def secret_values(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The app's secrets, resolved: ``NAME = "env:VARIABLE"`` or ``"file:/path"``.

    Raises ``ConfigError`` (naming the secret, never its value) when one cannot be resolved.
    Literal values are refused: a secret written in a configuration file is not a secret.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for name, reference in settings.app_secrets.items():
        if reference.startswith(ENV_PREFIX):
            variable = reference[len(ENV_PREFIX) :]
            if variable not in environ:
                raise ConfigError(f"secret {name}: the environment variable {variable} is not set")
            values[name] = environ[variable]
        elif reference.startswith(FILE_PREFIX):
            path = Path(reference[len(FILE_PREFIX) :])
            try:
                values[name] = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"secret {name}: cannot read {path}: {exc.strerror or exc}") from None
        else:
            raise ConfigError(f'secret {name}: give "env:VARIABLE" or "file:/path", never the value itself')
    return values


def database_environment(settings: Settings, db_host: str, db_port: int, password: str) -> dict[str, str]:
    """The database settings as the app reads them: one URL (``app.database_url``) or ``<prefix>HOST`` ..."""
    if settings.app_database_url:
        url = f"postgres://{quote(settings.db_user, safe='')}:{quote(password, safe='')}@{db_host}:{db_port}/{quote(settings.db_name, safe='')}"
        return {settings.app_database_url: url}
    prefix = settings.app_db_env_prefix
    return {
        f"{prefix}HOST": db_host,
        f"{prefix}PORT": str(db_port),
        f"{prefix}NAME": settings.db_name,
        f"{prefix}USER": settings.db_user,
        f"{prefix}PASSWORD": password,
    }


def replica_environment(settings: Settings, host: str, port: int, password: str) -> dict[str, str]:
    """Where the app finds the streaming standby deploygate runs (``database.standbys``): ``<prefix>REPLICA_HOST``
    and ``<prefix>REPLICA_PORT``, or ``<url variable>_REPLICA`` with ``app.database_url``; same database and user."""
    if settings.app_database_url:
        (url,) = database_environment(settings, host, port, password).values()
        return {f"{settings.app_database_url}_REPLICA": url}
    prefix = settings.app_db_env_prefix
    return {f"{prefix}REPLICA_HOST": host, f"{prefix}REPLICA_PORT": str(port)}


def environment(settings: Settings, db_host: str, db_port: int, password: str) -> dict[str, str]:
    """Everything an app container gets, for the database at ``db_host:db_port``.

    Raises ``ConfigError`` when a secret cannot be resolved.
    """
    return {**settings.app_env, **secret_values(settings), **database_environment(settings, db_host, db_port, password)}
