"""The values no log, report or ledger entry may show: the database password, the cache's and the app's secrets."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

from deploygate.app import secret_values
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, db_password


def secrets_of(settings: Settings, db: DatabaseAddress) -> list[str]:
    """Every value the deploy's log must never show: the database password (also as a URL has it), the cache's
    (``cache.url``) and the app's secrets."""
    passwords = {db.password, db_password(settings)}
    cache_password = urlsplit(settings.cache_url).password if settings.cache_url else None
    if cache_password:
        passwords.add(unquote(cache_password))
    return [*passwords, *(quote(p, safe="") for p in passwords), *secret_values(settings).values()]
