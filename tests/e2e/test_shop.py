"""A Django app that is not the demo, deployed by configuration alone (tests/targets/shop/deploy.toml).

The shop brings its images as tags (built here as its CI would), reads its settings from
the environment (SECRET_KEY as a secret, one DATABASE_URL), answers its health URL in
plain text, runs a worker beside its web server, and has contrib apps whose post_migrate
handlers add rows. Nothing of deploygate is told about it but that file and a few
overrides that give the test its own names, ports and a deploy window open all day.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from deploygate import config, production
from deploygate.database import connect
from deploygate.gate_result import ERROR, FAILED, PASSED
from deploygate.platform import Platform, images
from deploygate.platform import connect as connect_platform
from deploygate.platform.images import Image
from deploygate.probe import Prober
from deploygate.proxy import Proxy
from deploygate.traffic import TrafficProbe, body_template
from deploygate.waiting import wait_until
from tests.e2e.conftest import ROOT, Deploygate
from tests.support import free_port, project_name
from tests.targets.build import SHOP, build_target

SHOP_CONFIG = ROOT / "tests" / "targets" / "shop" / "deploy.toml"
SECRET_ENV = "DGSHOP_SECRET_KEY"


@pytest.fixture(scope="module")
def shop_overrides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("shop")
    return {
        "project": project_name("dgshop"),
        "proxy_port": str(free_port()),
        "state_dir": str(state / "state"),
        "backup_dir": str(state / "backups"),
        "reports_dir": str(state / "reports"),
        "logs_dir": str(state / "logs"),
        # The team's own policy would say when; the test deploys now, twice within minutes.
        "deploy_window": "00:00-24:00",
        "min_hours_between_deploys": "0",
        "monitor_window_s": "10",
        "traffic_rate": "20",
    }


@pytest.fixture(scope="module")
def shop_environ() -> dict[str, str]:
    return {SECRET_ENV: secrets.token_urlsafe(32)}


@pytest.fixture(scope="module")
def shop_settings(shop_overrides: dict[str, str], shop_environ: dict[str, str]) -> config.Settings:
    return config.load(SHOP_CONFIG, environ=shop_environ, overrides=shop_overrides, root=ROOT)


@pytest.fixture(scope="module")
def shop_images(shop_settings: config.Settings) -> list[Image]:
    """dgshop:1 and dgshop:2, as the team's CI tags them (built offline here)."""
    platform = connect_platform(shop_settings, say=print)
    return [build_target(platform.client, shop_settings, SHOP, release, say=print) for release in (1, 2)]


@pytest.fixture(scope="module")
def shop(shop_images: list[Image], shop_settings: config.Settings, shop_overrides, shop_environ, monkeypatch_module) -> Iterator[Platform]:
    """The shop's production, from nothing; removed afterwards."""
    monkeypatch_module.setenv(SECRET_ENV, shop_environ[SECRET_ENV])  # the library resolves the secret from the environment
    platform = connect_platform(shop_settings, say=print)
    production.down(platform, shop_settings, volumes=True)
    yield platform
    production.down(platform, shop_settings, volumes=True)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def dgs(shop_overrides: dict[str, str], shop_environ: dict[str, str]) -> Deploygate:
    return Deploygate(shop_overrides, config_file=SHOP_CONFIG, environ=shop_environ)


def _thing_ids_present(platform: Platform, ids: list[int]) -> int:
    with connect(platform.database()) as conn:
        return conn.execute("SELECT count(*) FROM catalog_thing WHERE id = ANY(%s)", [ids]).fetchone()[0]


def _at_release(platform: Platform, settings: config.Settings, color: str) -> bool:
    state = platform.color(color)
    image = Image(tag=state.release, id=state.image_id, built=False)
    return Prober.configured(platform, settings, image, production.app_environment(platform, settings)).plan().at_release


