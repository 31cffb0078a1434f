"""The second target, the shop, on its own: both release images work with plain Docker.

tests/targets/build.py builds ``dgshop:1`` and ``dgshop:2``; everything else here is the
docker SDK driven the way a person would by hand, configured from the shop's deploy.toml
(its environment, secret, database URL variable, port, health path, worker command and the
traffic probe's paths and body): Postgres, ``migrate`` in a one-off, web and worker
containers, then release 2's ``migrate`` under release 1's running web. No other
deploygate code path runs, so a failure here is the shop's, not deploygate's.

The rig (tests/targets/rig.py, project ``dgshop_plain`` plus this checkout's suffix) is
labelled and removed afterwards, even on failure.
"""

from __future__ import annotations

import json
import re
import secrets
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import pytest
import requests

from deploygate import config
from deploygate.platform import images
from deploygate.platform.docker_host import PROJECT_LABEL
from deploygate.platform.engine import ensure_engine
from deploygate.waiting import wait_until
from tests.support import project_name
from tests.targets.build import SHOP, build_target
from tests.targets.rig import Container, Rig, logs, plain_rig

PROJECT = project_name("dgshop_plain")


@pytest.fixture(scope="module", autouse=True)
def _remove_test_stack() -> None:
    """Overrides the package's autouse fixture of that name: this module never uses the ``dgtest``
    production, so it must not tear down one another run may be using."""


@pytest.fixture(scope="module")
def shop_config() -> dict[str, Any]:
    """The shop's deploy.toml, read as plain TOML (deploygate's loader is not under test here)."""
    return tomllib.loads((SHOP.directory / "deploy.toml").read_text())


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return ensure_engine(say=print)


@pytest.fixture(scope="module")
def shop_images(client: docker.DockerClient, settings: config.Settings) -> dict[int, images.Image]:
    """Both releases, built once (a warm run only finds their tags)."""
    return {release: build_target(client, settings, SHOP, release, print) for release in (1, 2)}


@pytest.fixture(scope="module")
def rig(
    client: docker.DockerClient, settings: config.Settings, shop_config: dict[str, Any], shop_images: dict[int, images.Image]
) -> Iterator[Rig]:
    """Postgres of deploy.toml's major version, its database and user, on the rig's network."""
    with plain_rig(client, settings, PROJECT, shop_config, {"DGSHOP_SECRET_KEY": secrets.token_urlsafe(40)}) as rig:
        yield rig


@dataclass
class Release1:
    """Release 1 migrated and running: its web's URL and its worker."""

    url: str
    worker: Container


@pytest.fixture(scope="module")
def release1(rig: Rig, shop_images: dict[int, images.Image]) -> Release1:
    code, output = rig.oneoff(shop_images[1], ["python", "manage.py", "migrate", "--no-input"])
    assert code == 0, f"release 1's migrate failed:\n{output}"
    return Release1(url=rig.start_web("web1", shop_images[1]), worker=rig.start_worker("worker1", shop_images[1]))


@pytest.fixture(scope="module")
def release2_url(rig: Rig, shop_images: dict[int, images.Image], release1: Release1) -> str:
    """Release 2's migrate applied while release 1 runs, then release 2's web started beside it."""
    code, output = rig.oneoff(shop_images[2], ["python", "manage.py", "migrate", "--no-input"])
    assert code == 0, f"release 2's migrate failed:\n{output}"
    assert "Applying catalog.0002_stock_and_reviews... OK" in output
    return rig.start_web("web2", shop_images[2])


def _post_thing(base_url: str, body: dict[str, Any]) -> int:
    answer = requests.post(base_url + "/api/things/", json=body, timeout=10)
    assert answer.status_code == 201, f"POST /api/things/ answered {answer.status_code}: {answer.text[:500]}"
    return answer.json()["id"]


def _get(base_url: str, path: str) -> dict[str, Any]:
    answer = requests.get(base_url + path, timeout=10)
    assert answer.status_code == 200, f"GET {path} answered {answer.status_code}: {answer.text[:500]}"
    return answer.json()


