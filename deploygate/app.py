"""What the app's containers are given: the environment every container of a release gets.

Web colours, one-off jobs (migrate, seed) and the probes all run the app's image with
this environment, pointed at one database (production, or the rehearsal copy).
"""

from __future__ import annotations

from deploygate.config import Settings


def environment(settings: Settings, db_host: str, db_port: int, password: str) -> dict[str, str]:
    """The app's database variables (``<app_db_env_prefix>HOST`` ...) for the database at ``db_host:db_port``."""
    prefix = settings.app_db_env_prefix
    return {
        f"{prefix}HOST": db_host,
        f"{prefix}PORT": str(db_port),
        f"{prefix}NAME": settings.db_name,
        f"{prefix}USER": settings.db_user,
        f"{prefix}PASSWORD": password,
    }
