"""What the rehearsal runs beside production on one Docker engine, never part of it: copies and caches.

Each is named ``<project>_scratch_...`` (``Names.scratch_prefix``) and removed on exit; what a
killed run left is found by that prefix (``remove_stale_scratch``). A swarm's rehearsal runs
them on the local engine too (``SwarmPlatform.local``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager

import docker

from deploygate.cache import CacheUrls
from deploygate.config import Settings
from deploygate.platform import cache_service, scratch
from deploygate.platform.base import Scratch
from deploygate.platform.naming import Names


class ScratchHost:
    """The scratch side of ``DockerHost``: needs its ``client``, ``names`` and ``settings``."""

    client: docker.DockerClient
    names: Names
    settings: Settings

    def scratch_postgres(self, image_id: str, *, user: str, dbname: str, mounts: Mapping[str, str]) -> AbstractContextManager[Scratch]:
        return scratch.scratch_postgres(self.names.scratch_prefix, image_id, user=user, dbname=dbname, mounts=mounts)

    def scratch_from_backup(
        self, image_id: str, data_dir: str, *, user: str, dbname: str, copy: str = "auto"
    ) -> AbstractContextManager[Scratch]:
        return scratch.scratch_from_data_dir(
            self.client, self.names.scratch_prefix, image_id, data_dir, user=user, dbname=dbname, copy=copy
        )

    def remove_stale_scratch(self) -> list[str]:
        return scratch.remove_stale(self.client, self.names.scratch_prefix)

    def scratch_cache(self, image_id: str, network: str) -> AbstractContextManager[CacheUrls]:
        return cache_service.scratch_redis(self.client, self.names.scratch_prefix, image_id, network)
