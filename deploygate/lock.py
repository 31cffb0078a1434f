"""The deploy lock: a Postgres advisory lock on production's database.

Held by a dedicated connection for the whole deploy or rollback. A second deploy is
refused at once; a deploy process that dies (even by SIGKILL) drops its connection and
Postgres releases the lock with it, so a crash never leaves production locked.
"""

from __future__ import annotations

import hashlib

import psycopg

from deploygate.database import DatabaseAddress, connect
from deploygate.errors import DeployGateError


class LockHeld(DeployGateError):
    """Another deploy or rollback holds the lock."""


def lock_key(project: str) -> int:
    """A stable signed 64-bit key per project (advisory locks are keyed by bigint)."""
    return int.from_bytes(hashlib.sha256(f"deploygate:{project}".encode()).digest()[:8], "big", signed=True)


class DeployLock:
    """``with DeployLock(address, project):`` holds the lock or raises ``LockHeld``."""

    def __init__(self, address: DatabaseAddress, project: str) -> None:
        self._address = address
        self._key = lock_key(project)
        self._conn = None

    def __enter__(self) -> DeployLock:
        conn = connect(self._address)
        conn.execute("SET application_name = 'deploygate deploy lock'")
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", [self._key]).fetchone()[0]:
            conn.close()
            raise LockHeld(
                "another deploy or rollback is running on this production; refusing (the lock frees itself if that process dies)"
            )
        self._conn = conn
        return self

    def __exit__(self, *exc_info) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", [self._key])
            except psycopg.Error:
                pass  # the connection died (the database restarted): the lock died with it
            finally:
                self._conn.close()
                self._conn = None
