"""Production database access from the host: its password, its address, a connection.

The password is a secret: it is generated once per project, kept in a 0600 file under
the state directory, passed to containers through their environment and never printed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from deploygate.config import Settings
from deploygate.errors import DatabaseUnavailable, StackError
from deploygate.waiting import wait_until


@dataclass(frozen=True)
class DatabaseAddress:
    """Where and as whom to connect; ``password`` never appears in ``repr``."""

    host: str
    port: int
    name: str
    user: str
    password: str

    def __repr__(self) -> str:
        return f"DatabaseAddress(host={self.host!r}, port={self.port}, name={self.name!r}, user={self.user!r}, password='***')"

    def conninfo(self) -> str:
        return make_conninfo(host=self.host, port=self.port, dbname=self.name, user=self.user, password=self.password, connect_timeout=10)


def password_file(settings: Settings) -> Path:
    return settings.path(settings.state_dir) / settings.project / "secrets" / "db_password"


def db_password(settings: Settings, *, create: bool = False) -> str:
    """The production DB password: from configuration, else the project's secret file.

    With ``create`` a new random password is written (mode 0600) when none exists.
    Raises ``StackError`` when there is none and ``create`` is false.
    """
    if settings.db_password:
        return settings.db_password
    if settings.db_password_file:
        given = settings.path(settings.db_password_file)
        try:
            return given.read_text().strip()
        except OSError as exc:
            raise StackError(f"cannot read the database password from {given}: {exc.strerror or exc}") from None
    if settings.db_host and not create:
        raise StackError("an existing database server needs its password: set DEPLOYGATE_DB_PASSWORD or database.password_file")
    path = password_file(settings)
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise StackError(f"no database password: set DEPLOYGATE_DB_PASSWORD or run `nox -s up` (expected {path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def connect(address: DatabaseAddress, *, autocommit: bool = True) -> psycopg.Connection:
    """A psycopg connection; connection failures become one-line ``StackError``s without the password."""
    try:
        return psycopg.connect(address.conninfo(), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to {address.user}@{address.host}:{address.port}/{address.name}: {first}") from None


def table_count(address: DatabaseAddress, table: str) -> int:
    """Exact row count of ``table``."""
    with connect(address) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def production_identity(address: DatabaseAddress) -> str:
    """Which database this is: the cluster's system identifier (new at every initdb) and the database name."""
    with connect(address) as conn:
        system_id = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
    return f"{system_id}/{address.name}"


def wait_connectable(address: DatabaseAddress, *, timeout: float = 60) -> None:
    """Wait until the database accepts connections (after a restart); raises ``WaitTimeout`` naming the last error."""

    def answers() -> bool:
        connect(address).close()
        return True

    wait_until(
        answers,
        timeout=timeout,
        interval=0.5,
        what=f"{address.host}:{address.port}/{address.name} to accept connections",
        transient=(DatabaseUnavailable,),
    )
