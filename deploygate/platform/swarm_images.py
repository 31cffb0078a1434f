"""Images on a swarm's nodes: built or found on the local engine, copied (save | load) to every node's engine.

Where no registry serves the images, a node can only run what its own engine has: each
image a service needs is copied to the engines of ``swarm_nodes`` once (remembered by id).
"""

from __future__ import annotations

from collections.abc import Sequence

import docker
import docker.errors
import requests

from deploygate.errors import StackError
from deploygate.platform.images import Image


class NodeImages:
    """The images of the local engine ``local`` as every node's engine (``nodes``: their endpoints) has them."""

    def __init__(self, local: docker.DockerClient, nodes: Sequence[str]) -> None:
        self.local = local
        self.nodes = list(nodes)
        self._copied: set[tuple[str, str]] = set()  # (node endpoint, image id) known to be there

    def engines(self) -> dict[str, docker.DockerClient]:
        """Every node's engine that answers now; one that does not (its node is down) cannot run a task anyway."""
        engines = {}
        for endpoint in self.nodes:
            try:
                engines[endpoint] = docker.DockerClient(base_url=endpoint, timeout=300)
            except (docker.errors.DockerException, requests.RequestException):
                continue
        return engines

    def distribute(self, image: Image) -> Image:
        """``image`` on every node of ``swarm_nodes`` under its tag (copied from the local engine where missing)."""
        missing = [e for e in self.nodes if (e, image.id) not in self._copied]
        for endpoint, node in self.engines().items() if missing else ():
            if endpoint not in missing:
                continue
            try:
                there = node.images.get(image.id)
                if image.tag not in there.tags:
                    repository, _, tag = image.tag.rpartition(":")
                    there.tag(repository, tag)
            except docker.errors.ImageNotFound:
                try:
                    source = self.local.images.get(image.id)
                except docker.errors.ImageNotFound:
                    raise StackError(
                        f"{image.tag} ({image.id[:19]}) is no longer on the local engine: removed while it was copied to the nodes"
                    ) from None
                try:
                    node.images.load(source.save(named=image.tag))
                except (docker.errors.APIError, requests.RequestException) as exc:
                    raise StackError(f"copying {image.tag} to the node at {endpoint} failed: {exc}") from None
            self._copied.add((endpoint, image.id))
        return image

    def by_reference(self, reference: str) -> Image:
        """An image the local engine has (by tag or id) as an ``Image`` with a tag every node knows."""
        try:
            found = self.local.images.get(reference)
        except docker.errors.ImageNotFound:
            if reference.startswith("sha256:"):
                raise StackError(f"the image {reference[:19]} is not on the local engine (removed?): nothing to run on the swarm") from None
            # Not built here: a registry's image every node pulls by itself.
            return Image(tag=reference, id=reference, built=False)
        tags = sorted(found.tags)
        if not tags:
            raise StackError(f"the image {reference[:19]} has no tag to run it by on the swarm")
        tag = reference if reference in tags else tags[0]
        return self.distribute(Image(tag=tag, id=found.id, built=False))
