"""The app's containers on the team's networks, with host entries, and the database's address pinned (real engine)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
import requests

from deploygate import production as prod
from deploygate.errors import StackError
from deploygate.platform.docker_host import DockerHost
from deploygate.platform.naming import PROJECT_LABEL
from deploygate.platform.networking import extra_hosts_of, pinned_addresses
from deploygate.proxy import Proxy
from deploygate.waiting import wait_until
from fixtures.stack import Production
from tests.support import free_port

# Answers its own name on any path: what the app reaching "the team's service" looks like.
_TEAM_SERVICE = "import http.server as h; h.HTTPServer(('', 6380), type('H', (h.BaseHTTPRequestHandler,), {'do_GET': lambda s: (s.send_response(200), s.end_headers(), s.wfile.write(b'team'))})).serve_forever()"
_FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


@pytest.fixture
def team_network(production: Production) -> Iterator[str]:
    """A network of the team's own (not production's) with a service on it, as their Redis would be."""
    client: docker.DockerClient = production.platform.client
    name = f"{production.settings.project}_team"
    # Labelled with the project: a crashed run's leftover goes with `down`.
    network = client.networks.create(name, driver="bridge", labels={PROJECT_LABEL: production.settings.project})
    service = client.containers.run(
        "deploygate/python:3.11",
        ["python3", "-c", _TEAM_SERVICE],
        name=f"{name}svc",
        network=name,
        detach=True,
        labels={PROJECT_LABEL: production.settings.project},
    )
    yield name
    service.remove(force=True)
    production.platform.remove_color("green")
    network.remove()


def _with(production: Production, **values) -> DockerHost:
    return DockerHost(production.platform.client, production.settings.replace(**values))


def _run(container, argv: list[str]) -> str:
    code, output = container.exec_run(argv)
    assert code == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def test_the_app_joins_the_teams_network_and_gets_its_host_entries(production: Production, team_network: str) -> None:
    platform = _with(production, app_networks=(team_network,), app_extra_hosts={"redis.internal": "10.0.0.5"})
    image = platform.resolve_image("v1", say=lambda message: None)
    platform.start_color("green", image, prod.app_environment(platform, production.settings))
    platform.wait_healthy("green", timeout=60)
    green = platform.client.containers.get(platform.names.web("green"))
    assert set(green.attrs["NetworkSettings"]["Networks"]) == {platform.names.network, team_network}
    hosts = pinned_addresses(_run(green, ["cat", "/etc/hosts"]))
    assert hosts["redis.internal"] == "10.0.0.5"
    assert hosts[platform.names.db] == platform.database().host  # the pin: the database's address on production's network
    # The team's service by its name on their network, from the web container and from a job of the app's image.
    assert _run(green, ["python", "-c", _FETCH, f"http://{team_network}svc:6380/"]).strip() == "team"
    job = platform.run_job(image.tag, ["python", "-c", _FETCH, f"http://{team_network}svc:6380/"], environment={})
    assert (job.exit_code, job.last_line) == (0, "team"), job.output


def test_a_missing_network_is_one_line_before_anything_is_created(production: Production) -> None:
    missing = f"{production.settings.project}_nosuchnet"
    platform = _with(production, app_networks=(missing,))
    image = platform.resolve_image("v1", say=lambda message: None)
    with pytest.raises(StackError, match=rf"^app.networks: no network named {missing} on this Docker engine; ") as raised:
        platform.start_color("green", image, prod.app_environment(platform, production.settings))
    assert "\n" not in str(raised.value)
    assert platform.color("green") is None
    # `up` of a new production says it before creating its network, volume or database.
    fresh = DockerHost(platform.client, production.settings.replace(project=f"{production.settings.project}x", app_networks=(missing,)))
    with pytest.raises(StackError, match="no network named"):
        fresh.ensure_database(fresh.service_image("postgres", say=lambda message: None), "unused")
    assert fresh.footprint() - production.platform.footprint() == set()


def _move_database(platform: DockerHost) -> str:
    """Start the database again on another address (a container took its address while it was stopped): its new one."""
    db = platform.client.containers.get(platform.names.db)
    before = platform.database().host
    db.stop(timeout=10)
    squatter = platform.client.containers.run(
        "deploygate/debian:bookworm",
        ["sleep", "600"],
        network=platform.names.network,
        detach=True,
        labels={PROJECT_LABEL: platform.settings.project},
    )
    try:
        db.start()
        after = platform.database().host
        assert after != before
        wait_until(
            lambda: db.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"])[0] == 0, timeout=60, what="the database to accept connections"
        )
    finally:
        squatter.remove(force=True)
    return after


@pytest.fixture
def moving_production(production: Production, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    """A production of its own: its database is moved, which the tier's shared production (whose address the
    other tests hold) must never see."""
    settings = production.settings.replace(
        project=f"{production.settings.project}mv",
        proxy_port=free_port(),
        state_dir=str(tmp_path_factory.mktemp("moving_state")),
    )
    platform = DockerHost(production.platform.client, settings)
    prod.up(platform, settings, say=lambda message: None)
    try:
        yield Production(settings=settings, platform=platform, proxy=Proxy(settings, platform), db=platform.database())
    finally:
        prod.down(platform, settings, volumes=True)


def test_a_stale_pin_is_fixed_when_a_color_resumes(moving_production: Production) -> None:
    production = moving_production
    platform = _with(production)
    image = platform.resolve_image("v1", say=lambda message: None)
    platform.start_color("green", image, prod.app_environment(platform, production.settings))
    platform.wait_healthy("green", timeout=60)
    platform.stop_color("green")
    moved = _move_database(platform)
    # Blue serves on: its pin is stale now, and resuming it (as a rollback does) rewrites the entry in place.
    blue = platform.client.containers.get(platform.names.web("blue"))
    platform.resume_color("blue")
    assert platform.client.containers.get(platform.names.web("blue")).id == blue.id
    assert pinned_addresses(_run(blue, ["cat", "/etc/hosts"]))[platform.names.db] == moved
    wait_until(
        lambda: requests.get(f"{production.url}/health/", timeout=5).status_code == 200, timeout=30, what="blue to reach its database"
    )
    # Green, stopped with the old address, is created again with the new one when it resumes.
    stale = platform.client.containers.get(platform.names.web("green")).id
    platform.resume_color("green")
    green = platform.client.containers.get(platform.names.web("green"))
    assert green.id != stale and extra_hosts_of(green.attrs["HostConfig"]["ExtraHosts"])[platform.names.db] == moved
    assert platform.wait_healthy("green", timeout=60).release == "v1"