def _processed(base_url: str, thing_id: int) -> bool:
    return _get(base_url, f"/api/things/{thing_id}/")["processed_at"] is not None


# --- the images themselves -----------------------------------------------------------------------


@pytest.mark.parametrize("release", [1, 2])
def test_image_leaves_settings_and_health_to_the_deployment(
    client: docker.DockerClient, shop_images: dict[int, images.Image], release: int
) -> None:
    """No HEALTHCHECK and no DJANGO_SETTINGS_MODULE in the image; Python 3.13 and Django 6; makemigrations finds nothing.

    The one-off runs without a network: the settings must import with no database reachable.
    """
    attrs = client.images.get(shop_images[release].id).attrs["Config"]
    assert attrs.get("Healthcheck") is None
    assert not [var for var in attrs.get("Env") or [] if var.startswith("DJANGO_SETTINGS_MODULE=")]
    assert attrs["WorkingDir"] == "/app"
    script = (
        "import sys, django; print('versions', sys.version_info[:2], django.VERSION[0]);"
        "from django.core.management import call_command; call_command('makemigrations', '--check', '--dry-run')"
    )
    output = client.containers.run(
        shop_images[release].id,
        ["python", "-c", f"import django; django.setup(); {script}"],
        environment={"DJANGO_SETTINGS_MODULE": "shop.settings", "SECRET_KEY": "x", "DATABASE_URL": "postgres://u:p@nowhere/db"},
        network_mode="none",
        labels={PROJECT_LABEL: PROJECT},
        remove=True,
        stderr=True,
    ).decode()
    assert "versions (3, 13) 6" in output
    assert "No changes detected" in output, f"release {release}'s models differ from its migrations:\n{output}"


def test_settings_refuse_to_start_without_secret_key(rig: Rig, shop_images: dict[int, images.Image]) -> None:
    """SECRET_KEY has no default: `manage.py check` fails naming it."""
    environment = {name: value for name, value in rig.environment.items() if name != "SECRET_KEY"}
    code, output = rig.oneoff(shop_images[1], ["python", "manage.py", "check"], environment)
    assert code != 0 and "SECRET_KEY must be set in the environment" in output, output


# --- release 1 running -----------------------------------------------------------------------------


def test_health_is_plain_text_ok(rig: Rig, release1: Release1) -> None:
    answer = requests.get(release1.url + rig.app["health_path"], timeout=10)
    assert (answer.status_code, answer.text) == (200, "ok")
    assert answer.headers["Content-Type"].startswith("text/plain")


def test_api_creates_lists_and_reads_a_thing(release1: Release1) -> None:
    body = {"name": "lamp", "address": "192.0.2.44", "tags": ["light", "desk"], "data": {"watts": 40}, "supplier": "Acme"}
    older = _post_thing(release1.url, {**body, "name": "older lamp"})
    thing_id = _post_thing(release1.url, body)
    thing = _get(release1.url, f"/api/things/{thing_id}/")
    assert {key: thing[key] for key in body} == body
    newest = [item["id"] for item in _get(release1.url, "/api/things/")["things"]]
    assert newest.index(thing_id) < newest.index(older)
    invalid = requests.post(release1.url + "/api/things/", json={**body, "address": "not an address"}, timeout=10)
    assert invalid.status_code == 400 and "address" in invalid.json()["errors"]
    assert requests.get(release1.url + "/api/things/999999999/", timeout=10).status_code == 404


def test_list_is_limited_to_twenty(release1: Release1) -> None:
    for n in range(21):
        _post_thing(release1.url, {"name": f"bulk {n}", "address": "192.0.2.1"})
    assert len(_get(release1.url, "/api/things/")["things"]) == 20


