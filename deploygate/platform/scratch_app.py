"""A release's web server beside a scratch copy: the replay gate sends it production's recorded requests.

It runs the image's own command (what a color runs) on the copy's network, reached by this
host at its address there, never published, and named ``<prefix>app_<random>`` so the
stale-scratch sweep removes what a killed run left. Its output is kept for the app's errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import docker
import docker.errors
import requests

from deploygate.errors import StackError
from deploygate.platform.docker_containers import address
from deploygate.platform.scratch import SCRATCH_LABELS
from deploygate.platform.specs import Readiness
from deploygate.waiting import wait_until


@dataclass
class ScratchApp:
    """One running web server of a release: its base URL from this host, and its output so far."""

    url: str
    container: docker.models.containers.Container

    def output(self, since: float = 0) -> str:
        """Its stdout and stderr with Docker's timestamps (``app_errors.parse_timestamped`` reads them)."""
        return self.container.logs(stdout=True, stderr=True, timestamps=True, since=int(since)).decode(errors="replace")


@contextmanager
def scratch_app(
    client: docker.DockerClient,
    prefix: str,
    image: str,
    environment: Mapping[str, str],
    network: str,
    readiness: Readiness,
    *,
    timeout: float = 60,
) -> Iterator[ScratchApp]:
    """``image``'s web server on ``network`` with ``environment``, once its health URL answers (any status); removed on exit."""
    name = f"{prefix}app_{uuid.uuid4().hex[:8]}"
    try:
        container = client.containers.run(
            image, detach=True, name=name, environment=dict(environment), network=network, labels=SCRATCH_LABELS
        )
        container.reload()
        found = address(container, network)
        if not found:
            raise StackError(f"the scratch app {name} has no address on {network}")
        url = f"http://{found}:{readiness.port}"

        def ready() -> bool:
            container.reload()
            if container.status == "exited":
                tail = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
                raise StackError(f"{image} exited before it answered {readiness.http_path}: {tail}")
            # Any answer: a release that cannot serve this schema (its health 503) is what the replay is there to show.
            return requests.get(f"{url}{readiness.http_path}", timeout=3).status_code > 0

        wait_until(ready, timeout=timeout, interval=0.2, what=f"{image} on the copy to answer {readiness.http_path}")
        yield ScratchApp(url, container)
    except docker.errors.APIError as exc:
        raise StackError(f"could not run {image} beside the copy: {exc.explanation or exc}") from None
    finally:
        # Found by name when a signal cut short the request that made it (its id never came back).
        try:
            client.containers.get(name).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
