"""Small, reusable operations on containers: labels, one-off runs, removal by label.

Every container, network and volume deploygate creates carries ``deploygate.project``,
so cleanup (ours and the tests') finds them by label rather than by remembering names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import docker
import docker.errors

from deploygate.errors import StackError

PROJECT_LABEL = "deploygate.project"
ROLE_LABEL = "deploygate.role"
COLOR_LABEL = "deploygate.color"
RELEASE_LABEL = "deploygate.release"
DIGEST_LABEL = "deploygate.image_digest"

Say = Callable[[str], None]


@dataclass(frozen=True)
class OneOffResult:
    """What a one-off container printed and how it exited."""

    exit_code: int
    output: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


def get_or_none(client: docker.DockerClient, name: str) -> docker.models.containers.Container | None:
    """The container called ``name``, or None."""
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def run_oneoff(
    client: docker.DockerClient,
    image: str,
    command: Sequence[str],
    *,
    network: str,
    environment: Mapping[str, str],
    labels: Mapping[str, str],
    say: Say | None = None,
    name: str | None = None,
    volumes: Mapping[str, Mapping[str, str]] | None = None,
) -> OneOffResult:
    """Run ``command`` in a fresh container of ``image`` and remove it afterwards.

    Lines it prints are passed to ``say`` as they come (progress of long work).
    The container is removed even when streaming fails.
    """
    try:
        container = client.containers.run(
            image,
            list(command),
            detach=True,
            network=network,
            environment=dict(environment),
            labels={**labels, ROLE_LABEL: "oneoff"},
            name=name,
            volumes=dict(volumes or {}),
        )
    except docker.errors.APIError as exc:
        raise StackError(f"could not start `{' '.join(command)}` in {image}: {exc.explanation or exc}") from None
    try:
        chunks = []
        for raw in container.logs(stream=True, follow=True):
            text = raw.decode(errors="replace")
            chunks.append(text)
            if say:
                for line in text.splitlines():
                    if line.strip():
                        say(f"  | {line}")
        exit_code = container.wait().get("StatusCode", 1)
        return OneOffResult(exit_code=exit_code, output="".join(chunks))
    finally:
        try:
            # v=True: an image with a VOLUME (Postgres, for pg_dump) leaves an anonymous volume per run otherwise.
            container.remove(force=True, v=True)
        except docker.errors.APIError:
            pass


def remove_labelled(client: docker.DockerClient, project: str, *, volumes: bool = False) -> list[str]:
    """Remove every container and network (and volume if asked) labelled with ``project``."""
    selector = {"label": f"{PROJECT_LABEL}={project}"}
    removed = []
    for container in client.containers.list(all=True, filters=selector):
        container.remove(force=True, v=True)  # anonymous volumes only; named ones go with `volumes`
        removed.append(f"container {container.name}")
    for network in client.networks.list(filters=selector):
        network.remove()
        removed.append(f"network {network.name}")
    if volumes:
        for volume in client.volumes.list(filters=selector):
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
    return removed


def container_ip(container: docker.models.containers.Container, network: str) -> str:
    """The container's address on ``network`` (reachable from this host on a local engine)."""
    container.reload()
    try:
        address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    except KeyError:
        address = ""
    if not address:
        raise StackError(f"container {container.name} has no address on network {network}")
    return address


def health_status(container: docker.models.containers.Container) -> str:
    """Docker's HEALTHCHECK verdict (healthy/unhealthy/starting), or the container state if it has none."""
    container.reload()
    state = container.attrs.get("State", {})
    health = state.get("Health")
    if health:
        return health.get("Status", "unknown")
    return state.get("Status", "unknown")
