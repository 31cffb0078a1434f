"""HAProxy configuration, routing state and runtime API (pure logic, and a fake runtime socket)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploygate import haproxy
from deploygate.errors import ProxyError
from deploygate.haproxy import ProxyDirs, RoutingState

DATA = Path(__file__).parent / "data"
TWO_COLORS = {"blue": ["proj_web_blue:8000"], "green": ["proj_web_green:8000", "10.0.0.7:8001"]}


# --- render_config -------------------------------------------------------------------------------


def test_render_config_is_exactly_the_reviewed_text() -> None:
    # The reviewed text is tests/unit/data/haproxy_two_colors.cfg; a change to the
    # configuration must change it too (and be checked by the integration tests).
    assert haproxy.render_config(TWO_COLORS) == (DATA / "haproxy_two_colors.cfg").read_text()


def test_render_config_is_pure_and_declares_every_color_and_replica() -> None:
    text = haproxy.render_config(TWO_COLORS, http_port=9090)
    assert text == haproxy.render_config(TWO_COLORS, http_port=9090)
    assert "backend blue\n    server blue1 proj_web_blue:8000\n" in text
    assert "backend green\n    server green1 proj_web_green:8000\n    server green2 10.0.0.7:8001\n" in text
    assert "    bind :9090\n" in text and text.count("bind ") == 1
    # The runtime API is the unix socket only: no TCP stats page or admin listener.
    assert "stats socket /var/run/deploygate/admin.sock mode 600 level admin" in text
    assert "stats enable" not in text and "ipv4@" not in text and "stats socket :" not in text
    # The first color is the fallback of the state map lookups.
    assert "str(color),map(/usr/local/etc/haproxy/state.map,blue)" in text


@pytest.mark.parametrize(
    "backends",
    [
        {},
        {"Blue": ["h:1"]},
        {"hold": ["h:1"]},
        {"off": ["h:1"]},
        {"blue-1": ["h:1"]},
        {"blue": []},
        {"blue": "h:1"},
        {"blue": ["h"]},
        {"blue": ["h:0"]},
        {"blue": ["h:70000"]},
        {"blue": ["h x:80"]},
        {"blue": ["h';x:80"]},
        {"blue": ["h:80*0"]},
        {"blue": ["h:80*65"]},
        {"blue": ["h:80*x"]},
        {"blue": ["h:80*"]},
    ],
)
def test_render_config_rejects_bad_colors_and_upstreams(backends: dict) -> None:
    with pytest.raises(ValueError):
        haproxy.render_config(backends)


def test_a_server_template_follows_a_dns_name_for_up_to_n_replicas() -> None:
    # A Swarm color: its tasks behind tasks.<service> (DNS round-robin), up to 4 of them.
    upstream = haproxy.server_template("tasks.proj_web_green:8000", 4)
    text = haproxy.render_config({"blue": ["proj_web_blue:8000"], "green": [upstream]})
    assert "backend green\n    server-template green1_ 1-4 tasks.proj_web_green:8000 init-addr none\n" in text
    assert "backend blue\n    server blue1 proj_web_blue:8000\n" in text
    # Its servers resolve at run time through Docker's DNS, like a single host's.
    assert "default-server init-addr libc,none resolvers docker" in text


@pytest.mark.parametrize("address, slots", [("h", 2), ("h:80", 0), ("h:80", 65), ("h:80*2", 2)])
def test_a_bad_server_template_is_refused(address: str, slots: int) -> None:
    with pytest.raises(ValueError):
        haproxy.server_template(address, slots)


def test_render_config_rejects_a_bad_port() -> None:
    with pytest.raises(ValueError):
        haproxy.render_config(TWO_COLORS, http_port=0)


# --- routing state on disk -----------------------------------------------------------------------


@pytest.mark.parametrize("state", [RoutingState("blue"), RoutingState("green", hold_s=30)])
def test_state_round_trips_through_its_text(state: RoutingState) -> None:
    assert haproxy.parse_state(haproxy.render_state(state)) == state


def test_state_text_is_a_map_of_two_keys() -> None:
    lines = [line for line in haproxy.render_state(RoutingState("green", hold_s=7)).splitlines() if not line.startswith("#")]
    assert lines == ["color green", "hold 7"]


@pytest.mark.parametrize(
    "text", ["color blue\n", "hold off\n", "color blue\nhold soon\n", "color blue\nhold 0\n", "color BLUE\nhold off\n"]
)
def test_unusable_state_text_is_a_proxy_error(text: str) -> None:
    with pytest.raises(ProxyError, match="unreadable routing state"):
        haproxy.parse_state(text)


@pytest.mark.parametrize("hold_s", [0, -5, True, 1.5])
def test_a_hold_needs_positive_whole_seconds(hold_s: object) -> None:
    with pytest.raises(ValueError):
        RoutingState("blue", hold_s=hold_s)  # type: ignore[arg-type]


def test_write_state_is_atomic_and_read_back_by_current(tmp_path: Path) -> None:
    dirs = ProxyDirs(tmp_path / "proxy")
    assert haproxy.current(dirs) is None
    haproxy.write_state(dirs, RoutingState("green", hold_s=12))
    assert haproxy.current(dirs) == RoutingState("green", hold_s=12)
    assert [p.name for p in dirs.config_dir.iterdir()] == [haproxy.STATE_NAME]  # no temporary file left


def test_prepare_writes_config_and_state_and_keeps_an_existing_state(tmp_path: Path) -> None:
    dirs = ProxyDirs(tmp_path / "proxy")
    assert haproxy.prepare(dirs, TWO_COLORS, "blue") == RoutingState("blue")
    assert dirs.config_file.read_text() == haproxy.render_config(TWO_COLORS)
    assert dirs.log_dir.is_dir()
    assert dirs.run_dir.stat().st_mode & 0o777 == 0o700
    if os.geteuid() == 0:
        assert (dirs.run_dir.stat().st_uid, dirs.log_dir.stat().st_uid) == (haproxy.HAPROXY_UID, haproxy.HAPROXY_UID)
        dirs.access_log.write_text("left by an nginx running as root\n")
        os.chown(dirs.access_log, 0, 0)
        haproxy.prepare(dirs, TWO_COLORS, "blue")
        assert dirs.access_log.stat().st_uid == haproxy.HAPROXY_UID
    haproxy.write_state(dirs, RoutingState("green", hold_s=5))
    # A re-prepared (restarted, re-created) proxy comes back with the routing it had.
    assert haproxy.prepare(dirs, TWO_COLORS, "blue") == RoutingState("green", hold_s=5)


def test_prepare_refuses_a_state_naming_an_undeclared_color(tmp_path: Path) -> None:
    dirs = ProxyDirs(tmp_path / "proxy")
    haproxy.write_state(dirs, RoutingState("purple"))
    with pytest.raises(ProxyError, match="purple"):
        haproxy.prepare(dirs, TWO_COLORS, "blue")


def test_mounts_keep_config_read_only_and_nothing_else_of_the_host(tmp_path: Path) -> None:
    dirs = ProxyDirs(tmp_path)
    assert dirs.mounts() == {
        str(tmp_path / "conf"): "/usr/local/etc/haproxy",
        str(tmp_path / "run"): "/var/run/deploygate",
        str(tmp_path / "logs"): "/var/log/deploygate",
    }
    assert dirs.writable == [str(tmp_path / "run"), str(tmp_path / "logs")]


def test_command_positions_the_log_at_its_end_before_haproxy_starts() -> None:
    argv = haproxy.command()
    assert argv[:2] == ["sh", "-c"]
    script = argv[2]
    # Append mode, a line written through it, then HAProxy in the foreground as PID 1's replacement.
    assert script.index("exec >>/var/log/deploygate/access.log") < script.index("echo") < script.index("exec haproxy -W -db")


# --- the runtime API, against a fake socket --------------------------------------------------------


@dataclass
class FakeHAProxy:
    """A unix socket answering like HAProxy's runtime API: one command per connection, then close."""

    path: Path
    entries: dict[str, str] = field(default_factory=lambda: {"color": "blue", "hold": "off"})
    statuses: dict[str, str] = field(default_factory=lambda: {"blue": "UP", "green": "UP"})
    commands: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)  # canned answers by command
    refuse_sets: bool = False

    def answer(self, command: str) -> str:
        self.commands.append(command)
        if command in self.answers:
            return self.answers[command]
        words = command.split()
        if words[:2] == ["set", "map"] and words[2] == haproxy.STATE_IN_CONTAINER:
            if self.refuse_sets or words[3] not in self.entries:
                return "entry not found.\n\n"
            self.entries[words[3]] = words[4]
            return "\n"
        if words[:2] == ["show", "map"]:
            if words[2] != haproxy.STATE_IN_CONTAINER:
                return "Unknown map identifier. Please use #<id> or <file>.\n\n"
            return "".join(f"0x55d{n:05x} {k} {v}\n" for n, (k, v) in enumerate(self.entries.items())) + "\n"
        if command == "show stat":
            rows = ["# pxname,svname,qcur,scur,status,"]
            for color, status in self.statuses.items():
                rows += [f"{color},{color}1,0,0,{status},", f"{color},BACKEND,0,3,{'UP' if status.startswith('UP') else 'DOWN'},"]
            return "\n".join(rows) + "\n\n"
        if words[:2] == ["set", "server"] and words[3:] == ["health", "down"]:
            color = words[2].split("/")[0]
            self.statuses[color] = "DOWN"
            return "\n"
        if command == "show info":
            return "Name: HAProxy\nVersion: 2.6.12\nDroppedLogs: 0\n\n"
        return "Unknown command, but maybe one of the following ones is a better match:\n  help\n\n"


