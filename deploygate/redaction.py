"""The values no log, report or ledger entry may show: the database password and the app's secrets."""

from __future__ import annotations

from urllib.parse import quote

from deploygate.app import secret_values
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, db_password


def secrets_of(settings: Settings, db: DatabaseAddress) -> list[str]:
    """Every value the deploy's log must never show: the database password (also as a URL has it) and the app's secrets."""
    passwords = {db.password, db_password(settings)}
    return [*passwords, *(quote(p, safe="") for p in passwords), *secret_values(settings).values()]
