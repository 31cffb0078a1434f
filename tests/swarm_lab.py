"""A Docker Swarm of N nodes on this one machine, for the swarm tests: built in seconds, removed entirely.

Each node is a network namespace with its own dockerd (own --data-root, --exec-root, unix
socket, pidfile, cgroup parent and hostname). A bridge lives in a namespace of its own with
a veth to every node and one to the host, so the host reaches each node's address (its
published proxy port, the database's) and the nodes reach each other (swarm's 2377/7946 and
the overlay's VXLAN). The host's own engine is never touched: putting the shared engine
into swarm mode, or leaving it, breaks container DNS for every stack on it.

Facts this relies on (measured on this kind of machine): ``ip netns exec`` remounts /sys,
so the cgroup hierarchies are mounted again before dockerd starts in it; the kernel has no
IPVS, so the tests' services use DNS round-robin behind deploygate's proxy.

Runs as root. ``python -m tests.swarm_lab up|down`` keeps one up by hand for development.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from tests.support import SUFFIX_ENV

# The underlay (node addresses) and the pool swarm carves overlay subnets from; neither is
# in the address pools of the host's engine (172.17-31/16, 192.168/16), so nothing collides.
UNDERLAY = "10.213.0"
OVERLAY_POOL = "10.214.0.0/16"
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 30


class LabError(RuntimeError):
    """The lab could not be built (one line: the step and what it printed)."""


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True)


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(fstype, mount point, options) of the host's cgroup hierarchies, to mount again inside a node."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _device, point, fstype, options, *_ = line.split()
        if point.startswith("/sys/fs/cgroup") and fstype in ("tmpfs", "cgroup", "cgroup2"):
            found.append((fstype, point, options))
    return found


def _remount_cgroups_script() -> str:
    """Shell lines that put the host's cgroup mounts back under the fresh /sys of ``ip netns exec``."""
    lines = []
    for fstype, point, options in _cgroup_mounts():
        lines.append(f"mkdir -p {point} && mount -t {fstype} -o {options} {fstype} {point}")
    return " && ".join(lines) or "true"


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


