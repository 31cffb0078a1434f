"""Production's cache on the local engine, and the cache gate's scratch Redis.

Production's (``cache.service = "redis"``) is a container of the project like its database:
on the project's network, labelled, found and removed by label. The app reaches it by its
name there, this host at its address. The scratch one is the rehearsal's: on the copy's
network, named with the project's scratch prefix and testcontainers' label, so a crashed
run's is found and removed with its scratch databases.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import docker

from deploygate.cache import REDIS_PORT, CacheUrls
from deploygate.config import Settings
from deploygate.errors import StackError
from deploygate.platform import engine
from deploygate.platform.docker_containers import address, ensure_service
from deploygate.platform.images import Image
from deploygate.platform.naming import Names
from deploygate.platform.specs import CACHE_MAXMEMORY, cache_spec


def _url(host: str) -> str:
    return f"redis://{host}:{REDIS_PORT}/0"


def ensure(client: docker.DockerClient, settings: Settings, image: Image) -> list[str]:
    """Production's Redis created or started, and answering; returns what changed."""
    return ensure_service(client, cache_spec(settings, image))


def urls(client: docker.DockerClient, settings: Settings) -> CacheUrls | None:
    """Production's cache: the team's (``cache.url``), deploygate's (``cache.service``), or None.

    Deploygate's, when its container is not running, gives its name for this host too: asking
    it then fails and names it, as a stopped standby does.
    """
    if settings.cache_url:
        return CacheUrls(app=settings.cache_url, host=settings.cache_url)
    if settings.cache_service == "none":
        return None
    names = Names(settings.project)
    try:
        container = client.containers.get(names.cache)
    except docker.errors.NotFound:
        container = None
    found = address(container, names.network) if container is not None and container.status == "running" else ""
    return CacheUrls(app=_url(names.cache), host=_url(found or names.cache))


@contextmanager
def scratch_redis(client: docker.DockerClient, prefix: str, image_id: str, network: str) -> Iterator[CacheUrls]:
    """A throwaway Redis of ``image_id`` on ``network`` (the copy's), named ``<prefix>cache_<random>``; removed on exit."""
    engine.configure_testcontainers()
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import ExecWaitStrategy

    name = f"{prefix}cache_{uuid.uuid4().hex[:8]}"
    container = (
        DockerContainer(image_id)
        .with_name(name)
        .with_command(["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--maxmemory", CACHE_MAXMEMORY])
        .waiting_for(ExecWaitStrategy(["redis-cli", "ping"]).with_startup_timeout(30).with_poll_interval(0.1))
    )
    try:
        container.start()
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        found = address(wrapped, network)
        if not found:
            raise StackError(f"the scratch cache {name} has no address on {network}")
        yield CacheUrls(app=_url(found), host=_url(found))
    finally:
        # Found by name when a signal cut short the request that made it (its id never came back).
        try:
            client.containers.get(name).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
