"""Containers beside production that the ``Platform`` does not run for it: the switch bench's proxies.

The switch bench puts two proxies side by side in front of the same colors (the nginx
baseline production no longer runs, and HAProxy), each with its own published port, user
and mounts, while production's own proxy stays the Platform's business. A sidecar joins
production's network and carries its project label, so ``production.down`` removes it
with everything else. Single Docker host only, like the bench.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import docker
import docker.errors
import docker.models.containers

from deploygate.errors import StackError
from deploygate.log import Say
from deploygate.platform import images
from deploygate.platform.docker_host import PROJECT_LABEL, ROLE_LABEL, DockerHost
from deploygate.platform.images import Image


@dataclass
class Sidecar:
    """One running sidecar container."""

    container: docker.models.containers.Container

    @property
    def name(self) -> str:
        return self.container.name

    def exec(self, argv: Sequence[str]) -> tuple[int, str]:
        """Run ``argv`` inside; returns exit code and output. Raises ``StackError`` when the engine refuses."""
        try:
            code, output = self.container.exec_run(list(argv))
        except docker.errors.APIError as exc:
            raise StackError(f"`{' '.join(argv)}` in {self.name}: {exc.explanation or exc}") from None
        return code, output.decode(errors="replace")

    def remove(self) -> None:
        """Remove the container (nothing if it is gone already)."""
        try:
            self.container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass


def image(host: DockerHost, name: str, say: Say) -> Image:
    """A proxy image for a sidecar: ``nginx`` or ``haproxy`` (built locally or pulled, like every service image)."""
    builders = {"nginx": images.nginx_image, "haproxy": images.haproxy_image}
    if name not in builders:
        raise StackError(f"no sidecar image {name!r}; known: {', '.join(builders)}")
    return builders[name](host.client, host.settings, say)


def run_sidecar(
    host: DockerHost,
    suffix: str,
    image: Image,
    command: Sequence[str],
    *,
    port_inside: int,
    host_port: int,
    mounts: Mapping[str, str],
    writable: Sequence[str] = (),
    user: str | None = None,
) -> Sidecar:
    """Start ``<project>_<suffix>`` from ``image`` on production's network, ``port_inside`` published on loopback ``host_port``.

    ``mounts`` are host path -> path inside, read-only unless the host path is in
    ``writable``. Raises ``StackError`` when it cannot start.
    """
    name = f"{host.settings.project}_{suffix}"
    try:
        container = host.client.containers.run(
            image.tag,
            list(command),
            name=name,
            detach=True,
            network=host.network_name,
            user=user,
            ports={f"{port_inside}/tcp": ("127.0.0.1", host_port)},
            volumes={path: {"bind": inside, "mode": "rw" if path in writable else "ro"} for path, inside in mounts.items()},
            labels={PROJECT_LABEL: host.settings.project, ROLE_LABEL: "sidecar"},
        )
    except docker.errors.APIError as exc:
        raise StackError(f"could not start {name}: {exc.explanation or exc}") from None
    return Sidecar(container)
