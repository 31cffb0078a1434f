"""End-to-end on a Docker Swarm: a 2-node swarm built for this run (``tests.swarm_lab``), production on it, removed afterwards.

The deploy, its gates and the rollback are the same code as on a single host; only the
configuration says ``platform = "swarm"``. Traffic goes through both nodes' proxies, so
requests are counted per node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from deploygate import config, production
from deploygate.platform import Platform
from deploygate.platform import connect as connect_platform
from deploygate.proxy import Proxy
from deploygate.traffic import TrafficProbe, body_template
from tests.e2e.conftest import ROOT, CliRun, Deploygate, assert_back_on_v1, assert_converged  # noqa: F401 - fixtures reused as they are
from tests.support import mark_integration, project_name
from tests.swarm_lab import SwarmLab

SWARM_PROJECT = project_name("dgsw")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_integration(items, "e2e_swarm")
    for item in items:
        if "tests/e2e_swarm/" in item.nodeid:
            item.add_marker(pytest.mark.swarm)


def _say(pytestconfig: pytest.Config, line: str) -> None:
    """A line on the terminal even when output is captured: the harness's figures belong in every run's log."""
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n{line}", flush=True)


@pytest.fixture(scope="package")
def swarm_lab(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmLab]:
    """Two nodes in network namespaces, each with its own dockerd, joined into a swarm; all of it removed afterwards.

    Package-scoped, as every fixture of this tier: the lab is gone once its last test has run,
    not at the end of the whole session (2 cores are shared with the tiers that follow).
    """
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("dockerd") and shutil.which("unshare")):
        pytest.skip("the swarm lab needs root, iproute2, unshare and dockerd")
    lab = SwarmLab.for_tests(tmp_path_factory.mktemp("swarm", numbered=True))
    lab.up()
    try:
        _say(
            pytestconfig,
            f"swarm lab: {lab.size} nodes set up in {lab.timings['total_s']:.1f}s "
            f"(network {lab.timings['network_s']:.1f}s, engines {lab.timings['engines_s']:.1f}s, swarm {lab.timings['swarm_s']:.1f}s); "
            f"memory {lab.memory_mib()} MiB",
        )
        yield lab
    finally:
        _say(pytestconfig, f"swarm lab at the end: memory {lab.memory_mib()} MiB")
        lab.down()


@pytest.fixture(scope="package")
def swarm_overrides(swarm_lab: SwarmLab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("e2e_swarm")
    return {
        "project": SWARM_PROJECT,
        "platform": "swarm",
        "swarm_manager": swarm_lab.manager.endpoint,
        "swarm_nodes": ",".join(swarm_lab.endpoints),
        "replicas": "2",
        "db_standbys": "0",  # deploy.toml's standby is for a single host; a swarm's replicas are the team's
        "cache_service": "none",  # likewise its Redis: a swarm is given the team's own as cache.url
        # Each node has its own network namespace: the port is free on every one of them.
        "proxy_port": "18080",
        "state_dir": str(state / "state"),
        "backup_dir": str(state / "backups"),
        "reports_dir": str(state / "reports"),
        "logs_dir": str(state / "logs"),
        "seed_rows": "5000",
        "seed_members": "200",
        "monitor_window_s": "10",
        "health_timeout": "60",
        "traffic_rate": "10",
        "min_hours_between_deploys": "0",
        "max_error_rate_pct": "100",
        # Every replica holds its own connections (2 replicas, each gunicorn's workers): the range scales with them.
        "db_connections_max": "40",
        # Retention prunes the local engine too, which other tiers share: keep their images.
        "keep_releases": "100",
        # Recorded by each node's proxy, not replayed: the replay's own tests run on a single host (tests/e2e/test_replay.py).
        "replay_max_requests": "0",
    }


@pytest.fixture(scope="package")
def settings(pytestconfig: pytest.Config, swarm_overrides: dict[str, str]) -> config.Settings:
    return config.load(root=pytestconfig.rootpath, environ={}, overrides=swarm_overrides)


@pytest.fixture(scope="package")
def platform(settings: config.Settings) -> Platform:
    return connect_platform(settings, say=print)


@pytest.fixture(scope="package")
def e2e_stack(pytestconfig: pytest.Config, swarm_lab: SwarmLab, platform: Platform, settings: config.Settings) -> Iterator[config.Settings]:
    """Production at v1 on blue (2 replicas), a proxy on each node; removed afterwards."""
    started = time.monotonic()
    report = production.up(platform, settings, say=lambda message: None)
    _say(
        pytestconfig,
        f"swarm production up in {time.monotonic() - started:.1f}s (images copied to the nodes included): "
        f"{', '.join(report.changes)}; memory {swarm_lab.memory_mib()} MiB",
    )
    try:
        yield settings
    finally:
        production.down(platform, settings, volumes=True)


@pytest.fixture(scope="package")
def proxy(platform: Platform, e2e_stack: config.Settings) -> Proxy:
    return Proxy(e2e_stack, platform)


@pytest.fixture(scope="package")
def dg(e2e_stack: config.Settings, swarm_overrides: dict[str, str]) -> Deploygate:
    return Deploygate(swarm_overrides)


@pytest.fixture
def nox_rollback(swarm_overrides: dict[str, str]):
    """``nox -s rollback`` as a user types it, with this run's settings after ``--``."""

    def run() -> CliRun:
        sets = [arg for name, value in swarm_overrides.items() for arg in ("--set", f"{name}={value}")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYGATE_")}
        done = subprocess.run(
            [sys.executable, "-m", "nox", "-s", "rollback", "--", *sets], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        return CliRun(done.returncode, done.stdout + done.stderr)

    return run


@pytest.fixture
def traffic(e2e_stack: config.Settings, proxy: Proxy) -> Iterator[dict[str, TrafficProbe]]:
    """Steady reads and writes through EACH node's proxy (node address -> its probe), independent of the deploy."""
    probes = {
        url: TrafficProbe(
            url,
            rate_per_s=10,
            read_paths=["/api/links/?page_size=20", "/api/links/{id}/"],
            write_path="/api/links/",
            write_body=body_template(e2e_stack.traffic_write_body),
            max_duration_s=900,
        ).start()
        for url in proxy.urls
    }
    yield probes
    for probe in probes.values():
        probe.stop()
