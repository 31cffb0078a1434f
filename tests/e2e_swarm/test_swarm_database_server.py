"""Production on the swarm with an existing PostgreSQL server (``database.host``) that deploygate did not create.

A second production (its own project name and proxy port) on the package's lab: the server is a
container of the host's engine on the host's network, listening on the host's underlay address,
which deploygate on the host, the local engine's containers and every node's tasks all reach.

Named to run before test_swarm_deploy.py, whose last test stops a node's engine for good: traffic
here goes through both nodes' proxies.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import docker
import pytest
import requests

from deploygate import config, production
from deploygate.database import connect
from deploygate.platform import connect as connect_platform
from deploygate.platform import images
from deploygate.proxy import COLOR_HEADER, Proxy
from deploygate.traffic import TrafficProbe, body_template
from deploygate.waiting import wait_until
from tests.e2e.conftest import ROOT, Deploygate
from tests.support import free_port, project_name
from tests.swarm_lab import SwarmLab


@pytest.fixture(scope="module")
def existing_server(swarm_lab: SwarmLab, settings: config.Settings) -> Iterator[dict[str, str]]:
    """A PostgreSQL server outside any deploygate project, on the host's underlay address; removed afterwards."""
    client = docker.from_env()
    image = images.postgres_image(client, settings, say=lambda message: None)
    address, port, password = swarm_lab.host_address, free_port(), secrets.token_urlsafe(16)
    name = f"{project_name('dgswx')}_existing_pg"
    for stale in client.containers.list(all=True, filters={"name": name}):
        stale.remove(force=True, v=True)
    server = client.containers.run(
        image.tag,
        ["postgres", "-c", f"listen_addresses={address}", "-c", f"port={port}"],
        name=name,
        detach=True,
        network_mode="host",
        labels={"deploygate.test": "existing-server"},
        environment={"POSTGRES_USER": settings.db_user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": settings.db_name},
    )
    try:
        wait_until(
            lambda: server.exec_run(["pg_isready", "-q", "-h", address, "-p", str(port)])[0] == 0,
            timeout=60,
            what="the existing server to accept connections",
        )
        yield {"db_host": address, "db_port": str(port), "password": password, "container": name}
    finally:
        server.remove(force=True, v=True)


def _probes(settings: config.Settings, proxy: Proxy) -> dict[str, TrafficProbe]:
    return {
        url: TrafficProbe(
            url,
            rate_per_s=10,
            read_paths=["/api/links/?page_size=20", "/api/links/{id}/"],
            write_path="/api/links/",
            write_body=body_template(settings.traffic_write_body),
            max_duration_s=900,
        ).start()
        for url in proxy.urls
    }


def test_deploy_and_rollback_on_an_existing_server(swarm_overrides, existing_server, tmp_path) -> None:
    overrides = {
        **swarm_overrides,
        "project": project_name("dgswx"),
        "proxy_port": "18081",
        "state_dir": str(tmp_path / "state"),
        "backup_dir": str(tmp_path / "backups"),
        "reports_dir": str(tmp_path / "reports"),
        "logs_dir": str(tmp_path / "logs"),
        "db_host": existing_server["db_host"],
        "db_port": existing_server["db_port"],
    }
    environ = {"DEPLOYGATE_DB_PASSWORD": existing_server["password"]}
    dgx = Deploygate(overrides, environ=environ)
    settings = config.load(root=ROOT, environ=environ, overrides=overrides)
    platform = connect_platform(settings, say=print)
    probes: dict[str, TrafficProbe] = {}
    try:
        up = dgx.run("up")
        assert up.code == 0, up.output[-3000:]
        parts = platform.inventory()
        assert not [name for name in parts if name.endswith("_db")], f"deploygate created a database beside the existing one: {parts}"
        proxy = Proxy(settings, platform)
        probes = _probes(settings, proxy)
        started = time.monotonic()
        deployed = dgx.run("deploy", "--candidate", "v2-safe")
        deploy_s = time.monotonic() - started
        assert deployed.code == 0, deployed.output[-3000:]
        for url in proxy.urls:
            assert requests.get(f"{url}/health/", timeout=10).headers.get(COLOR_HEADER) == "green", url
        started = time.monotonic()
        back = dgx.run("rollback")
        rollback_s = time.monotonic() - started
        assert back.code == 0, back.output[-3000:]
        counts, created = {}, []
        for url, probe in probes.items():
            responses = probe.stop()
            failed = [r for r in responses if r.failed]
            assert len(responses) > 30 and not failed, f"{len(failed)} of {len(responses)} failed through {url}, e.g. {failed[:1]}"
            counts[url] = f"{len(responses)} requests, {len(failed)} failed"
            created += [r.created_id for r in responses if r.created_id is not None]
        print(
            f"existing server {existing_server['db_host']}:{existing_server['db_port']}: deploy of v2-safe {deploy_s:.1f}s, "
            f"rollback {rollback_s:.1f}s; {counts}; {len(created)} rows written"
        )
        # v1 is back on blue with its schema, and every row written through deploy and rollback is kept.
        live = proxy.current()
        assert live is not None and (live.color, live.release, live.hold) == ("blue", "v1", False), live
        assert platform.color("green") is None
        with connect(platform.database()) as conn:
            columns = {
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'unified_db_personlink'"
                ).fetchall()
            }
            assert "fahanie_cares_member_id" in columns and "bm_parliament_member_id" not in columns
            found = conn.execute("SELECT count(*) FROM unified_db_personlink WHERE id = ANY(%s)", [created]).fetchone()[0]
            assert found == len(set(created)), f"{len(set(created)) - found} rows written during the deploy are gone"
        down = dgx.run("down", "--volumes")
        assert down.code == 0, down.output[-3000:]
        # The server is never removed, its data intact: the app's rows and the ledger are still there.
        with connect(platform.database()) as conn:
            assert conn.execute("SELECT count(*) FROM deploygate.ledger WHERE kind = 'deploy' AND outcome = 'succeeded'").fetchone()[0] >= 1
            found = conn.execute("SELECT count(*) FROM unified_db_personlink WHERE id = ANY(%s)", [created]).fetchone()[0]
            assert found == len(set(created))
    finally:
        for probe in probes.values():
            probe.stop()
        production.down(platform, settings, volumes=True)
