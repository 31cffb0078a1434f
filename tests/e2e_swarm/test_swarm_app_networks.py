"""On a swarm, the app's services join the team's overlay and get its host entries (app.networks, app.extra_hosts)."""

from __future__ import annotations

import docker.errors
import pytest
from docker.types import EndpointSpec

from deploygate import production as prod
from deploygate.errors import StackError
from deploygate.platform.naming import PROJECT_LABEL
from deploygate.platform.swarm import SwarmPlatform
from deploygate.waiting import wait_until

_TEAM_SERVICE = "import http.server as h; h.HTTPServer(('', 6380), type('H', (h.BaseHTTPRequestHandler,), {'do_GET': lambda s: (s.send_response(200), s.end_headers(), s.wfile.write(b'team'))})).serve_forever()"
# The team's service may still be starting: tried for 60 s.
_FETCH = (
    "import sys, time, urllib.request\n"
    "for _ in range(120):\n"
    "    try: print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()); break\n"
    "    except OSError: time.sleep(0.5)\n"
    "else: sys.exit('unreachable')\n"
)


def _with(platform: SwarmPlatform, **values) -> SwarmPlatform:
    return SwarmPlatform(platform.manager, platform.local, platform.nodes, platform.settings.replace(**values))


def test_the_app_joins_the_teams_overlay_and_gets_its_host_entries(platform: SwarmPlatform, e2e_stack) -> None:
    project = platform.settings.project
    team = f"{project}_team"
    labels = {PROJECT_LABEL: project}
    image = platform.resolve_image("v1", say=lambda message: None)
    # A network that does not exist: one line, and no service created.
    with pytest.raises(StackError, match=rf"^app.networks: no network named {project}_nosuchnet on the swarm"):
        _with(platform, app_networks=(f"{project}_nosuchnet",)).start_color(
            "green", image, prod.app_environment(platform, platform.settings)
        )
    assert platform.color("green") is None

    network = platform.manager.networks.create(team, driver="overlay", attachable=True, labels=labels)
    helper = platform._by_reference("deploygate/python:3.11")
    service = platform.manager.services.create(
        helper.tag,
        ["python3", "-c", _TEAM_SERVICE],
        name=f"{team}svc",
        networks=[network.id],
        endpoint_spec=EndpointSpec(mode="dnsrr"),
        labels=labels,
    )
    swarm = _with(platform, app_networks=(team,), app_extra_hosts={"redis.internal": "10.0.0.5"})
    try:
        swarm.start_color("green", image, prod.app_environment(swarm, swarm.settings))
        swarm.wait_healthy("green", timeout=180)
        template = swarm._service(swarm.names.web("green")).attrs["Spec"]["TaskTemplate"]
        assert {n["Target"] for n in template["Networks"]} == {swarm._network_id(), network.id}
        assert template["ContainerSpec"]["Hosts"] == ["10.0.0.5 redis.internal"]
        # A job of the app's image against production: on the team's overlay, with the host entries.
        job = swarm.run_job(image.tag, ["python", "-c", _FETCH, f"http://{team}svc:6380/"], environment={})
        assert (job.exit_code, job.last_line) == (0, "team"), job.output
        job = swarm.run_job(image.tag, ["python", "-c", "import socket; print(socket.gethostbyname('redis.internal'))"], environment={})
        assert job.last_line == "10.0.0.5", job.output
    finally:
        swarm.remove_color("green")
        service.remove()

        def removed() -> bool:
            network.remove()  # refused while tasks still hold it
            return True

        wait_until(removed, timeout=60, interval=0.5, what=f"{team} to be free", transient=(docker.errors.APIError,))
