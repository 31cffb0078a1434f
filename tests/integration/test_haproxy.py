"""A real HAProxy container in front of two real upstream containers, switched through its runtime API.

The rig (project ``dghaproxy``) is a network, one small keep-alive app per color, and the
proxy, all labelled and removed afterwards. Each test starts from blue serving, no hold.
The rig is the test's own, not a production: it is built with the docker SDK directly
(the Platform runs production's parts, not a proxy beside two throwaway apps).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from bench.loadgen import KeepAliveLoad
from deploygate import config, haproxy
from deploygate.errors import ProxyError
from deploygate.haproxy import ProxyDirs, RoutingState
from deploygate.platform import images
from deploygate.platform.docker_host import PROJECT_LABEL, remove_labelled
from deploygate.platform.engine import ensure_engine
from deploygate.proxy import read_access_log
from deploygate.waiting import wait_until
from tests.support import free_port, project_name

PROJECT = project_name("dghaproxy")
UPSTREAM_DIR = Path(__file__).parent / "upstream"
APP_PORT = 8000


@dataclass
class Rig:
    client: docker.DockerClient
    dirs: ProxyDirs
    network: str
    proxy: docker.models.containers.Container
    port: int
    python_image: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upstream_name(self, color: str) -> str:
        return f"{PROJECT}_{color}"

    def start_upstream(self, color: str) -> docker.models.containers.Container:
        return self.client.containers.run(
            self.python_image,
            ["python3", "/srv/color_app.py"],
            name=self.upstream_name(color),
            detach=True,
            network=self.network,
            environment={"COLOR": color},
            volumes={str(UPSTREAM_DIR): {"bind": "/srv", "mode": "ro"}},
            labels={PROJECT_LABEL: PROJECT},
        )

    def upstream(self, color: str) -> docker.models.containers.Container:
        return self.client.containers.get(self.upstream_name(color))

    def exec_python(self, container: docker.models.containers.Container, code: str) -> tuple[int, str]:
        code_, output = container.exec_run(["python3", "-c", code])
        return code_, output.decode(errors="replace")


def _get(conn: http.client.HTTPConnection, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, body=b"{}" if method == "POST" else None, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def container_ip(container: docker.models.containers.Container, network: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


@pytest.fixture(scope="module")
def rig(settings: config.Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    docker_client = ensure_engine(say=print)
    remove_labelled(docker_client, PROJECT)
    python = images.python_image(docker_client, settings, print)
    proxy_image = images.haproxy_image(docker_client, settings, print)
    network = f"{PROJECT}_net"
    docker_client.networks.create(network, driver="bridge", labels={PROJECT_LABEL: PROJECT})
    dirs = ProxyDirs(tmp_path_factory.mktemp("haproxy"))
    try:
        backends = {color: [f"{PROJECT}_{color}:{APP_PORT}"] for color in ("blue", "green")}
        haproxy.prepare(dirs, backends, "blue")
        port = free_port()
        proxy = docker_client.containers.run(
            proxy_image.tag,
            haproxy.command(),
            name=f"{PROJECT}_proxy",
            detach=True,
            network=network,
            user=haproxy.container_user(),
            ports={f"{haproxy.HTTP_PORT}/tcp": ("127.0.0.1", port)},
            volumes={path: {"bind": inside, "mode": "rw" if path in dirs.writable else "ro"} for path, inside in dirs.mounts().items()},
            labels={PROJECT_LABEL: PROJECT},
        )
        rig = Rig(docker_client, dirs, network, proxy, port, python.tag)
        for color in ("blue", "green"):
            rig.start_upstream(color)
        haproxy.wait_answering(dirs)
        for color in ("blue", "green"):
            wait_until(lambda color=color: haproxy.ready_servers(dirs, color), timeout=30, what=f"{color} to be up in the proxy")
        yield rig
    finally:
        remove_labelled(docker_client, PROJECT)


@pytest.fixture(autouse=True)
def _blue_serving(rig: Rig) -> None:
    if rig.proxy.status != "running":
        rig.proxy.start()
    haproxy.wait_answering(rig.dirs)
    haproxy.route(rig.dirs, "blue")
    haproxy.release_hold(rig.dirs)


def test_the_rendered_configuration_is_valid_for_haproxy(rig: Rig) -> None:
    code, output = rig.proxy.exec_run(["haproxy", "-c", "-f", f"{haproxy.CONFIG_DIR_IN_CONTAINER}/{haproxy.CONFIG_NAME}"])
    assert code == 0, output.decode(errors="replace")
    assert haproxy.api(rig.dirs).info()["Version"].startswith("2.6")


def test_switching_under_keepalive_load_with_posts_loses_nothing(rig: Rig) -> None:
    started = time.time()
    run = uuid.uuid4().hex[:8]
    load = KeepAliveLoad(
        rig.url, clients=16, max_requests=100_000, max_duration_s=60, get_path=f"/read-{run}", post_path=f"/write-{run}"
    ).start()
    try:
        time.sleep(0.5)
        for n in range(20):
            haproxy.route(rig.dirs, "green" if n % 2 == 0 else "blue")
            time.sleep(0.25)
    finally:
        samples = load.stop()
    assert len(samples) > 500, f"only {len(samples)} requests were sent"
    unanswered = [s for s in samples if s.status == 0]
    assert not unanswered, f"{len(unanswered)} of {len(samples)} got no answer, e.g. {unanswered[0]}"
    errors = [s for s in samples if s.status >= 500]
    assert not errors, f"{len(errors)} of {len(samples)} got a 5xx, e.g. {errors[0]}"
    # No client connection was closed: each client sent everything on the connection it opened.
    assert load.connections_opened == 16
    by_color = Counter(s.color for s in samples)
    assert by_color["blue"] > 100 and by_color["green"] > 100, by_color
    assert Counter(s.method for s in samples)["POST"] >= len(samples) // 4 - 16

    # One access-log line per request, with the color the client was told.
    def logged() -> list:
        records = [r for r in read_access_log(rig.dirs.access_log, since=started - 1) if run in r.uri]
        return records if len(records) >= len(samples) else []

    records = wait_until(logged, timeout=10, what="a log line for every request")
    assert Counter((r.method, r.color, r.status) for r in records) == Counter((s.method, s.color, s.status) for s in samples)
    assert haproxy.api(rig.dirs).info()["DroppedLogs"] == "0"


def test_hold_is_answered_by_the_proxy_with_retry_after_and_logged_as_hold(rig: Rig) -> None:
    started = time.time()
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=10)
    assert haproxy.hold(rig.dirs, 17) == RoutingState("blue", hold_s=17)
    for method in ("GET", "POST"):
        status, headers, body = _get(conn, method, f"/held-{method}")
        assert status == 503
        assert headers["retry-after"] == "17" and headers["x-deploygate-color"] == "hold"
        assert json.loads(body) == {"status": "maintenance", "retry_after": 17}
    haproxy.route(rig.dirs, "green")  # the color changes behind the hold: still held
    assert _get(conn, "GET", "/held-after-route")[0] == 503
    haproxy.release_hold(rig.dirs)
    status, headers, body = _get(conn, "GET", "/released")  # the same kept-alive connection
    assert status == 200 and headers["x-deploygate-color"] == "green" and json.loads(body)["color"] == "green"

    def logged() -> dict:
        records = {r.uri: r for r in read_access_log(rig.dirs.access_log, since=started - 1)}
        return records if "/released" in records else {}

    records = wait_until(logged, timeout=10, what="the hold's requests in the access log")
    for uri in ("/held-GET", "/held-POST", "/held-after-route"):
        assert (records[uri].color, records[uri].status) == ("hold", 503)
    assert (records["/released"].color, records["/released"].status) == ("green", 200)


def test_a_restarted_or_killed_proxy_routes_as_the_state_on_disk(rig: Rig) -> None:
    haproxy.route(rig.dirs, "green")
    before = rig.dirs.access_log.read_text()
    rig.proxy.restart(timeout=10)
    haproxy.wait_answering(rig.dirs)
    assert haproxy.runtime_state(rig.dirs) == RoutingState("green")
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=10)
    assert _get(conn, "GET", "/after-restart")[1]["x-deploygate-color"] == "green"

    # Killed outright, and the state changed while it was down: it starts with the new state.
    rig.proxy.kill()
    wait_until(lambda: (rig.proxy.reload(), rig.proxy.status != "running")[1], timeout=10, what="the proxy to be down")
    with pytest.raises(ProxyError, match="next start"):
        haproxy.hold(rig.dirs, 5)
    assert haproxy.current(rig.dirs) == RoutingState("green", hold_s=5)
    rig.proxy.start()
    haproxy.wait_answering(rig.dirs)
    assert haproxy.runtime_state(rig.dirs) == RoutingState("green", hold_s=5)
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=10)
    assert _get(conn, "GET", "/after-kill")[0] == 503
    haproxy.release_hold(rig.dirs)
    assert _get(conn, "GET", "/after-release")[1]["x-deploygate-color"] == "green"

    # Both restarts appended to the access log: nothing written before was overwritten.
    def appended() -> str:
        text = rig.dirs.access_log.read_text()
        return text if "/after-release" in text else ""

    after = wait_until(appended, timeout=10, what="the requests after the restarts in the access log")
    assert after.startswith(before)
    assert after[len(before) :].count("# deploygate: haproxy starting") == 2


def test_a_recreated_color_is_found_again_and_an_absent_one_is_never_routed_to(rig: Rig) -> None:
    rig.upstream("green").remove(force=True)
    wait_until(lambda: not haproxy.ready_servers(rig.dirs, "green"), timeout=30, what="green to be down in the proxy")
    with pytest.raises(ProxyError, match="not routing to green, nothing changed"):
        haproxy.route(rig.dirs, "green", ready_timeout_s=2)
    assert haproxy.current(rig.dirs) == RoutingState("blue")
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=10)
    assert _get(conn, "GET", "/still-blue")[1]["x-deploygate-color"] == "blue"

    rig.start_upstream("green")  # a new container, possibly at a new address: found through Docker's DNS
    haproxy.route(rig.dirs, "green", ready_timeout_s=30)
    status, headers, body = _get(conn, "GET", "/green-again")
    assert status == 200 and json.loads(body)["color"] == "green"


def test_the_access_log_keeps_the_exact_uri_and_a_line_per_request(rig: Rig) -> None:
    started = time.time()
    marker = uuid.uuid4().hex[:8]
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=10)
    uris = [f"/exact-{marker}?q=%22x%22&u=%E2%9C%93&s=a\\b", f"/exact-{marker}/{'long' * 500}"]
    for uri in uris:
        assert _get(conn, "GET", uri)[0] == 200

    def logged() -> list:
        records = [r for r in read_access_log(rig.dirs.access_log, since=started - 1) if marker in r.uri]
        return records if len(records) == len(uris) else []

    records = wait_until(logged, timeout=10, what="both requests in the access log")
    assert [r.uri for r in records] == uris
    assert all(r.color == "blue" and r.status == 200 and r.request_time >= 0 and r.ts >= started - 1 for r in records)
    raw = [json.loads(line) for line in rig.dirs.access_log.read_text().splitlines() if marker in line]
    assert {"ts", "color", "method", "uri", "status", "request_time", "upstream", "upstream_status", "upstream_time"} <= set(raw[0])
    assert raw[0]["upstream_status"] == "200" and raw[0]["upstream"].endswith(f":{APP_PORT}")


def _address(hex_address: str) -> str:
    """An address of /proc/net/{tcp,udp}[6] (hex, in host byte order per 32-bit word) as text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def _listening(container: docker.models.containers.Container) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every socket taking connections or datagrams in the container's network namespace.

    TCP sockets in LISTEN (state 0A) and unconnected UDP sockets (state 07); read with the
    container's own ``cat`` because /proc/net shows the reader's namespace.
    """
    found = set()
    for proto, table, state in (("tcp", "tcp", "0A"), ("tcp", "tcp6", "0A"), ("udp", "udp", "07"), ("udp", "udp6", "07")):
        code, output = container.exec_run(["cat", f"/proc/net/{table}"])
        if code != 0:
            continue  # no IPv6 in this namespace
        for row in output.decode().splitlines()[1:]:
            fields = row.split()
            if fields[3] == state:
                address, port = fields[1].rsplit(":", 1)
                found.add((proto, _address(address), int(port, 16)))
    return found


_SWEEP = """
import json, socket, sys
host, http_port = sys.argv[1], int(sys.argv[2])
open_ports = []
for port in range(1, 65536):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, port)) == 0:
            open_ports.append(port)