def test_up_from_an_image_reference_with_a_worker_and_plain_text_health(dgs, shop, shop_settings) -> None:
    run = dgs.run("up")
    assert run.code == 0, run.output[-3000:]
    proxy = Proxy(shop_settings, shop)
    answer = requests.get(f"{proxy.url}/healthz", timeout=10)
    assert answer.status_code == 200 and answer.text.strip() == "ok" and answer.headers["Content-Type"].startswith("text/plain")
    blue = shop.color("blue")
    assert blue.release == "1" and blue.processes == {"worker": "running"}, blue
    status = dgs.run("status")
    assert status.code == 0 and "(no detail reported)" in status.output, status.output
    # No seed command is configured: `up` seeded nothing, and said nothing about seeding.
    assert "seeding" not in run.output
    assert dgs.run("up").code == 0, "a second up must change nothing and succeed"


def test_predeploy_of_release_2_has_no_false_failure(dgs, shop, shop_overrides, shop_environ) -> None:
    # The shop's users: their requests, recorded by the proxy, are what the replay checks replay.
    users = dgs.run("traffic", "--seconds", "6")
    assert users.code == 0, users.output[-2000:]
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "tests_pre",
        "-q",
        "-p",
        "no:cacheprovider",
        "--gate",
        "predeploy",
        "--candidate",
        "dgshop:2",
        "--dg-config",
        str(SHOP_CONFIG),
    ]
    for name, value in shop_overrides.items():
        argv += ["--dg-set", f"{name}={value}"]
    done = subprocess.run(argv, cwd=ROOT, env=dgs.env(), capture_output=True, text=True, timeout=900)
    reports = Path(shop_overrides["reports_dir"]) / "predeploy"
    result = json.loads(sorted(reports.glob("*.json"))[-1].read_text())
    table = "\n".join(f"  {c['outcome']:<14} {c['name']:<52} {c['value']}" for c in result["checks"])
    print(f"predeploy of dgshop:2:\n{table}")
    failed = [c for c in result["checks"] if c["outcome"] in (FAILED, ERROR)]
    assert done.returncode == 0 and not failed, f"{failed}\n{done.stdout[-3000:]}"
    assert {c["name"] for c in result["checks"] if c["outcome"] == "not reported"} == {
        "test_error_count_within_limit",
        "test_db_connections_in_range",  # a plain-text health URL tells neither
        "test_app_check[none]",  # the shop declares no checks of its own
        "test_candidate_reads_what_production_cached",  # nor a cache
        "test_production_reads_what_the_candidate_cached",
        "test_replay_candidate_on_schema_before",  # nor a replica the candidate could read the old schema from
    }, "only what the shop does not report is not reported"
    replayed = {c["name"]: c["value"] for c in result["checks"] if c["category"] == "replay" and c["outcome"] == PASSED}
    assert len(replayed) == 2 and all(value.startswith("0 of ") for value in replayed.values()), replayed
    # No difference means something only where the replay reproduces production: its baseline answers as production did.
    agreement = [
        re.search(r"the baseline answered (\d+) of (\d+) as production did", n) for n in result["notes"] if n.startswith("replay (")
    ]
    assert agreement and all(m and int(m.group(1)) >= 0.9 * int(m.group(2)) for m in agreement), result["notes"]
    print(f"shop release 2, replay of its own recorded requests: {replayed}; baseline as production: {agreement[0].group(0)}")


def test_release_2_deploys_under_traffic_then_a_forced_rollback_restores_release_1(dgs, shop, shop_settings) -> None:
    proxy = Proxy(shop_settings, shop)
    probe = TrafficProbe(
        proxy.url,
        rate_per_s=20,
        read_paths=["/api/things/", "/api/things/{id}/"],
        write_path="/api/things/",
        write_body=body_template(shop_settings.traffic_write_body),
        max_duration_s=900,
    ).start()
    try:
        deployed = dgs.run("deploy", "--candidate", "dgshop:2")
        assert deployed.code == 0, deployed.output[-3000:]
        green = shop.color("green")
        assert green.release == "2" and green.processes == {"worker": "running"}
        assert shop.color("blue").processes == {"worker": "exited"}, "release 1's worker must stop with it"
        assert _at_release(shop, shop_settings, "green")
        assert "post_proxy ok" in deployed.output
        back = dgs.run("rollback")
        assert back.code == 0, back.output[-3000:]
    finally:
        responses = probe.stop()
    failed = [r for r in responses if r.failed]
    created = [r.created_id for r in responses if r.created_id is not None]
    print(
        f"shop: {len(responses)} requests (keep-alive, 1 in 5 a POST) through deploy and rollback, {len(failed)} failed; "
        f"{len(created)} things written"
    )
    assert len(responses) > 100 and not failed, failed[:3]
    live = proxy.current()
    assert (live.color, live.release, live.hold) == ("blue", "1", False)
    assert shop.color("green") is None and shop.color("blue").processes == {"worker": "running"}
    assert _at_release(shop, shop_settings, "blue")
    assert _thing_ids_present(shop, created) == len(created), "a thing written during the deploy is gone"