@dataclass
class Node:
    """One node: its namespace, its engine's files and process, its address on the underlay."""

    index: int
    namespace: str
    hostname: str
    address: str
    root: Path
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.namespace}"

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.endpoint, timeout=timeout)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def memory_kib(self) -> dict[str, int]:
        """Resident memory of this node, KiB: its engine (dockerd + containerd), and that plus its containers and their shims."""
        if not self.running():
            return {"engine": 0, "total": 0}
        engine = [p for p in _descendants(self.process.pid, _children()) if _comm(p) in ("dockerd", "containerd")]
        # Containers live in the node's cgroup parent; their shims name its exec root on their command line.
        others = [p for p in _pids() if p not in engine and (self.cgroup_parent + "/" in _cgroups(p) or str(self.root) in _cmdline(p))]
        used = sum(map(_rss_kib, engine))
        return {"engine": used, "total": used + sum(map(_rss_kib, others))}


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cgroups(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class SwarmLab:
    """``nodes`` dockerds in network namespaces joined into one swarm (node 1 its only manager)."""

    root: Path
    name: str = "dgsw"
    size: int = 2
    nodes: list[Node] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_tests(cls, root: Path) -> SwarmLab:
        """A lab whose names carry this checkout's suffix (DGTEST_SUFFIX), as the other tiers' projects do."""
        suffix = os.environ.get(SUFFIX_ENV, "").strip("_-")
        return cls(root=root, name=f"dgsw{suffix}")

    def __post_init__(self) -> None:
        # Interface names are at most 15 characters: the name is kept short.
        if len(self.name) > 10 or not self.name.replace("_", "").isalnum():
            raise LabError(f"a lab name is at most 10 letters/digits, got {self.name!r}")
        self.nodes = [
            Node(
                index=i,
                namespace=f"{self.name}_n{i}",
                hostname=f"{self.name.replace('_', '-')}-n{i}",
                address=f"{UNDERLAY}.{10 + i}",
                root=self.root / f"n{i}",
            )
            for i in range(1, self.size + 1)
        ]

    @property
    def bridge_namespace(self) -> str:
        return f"{self.name}_br"

    @property
    def host_veth(self) -> str:
        return f"{self.name}_h"

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def host_address(self) -> str:
        """This host's address on the underlay: every node, and every container of a node, reaches it."""
        return f"{UNDERLAY}.1"

    # --- build --------------------------------------------------------------------------------------

    def up(self) -> SwarmLab:
        """Build the network, start every engine, form the swarm. On any failure everything built is removed."""
        try:
            self.down()  # what a killed run left behind
            started = time.monotonic()
            self._network()
            self.timings["network_s"] = time.monotonic() - started
            mark = time.monotonic()
            for node in self.nodes:
                self._start_engine(node)
            for node in self.nodes:
                self._wait_engine(node)
            self.timings["engines_s"] = time.monotonic() - mark
            mark = time.monotonic()
            self._form_swarm()
            self.timings["swarm_s"] = time.monotonic() - mark
            self.timings["total_s"] = time.monotonic() - started
        except BaseException:
            self.down()
            raise
        return self

    def _network(self) -> None:
        if f"{UNDERLAY}.0/24" in _run(["ip", "route"]):
            raise LabError(f"{UNDERLAY}.0/24 is routed on this host already (another lab?)")
        br = self.bridge_namespace
        _run(["ip", "netns", "add", br])
        _run(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", br, "link", "set", "br0", "up"])
        _run(["ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", "host", "netns", br])
        _run(["ip", "addr", "add", f"{UNDERLAY}.1/24", "dev", self.host_veth])
        _run(["ip", "link", "set", self.host_veth, "up"])
        _run(["ip", "-n", br, "link", "set", "host", "master", "br0", "up"])
        for node in self.nodes:
            ns = node.namespace
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"n{node.index}", "netns", br])
            _run(["ip", "-n", br, "link", "set", f"n{node.index}", "master", "br0", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{node.address}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # No default route on purpose: nothing in the lab can reach beyond this machine.

    def _start_engine(self, node: Node) -> None:
        for sub in ("data", "exec"):
            (node.root / sub).mkdir(parents=True, exist_ok=True)
        dockerd = [
            "dockerd",
            "--data-root",
            str(node.root / "data"),
            "--exec-root",
            str(node.root / "exec"),
            "-H",
            node.endpoint,
            "--pidfile",
            str(node.root / "docker.pid"),
            "--cgroup-parent",
            node.cgroup_parent,
            # No docker0: everything of the lab runs on overlay networks (swarm adds docker_gwbridge).
            # No userland proxy: published ports are iptables rules only, as on the host's engine.
            "--bridge=none",
            "--userland-proxy=false",
            "--log-level=warn",
        ]
        script = f"hostname {node.hostname} && {_remount_cgroups_script()} && exec {shlex.join(dockerd)}"
        with node.log.open("ab") as log:
            # unshare --uts: the node's own hostname, which swarm reports ({{.Node.Hostname}}).
            node.process = subprocess.Popen(
                ["ip", "netns", "exec", node.namespace, "unshare", "--uts", "sh", "-c", script],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _wait_engine(self, node: Node) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not node.running():
                raise LabError(f"dockerd of {node.hostname} exited {node.process.returncode}: {self._last_log(node)}")
            try:
                node.client(timeout=5).ping()
                return
            except (docker.errors.DockerException, OSError):
                time.sleep(0.2)
        raise LabError(f"dockerd of {node.hostname} did not answer within {_START_TIMEOUT_S}s: {self._last_log(node)}")

    @staticmethod
    def _last_log(node: Node) -> str:
        try:
            lines = [line for line in node.log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log"
        return lines[-1][-300:] if lines else "no log"

    def _form_swarm(self) -> None:
        manager = self.manager.client()
        manager.swarm.init(
            advertise_addr=self.manager.address,
            listen_addr=f"{self.manager.address}:2377",
            default_addr_pool=[OVERLAY_POOL],
            subnet_size=24,
        )
        token = manager.swarm.attrs["JoinTokens"]["Worker"]
        for node in self.nodes[1:]:
            node.client().swarm.join(
                remote_addrs=[f"{self.manager.address}:2377"],
                join_token=token,
                advertise_addr=node.address,
                listen_addr=f"{node.address}:2377",
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while len([n for n in manager.nodes.list() if n.attrs["Status"]["State"] == "ready"]) < self.size:
            if time.monotonic() > deadline:
                raise LabError(f"not every node of the swarm became ready within {_START_TIMEOUT_S}s")
            time.sleep(0.2)

    # --- use ----------------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [node.endpoint for node in self.nodes]

    def memory_mib(self) -> dict[str, float]:
        """Resident memory per node (engine, and engine plus what it runs), MiB."""
        result = {}
        for node in self.nodes:
            kib = node.memory_kib()
            result[f"{node.hostname} engine"] = round(kib["engine"] / 1024, 1)
            result[f"{node.hostname} total"] = round(kib["total"] / 1024, 1)
        return result

    def stop_engine(self, node: Node) -> None:
        """Stop one node's engine as an operator (or a crash of the daemon) would: SIGTERM, then SIGKILL."""
        if node.running():
            node.process.send_signal(signal.SIGTERM)
            try:
                node.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=10)

    # --- removal ------------------------------------------------------------------------------------

    def down(self) -> None:
        """Remove everything of this lab (also a crashed run's leftovers): engines, namespaces, cgroups, files.

        Never raises for what is already gone; runs every step even when one fails.
        """
        for node in self.nodes:
            self.stop_engine(node)
            self._kill_leftovers(node)
        for ns in [node.namespace for node in self.nodes] + [self.bridge_namespace]:
            _quiet(["ip", "netns", "del", ns])
        _quiet(["ip", "link", "del", self.host_veth])
        for node in self.nodes:
            self._remove_cgroups(node)
            # Only once no process of the node is left: its mounts lived in its own mount namespace.
            _quiet(["rm", "-rf", "--one-file-system", str(node.root)])

    def _kill_leftovers(self, node: Node) -> None:
        """Processes of the node that outlived its dockerd (a killed run): its engine's and its containers'."""
        marker, tree = str(node.root), _children()
        doomed: set[int] = set()
        for pid in _pids():
            argv, cgroups = _cmdline(pid).split(), _cgroups(pid)
            # A dockerd of this node, even one a killed run started under another root, with everything it started.
            if any(a == "--cgroup-parent" and b == node.cgroup_parent for a, b in zip(argv, argv[1:], strict=False)):
                doomed.update(_descendants(pid, tree))
            if marker in " ".join(argv) or f":{node.cgroup_parent}/" in cgroups or cgroups.rstrip().endswith(f":{node.cgroup_parent}"):
                doomed.add(pid)
        for pid in doomed - {os.getpid()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)

    @staticmethod
    def _remove_cgroups(node: Node) -> None:
        for _fstype, point, _options in _cgroup_mounts():
            top = Path(point) / node.cgroup_parent.lstrip("/")
            if top.is_dir():
                # Deepest first: a cgroup directory is removed with rmdir once it holds no process.
                for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                    _quiet(["rmdir", str(path)])
                _quiet(["rmdir", str(top)])


def main(argv: list[str]) -> int:
    """``up`` or ``down`` a lab under /tmp/deploygate-swarm-lab (for development; the tests use their own)."""
    lab = SwarmLab.for_tests(Path("/tmp/deploygate-swarm-lab"))
    if argv[1:] == ["up"]:
        lab.up()
        for node in lab.nodes:
            print(f"{node.hostname} {node.address} {node.endpoint}")
        print(f"set up in {lab.timings['total_s']:.1f}s; memory {lab.memory_mib()}")
        # The engines run in sessions of their own and outlive this process: `down` removes them.
        return 0
    if argv[1:] == ["down"]:
        lab.down()
        return 0
    print("usage: python -m tests.swarm_lab up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