@pytest.fixture
def fake_haproxy(tmp_path: Path) -> Iterator[FakeHAProxy]:
    dirs = ProxyDirs(tmp_path / "proxy")
    dirs.run_dir.mkdir(parents=True)
    fake = FakeHAProxy(path=dirs.socket)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(dirs.socket))
    server.listen(8)
    server.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(fake.answer(data.decode().strip()).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield fake
    stopping.set()
    thread.join(timeout=2)
    server.close()


def _dirs(fake: FakeHAProxy) -> ProxyDirs:
    return ProxyDirs(fake.path.parent.parent)


def test_runtime_api_sends_one_command_and_returns_the_answer(fake_haproxy: FakeHAProxy) -> None:
    client = haproxy.RuntimeAPI(fake_haproxy.path)
    assert client.info()["Version"] == "2.6.12"
    assert client.map_entries() == {"color": "blue", "hold": "off"}
    assert [(r["pxname"], r["svname"], r["status"]) for r in client.stats()][:2] == [("blue", "blue1", "UP"), ("blue", "BACKEND", "UP")]
    assert fake_haproxy.commands == ["show info", f"show map {haproxy.STATE_IN_CONTAINER}", "show stat"]


def test_a_refused_command_is_one_line_proxy_error(fake_haproxy: FakeHAProxy) -> None:
    client = haproxy.RuntimeAPI(fake_haproxy.path)
    with pytest.raises(ProxyError) as raised:
        client.set(f"set map {haproxy.STATE_IN_CONTAINER} nokey 1")
    assert str(raised.value) == f"HAProxy refused `set map {haproxy.STATE_IN_CONTAINER} nokey 1`: entry not found."
    with pytest.raises(ProxyError, match="Unknown command"):
        client.set("bogus")
    with pytest.raises(ProxyError, match="has no map"):
        client.map_entries("/elsewhere.map")


def test_a_missing_socket_is_a_proxy_error_and_commands_are_one_line(tmp_path: Path) -> None:
    client = haproxy.RuntimeAPI(tmp_path / "absent.sock")
    with pytest.raises(ProxyError, match="does not answer"):
        client.send("show info")
    with pytest.raises(ValueError):
        client.send("show info\nshutdown frontend http")


def test_a_socket_deeper_than_sun_path_is_still_reached(fake_haproxy: FakeHAProxy, tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    link = deep / "admin.sock"
    os.link(fake_haproxy.path, link)  # a hard link to the socket inode: same listener, longer path
    assert len(str(link)) > 108
    assert haproxy.RuntimeAPI(link).info()["Name"] == "HAProxy"


def test_route_writes_disk_then_switches_the_running_proxy(fake_haproxy: FakeHAProxy) -> None:
    dirs = _dirs(fake_haproxy)
    haproxy.write_state(dirs, RoutingState("blue"))
    assert haproxy.route(dirs, "green") == RoutingState("green")
    assert haproxy.current(dirs) == RoutingState("green") == haproxy.runtime_state(dirs)
    sets = [c for c in fake_haproxy.commands if c.startswith("set ")]
    assert sets == [f"set map {haproxy.STATE_IN_CONTAINER} color green", f"set map {haproxy.STATE_IN_CONTAINER} hold off"]


def test_hold_goes_on_before_the_color_and_comes_off_after(fake_haproxy: FakeHAProxy) -> None:
    dirs = _dirs(fake_haproxy)
    haproxy.write_state(dirs, RoutingState("blue"))
    assert haproxy.hold(dirs, 30) == RoutingState("blue", hold_s=30)
    assert fake_haproxy.entries == {"color": "blue", "hold": "30"}
    # Routing during a hold changes the color that will serve, and keeps holding.
    assert haproxy.route(dirs, "green") == RoutingState("green", hold_s=30)
    fake_haproxy.commands.clear()
    assert haproxy.release_hold(dirs) == RoutingState("green")
    assert [c.split()[3] for c in fake_haproxy.commands if c.startswith("set ")] == ["color", "hold"]
    assert fake_haproxy.entries == {"color": "green", "hold": "off"} and haproxy.current(dirs) == RoutingState("green")


def test_route_to_a_color_with_no_server_up_changes_nothing(fake_haproxy: FakeHAProxy) -> None:
    dirs = _dirs(fake_haproxy)
    haproxy.write_state(dirs, RoutingState("blue"))
    fake_haproxy.statuses["green"] = "MAINT (resolution)"
    with pytest.raises(ProxyError, match="not routing to green, nothing changed: .* a server of green to be up"):
        haproxy.route(dirs, "green", ready_timeout_s=0.3)
    assert haproxy.current(dirs) == RoutingState("blue")
    assert not [c for c in fake_haproxy.commands if c.startswith("set ")]


def test_a_fresh_route_waits_for_a_check_made_after_it(fake_haproxy: FakeHAProxy) -> None:
    # green shows the "UP" of a container that has since been stopped and started again.
    dirs = _dirs(fake_haproxy)
    haproxy.write_state(dirs, RoutingState("blue"))
    with pytest.raises(ProxyError, match="not routing to green, nothing changed"):
        haproxy.route(dirs, "green", ready_timeout_s=0.3, fresh=True)
    assert "set server green/green1 health down" in fake_haproxy.commands
    assert haproxy.current(dirs) == RoutingState("blue")
    # The next passing check brings it up: then it routes.
    fake_haproxy.statuses["green"] = "UP"
    assert haproxy.route(dirs, "green", fresh=False) == RoutingState("green")
    # The color already serving is never taken down.
    fake_haproxy.commands.clear()
    assert haproxy.route(dirs, "green", fresh=True) == RoutingState("green")
    assert not [c for c in fake_haproxy.commands if c.startswith("set server")]


def test_route_without_a_running_proxy_changes_nothing(tmp_path: Path) -> None:
    dirs = ProxyDirs(tmp_path)
    haproxy.write_state(dirs, RoutingState("blue"))
    with pytest.raises(ProxyError, match="not routing to green, nothing changed: .*does not answer"):
        haproxy.route(dirs, "green", ready_timeout_s=0.3)
    assert haproxy.current(dirs) == RoutingState("blue")


def test_a_failed_apply_leaves_the_intent_on_disk_and_reapply_converges(fake_haproxy: FakeHAProxy) -> None:
    dirs = _dirs(fake_haproxy)
    haproxy.write_state(dirs, RoutingState("blue"))
    fake_haproxy.refuse_sets = True
    with pytest.raises(ProxyError, match="next start"):
        haproxy.hold(dirs, 9)
    assert haproxy.current(dirs) == RoutingState("blue", hold_s=9)
    assert haproxy.runtime_state(dirs) == RoutingState("blue")
    fake_haproxy.refuse_sets = False
    assert haproxy.reapply(dirs) == RoutingState("blue", hold_s=9) == haproxy.runtime_state(dirs)


def test_an_apply_the_proxy_does_not_keep_is_detected(fake_haproxy: FakeHAProxy) -> None:
    dirs = _dirs(fake_haproxy)
    haproxy.write_state(dirs, RoutingState("blue"))
    # The proxy acknowledges the change but its map still says blue (e.g. another map file).
    fake_haproxy.answers[f"set map {haproxy.STATE_IN_CONTAINER} color green"] = "\n"
    with pytest.raises(ProxyError, match="routes as"):
        haproxy.route(dirs, "green")


def test_in_flight_and_drain_read_the_backend_row(fake_haproxy: FakeHAProxy) -> None:
    dirs = _dirs(fake_haproxy)
    assert haproxy.in_flight(dirs, "blue") == 3
    assert haproxy.ready_servers(dirs, "blue") == ["blue1"]
    with pytest.raises(ProxyError, match="blue still has requests in flight"):
        haproxy.wait_drained(dirs, "blue", timeout_s=0.2)
    with pytest.raises(ProxyError, match="no backend"):
        haproxy.in_flight(dirs, "purple")


def test_operations_before_prepare_are_proxy_errors(tmp_path: Path) -> None:
    with pytest.raises(ProxyError, match="never prepared"):
        haproxy.hold(ProxyDirs(tmp_path), 5)