def test_traffic_probe_paths_work(rig: Rig, shop_config: dict[str, Any], release1: Release1) -> None:
    """deploy.toml's probe body is accepted and every read path answers 200 with the id a write returned."""
    probe = shop_config["deploy"]
    thing_id = _post_thing(release1.url, json.loads(probe["traffic_write_body"].replace("{n}", "7")))
    assert probe["traffic_write_path"] == "/api/things/"
    for path in probe["traffic_read_paths"].split(","):
        _get(release1.url, path.strip().replace("{id}", str(thing_id)))


def test_worker_processes_the_queue(release1: Release1) -> None:
    thing_id = _post_thing(release1.url, {"name": "parcel", "address": "2001:db8::1"})
    wait_until(lambda: _processed(release1.url, thing_id), timeout=30, what=f"thing {thing_id} to be processed")
    assert re.search(r"pass: processed [1-9]\d* thing\(s\)", logs(release1.worker))


def test_worker_stops_cleanly_on_sigterm(rig: Rig, shop_images: dict[int, images.Image], release1: Release1) -> None:
    """`docker stop` sends SIGTERM: the worker ends its loop and exits 0 well before the engine would kill it."""
    worker = rig.start_worker("worker_stop", shop_images[1])
    worker.stop(timeout=20)
    assert worker.wait(timeout=30)["StatusCode"] == 0, logs(worker)[-1000:]
    assert "worker stopped by signal" in logs(worker)


# --- release 2 migrated under release 1 ------------------------------------------------------------


def test_release_1_works_on_release_2_schema(release1: Release1, release2_url: str) -> None:
    """Release 1 reads and writes on the migrated schema; its rows get the new column's database default."""
    thing_id = _post_thing(release1.url, {"name": "old code", "address": "192.0.2.2", "tags": ["v1"]})
    assert _get(release1.url, f"/api/things/{thing_id}/")["name"] == "old code"
    assert thing_id in [item["id"] for item in _get(release1.url, "/api/things/")["things"]]
    assert _get(release2_url, f"/api/things/{thing_id}/")["stock"] == 0


def test_release_2_serves_its_new_field(release1: Release1, release2_url: str) -> None:
    """Release 2 writes and reads ``stock`` and counts reviews; release 1's worker processes its rows."""
    thing_id = _post_thing(release2_url, {"name": "new code", "address": "2001:db8::2", "stock": 5})
    thing = _get(release2_url, f"/api/things/{thing_id}/")
    assert (thing["stock"], thing["reviews"]) == (5, 0)
    assert _get(release2_url, "/api/things/")["things"][0]["id"] == thing_id
    assert "stock" not in _get(release1.url, f"/api/things/{thing_id}/")
    wait_until(lambda: _processed(release2_url, thing_id), timeout=30, what=f"thing {thing_id} to be processed by release 1's worker")


def test_release_2_migration_reverses(rig: Rig, shop_images: dict[int, images.Image], release1: Release1, release2_url: str) -> None:
    """What a rollback does: release 2's image migrates back to 0001 and release 1 works there; then forward again."""
    code, output = rig.oneoff(shop_images[2], ["python", "manage.py", "migrate", "catalog", "0001", "--no-input"])
    assert code == 0 and "Unapplying catalog.0002_stock_and_reviews... OK" in output, output
    thing_id = _post_thing(release1.url, {"name": "after rollback", "address": "192.0.2.3"})
    assert _get(release1.url, f"/api/things/{thing_id}/")["name"] == "after rollback"
    code, output = rig.oneoff(shop_images[2], ["python", "manage.py", "migrate", "--no-input"])
    assert code == 0, output


# --- the database failing (last: it stops Postgres, and starts it again) ---------------------------


def test_health_is_503_while_the_database_is_down(rig: Rig, release1: Release1) -> None:
    health = release1.url + rig.app["health_path"]
    rig.db.stop(timeout=20)
    try:
        answer = requests.get(health, timeout=20)
        assert answer.status_code == 503 and answer.headers["Content-Type"].startswith("text/plain"), answer.text
    finally:
        rig.db.start()
        rig.wait_db_ready()
    wait_until(lambda: requests.get(health, timeout=10).status_code == 200, timeout=30, what="health to recover with the database")
