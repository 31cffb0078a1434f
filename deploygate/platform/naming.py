"""What every platform names and labels the same way: its objects' names, labels and database endpoint.

A single host and a swarm differ in how they run things, never in what they call them:
the same project gives the same names, and every object carries the same labels, so the
cleanup, the inventory and the tests find a project's objects by label on either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from deploygate.config import Settings
from deploygate.platform.images import Image

PROJECT_LABEL = "deploygate.project"
ROLE_LABEL = "deploygate.role"
COLOR_LABEL = "deploygate.color"
RELEASE_LABEL = "deploygate.release"
DIGEST_LABEL = "deploygate.image_digest"
PROCESS_LABEL = "deploygate.process"
DB_PORT = 5432


@dataclass(frozen=True)
class Names:
    """Names of the project's Docker objects, all derived from the project name."""

    project: str

    @property
    def network(self) -> str:
        return f"{self.project}_net"

    @property
    def db(self) -> str:
        return f"{self.project}_db"

    @property
    def db_volume(self) -> str:
        return f"{self.project}_pgdata"

    @property
    def db_standby(self) -> str:
        return f"{self.project}_db_replica"

    @property
    def db_standby_volume(self) -> str:
        return f"{self.project}_pgdata_replica"

    @property
    def db_standby_slot(self) -> str:
        """Its replication slot on the primary (a slot's name allows lower-case letters, digits and underscores only)."""
        return "".join(c if c.isalnum() or c == "_" else "_" for c in self.db_standby.lower())

    @property
    def cache(self) -> str:
        return f"{self.project}_cache"

    @property
    def proxy(self) -> str:
        return f"{self.project}_proxy"

    @property
    def scratch_prefix(self) -> str:
        return f"{self.project}_copy_"

    def job(self) -> str:
        """A new one-off job's name: known before the engine creates it, so an interrupted create can be undone."""
        return f"{self.project}_job_{uuid.uuid4().hex[:8]}"

    def web(self, color: str) -> str:
        return f"{self.project}_web_{color}"

    def process(self, name: str, color: str) -> str:
        return f"{self.project}_{name}_{color}"


def labels(project: str, role: str, **extra: str) -> dict[str, str]:
    """The labels of one of the project's objects: its project and role (what cleanup and inventory select by)."""
    return {PROJECT_LABEL: project, ROLE_LABEL: role, **extra}


def color_labels(project: str, role: str, color: str, image: Image, **extra: str) -> dict[str, str]:
    """The labels of a color's object: which release and image it runs, read back by ``color()``."""
    release = image.tag.rsplit(":", 1)[-1]
    return labels(project, role, **{COLOR_LABEL: color, RELEASE_LABEL: release, DIGEST_LABEL: image.id, **extra})


class ProjectObjects:
    """The part of a platform that depends on the settings alone: names, labels, the database's endpoint."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = Names(settings.project)
        self.network_name = self.names.network
        self.proxy_name = self.names.proxy

    def color_name(self, color: str) -> str:
        return self.names.web(color)

    def _labels(self, role: str, **extra: str) -> dict[str, str]:
        return labels(self.settings.project, role, **extra)

    @property
    def _external_database(self) -> bool:
        """An existing server the user named: deploygate never creates, changes the settings of, or removes it."""
        return bool(self.settings.db_host)

    def database_endpoint(self) -> tuple[str, int]:
        if self._external_database:
            return self.settings.db_host, self.settings.db_port
        return self.names.db, DB_PORT