# The HTTP port speaks HTTP only: a runtime API command sent there is a bad request.
with socket.create_connection((host, http_port), timeout=5) as sock:
    sock.sendall(b"show info\\n\\n")
    first = sock.recv(200).split(b"\\r\\n")[0].decode()
print(json.dumps({"open": open_ports, "first": first}))
"""


def test_an_app_container_cannot_reach_the_runtime_api(rig: Rig) -> None:
    # What the proxy container listens on: HTTP, and nothing else (the API is a unix socket).
    # Docker's embedded DNS listens in every container's namespace, on 127.0.0.11 only.
    listening = _listening(rig.proxy)
    reachable = {(proto, port) for proto, address, port in listening if not ipaddress.ip_address(address).is_loopback}
    assert reachable == {("tcp", haproxy.HTTP_PORT)}, listening
    assert {address for _, address, _ in listening if ipaddress.ip_address(address).is_loopback} <= {"127.0.0.11"}, listening
    app = rig.upstream("blue")

    # From the app container: every TCP port of the proxy is tried; only HTTP answers, and not as the API.
    proxy_ip = container_ip(rig.proxy, rig.network)
    code, output = app.exec_run(["python3", "-c", _SWEEP, proxy_ip, str(haproxy.HTTP_PORT)])
    assert code == 0, output
    swept = json.loads(output)
    assert swept["open"] == [haproxy.HTTP_PORT] and swept["first"].startswith("HTTP/1.1 400"), swept

    # The socket's directory is mounted into the proxy only.
    code, _ = app.exec_run(["test", "-e", f"{haproxy.RUN_DIR_IN_CONTAINER}/{haproxy.SOCKET_NAME}"])
    assert code != 0
    code, found = app.exec_run(["find", "/", "-xdev", "-type", "s", "-name", haproxy.SOCKET_NAME])
    assert found.decode().strip() == ""
    app.reload()
    assert not any(str(rig.dirs.root) in mount.get("Source", "") for mount in app.attrs["Mounts"])
