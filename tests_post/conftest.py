"""Post-deploy checks run against the new colour directly (before the switch) or through the proxy (after)."""

from __future__ import annotations

from dataclasses import dataclass

import docker
import pytest

from deploygate import images, rehearsal, stack
from deploygate.config import Settings
from deploygate.containers import COLOR_LABEL, container_ip, get_or_none
from deploygate.database import db_password


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deploygate")
    group.addoption("--target", choices=("green", "proxy"), default="proxy", help="check the new colour directly or via the proxy")
    group.addoption("--deploy-color", default=None, help="the new colour (default: the colour the proxy routes to)")
    group.addoption("--since", type=float, default=None, help="epoch seconds the error count starts at (the switch)")


@dataclass(frozen=True)
class Target:
    """What the post checks look at: the new colour's container and the URL requests go to."""

    color: str
    container: docker.models.containers.Container
    image: images.Image
    url: str
    via_proxy: bool


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config, docker_client: docker.DockerClient, settings: Settings) -> Target:
    live = stack.proxy_paths(settings).current()
    color = pytestconfig.getoption("--deploy-color") or (live.color if live else None)
    if color is None:
        pytest.fail("no colour to check: the proxy routes nowhere and --deploy-color was not given", pytrace=False)
    names = stack.StackNames(settings.project)
    container = get_or_none(docker_client, names.web(color))
    if container is None or container.labels.get(COLOR_LABEL) != color:
        pytest.fail(f"{names.web(color)} does not exist", pytrace=False)
    via_proxy = pytestconfig.getoption("--target") == "proxy"
    url = stack.proxy_url(settings) if via_proxy else f"http://{container_ip(container, names.network)}:{settings.app_port}"
    image = images.Image(tag=container.image.tags[0] if container.image.tags else container.image.id, id=container.image.id, built=False)
    return Target(color=color, container=container, image=image, url=url, via_proxy=via_proxy)


@pytest.fixture(scope="session")
def production_probe(docker_client: docker.DockerClient, settings: Settings, target: Target):
    """Run a probe command with the new colour's image against production (reads, or writes rolled back)."""

    def run(command: str, argument=None) -> dict:
        payload, _ = rehearsal.probe(
            docker_client, settings, target.image, command, argument,
            network=stack.StackNames(settings.project).network,
            environment=stack.app_environment(settings, db_password(settings)),
        )  # fmt: skip
        return payload

    return run