@pytest.fixture(scope="module")
def existing_server(shop_settings: config.Settings) -> Iterator[dict[str, str]]:
    """A PostgreSQL 17 server deploygate did not create (the shop's managed one would be 15): on the
    host's network, listening on the Docker bridge's gateway, which this host and every container reach."""
    platform = connect_platform(shop_settings, say=print)
    client = platform.client
    image = images.postgres_image(client, shop_settings.replace(postgres_major=17), say=print)
    address = client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    port, password = free_port(), secrets.token_urlsafe(16)
    name = f"{project_name('dgshop')}_existing_pg17"
    stale = [c for c in client.containers.list(all=True, filters={"name": name})]
    for container in stale:
        container.remove(force=True, v=True)
    server = client.containers.run(
        image.tag,
        ["postgres", "-c", f"listen_addresses={address}", "-c", f"port={port}"],
        name=name,
        detach=True,
        network_mode="host",
        environment={"POSTGRES_USER": "shop", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "shop"},
        labels={"deploygate.test": "existing-server"},
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


def test_the_shop_on_an_existing_server_of_another_major(shop_images, shop_overrides, shop_environ, existing_server, tmp_path) -> None:
    overrides = {
        **shop_overrides,
        "project": project_name("dgshopx"),
        "proxy_port": str(free_port()),
        "state_dir": str(tmp_path / "state"),
        "backup_dir": str(tmp_path / "backups"),
        "reports_dir": str(tmp_path / "reports"),
        "logs_dir": str(tmp_path / "logs"),
        "db_host": existing_server["db_host"],
        "db_port": existing_server["db_port"],
    }
    environ = {**shop_environ, "DEPLOYGATE_DB_PASSWORD": existing_server["password"]}
    dgx = Deploygate(overrides, config_file=SHOP_CONFIG, environ=environ)
    settings = config.load(SHOP_CONFIG, environ=environ, overrides=overrides, root=ROOT)
    platform = connect_platform(settings, say=print)
    try:
        up = dgx.run("up")
        assert up.code == 0, up.output[-3000:]
        parts = platform.inventory()
        assert not [name for name in parts if name.endswith("_db")], f"deploygate created a database beside the existing one: {parts}"
        deployed = dgx.run("deploy", "--candidate", "dgshop:2")
        assert deployed.code == 0, deployed.output[-3000:]
        # The backup and the rehearsal copy are the server's own major version, not the configured 15.
        predeploy = json.loads(sorted((tmp_path / "reports" / "predeploy").glob("*.json"))[-1].read_text())
        major = next(c for c in predeploy["checks"] if c["name"] == "test_backup_uses_the_servers_major_version")
        # The server's superuser may replicate: backup.method auto takes a base backup, by the server's own client.
        assert major["outcome"] == "passed" and major["value"] == "pg_basebackup 17", major
        down = dgx.run("down", "--volumes")
        assert down.code == 0, down.output[-3000:]
        # Never removed, and its data intact: the shop's tables and the ledger are still there.
        with connect(platform.database()) as conn:
            assert conn.execute("SELECT count(*) FROM deploygate.ledger WHERE outcome = 'succeeded'").fetchone()[0] == 1
            assert conn.execute("SELECT to_regclass('catalog_review') IS NOT NULL").fetchone()[0]
    finally:
        production.down(platform, settings, volumes=True)
