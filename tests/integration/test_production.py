"""The embedded production, asserted through its proxy: what every gate will stand on."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from deploygate import production as prod
from deploygate.database import table_count
from deploygate.errors import StackError
from deploygate.platform.images import Image
from deploygate.waiting import wait_until
from fixtures.stack import Production
from tests.integration.conftest import TEST_SEED_ROWS


def test_v1_is_healthy_through_the_proxy(production: Production) -> None:
    response = requests.get(f"{production.url}/health/detailed/", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["release"]["name"] == "v1"
    assert body["migrations"]["pending"] == 0
    assert body["database"]["connections"] >= 1
    assert response.headers["X-Deploygate-Color"] == "blue"


def test_person_link_count_equals_the_seed_size(production: Production) -> None:
    assert table_count(production.db, "unified_db_personlink") == TEST_SEED_ROWS


def test_created_link_is_readable_back_and_logged_per_color(production: Production) -> None:
    started = time.time()
    member_id = requests.get(f"{production.url}/api/links/?page_size=50", timeout=10).json()["results"]
    member_id = next(item["member"]["id"] for item in member_id if item["member"])
    email = f"probe-{uuid.uuid4().hex[:8]}@example.test"
    created = requests.post(
        f"{production.url}/api/links/", json={"full_name": "Probe Person", "email": email, "member_id": member_id}, timeout=10
    )
    assert created.status_code == 201, created.text
    link_id = created.json()["id"]
    detail = requests.get(f"{production.url}/api/links/{link_id}/", timeout=10)
    assert detail.status_code == 200
    assert detail.json()["email"] == email
    assert detail.json()["member"]["id"] == member_id

    def logged() -> list:
        return [r for r in production.proxy.records(since=started - 1) if r.uri == f"/api/links/{link_id}/"]

    records = wait_until(logged, timeout=10, what="the detail request in the proxy's access log")
    assert records[0].color == "blue" and records[0].status == 200


def test_up_again_changes_nothing(production: Production) -> None:
    report = prod.up(production.platform, production.settings, say=lambda message: None)
    assert report.changes == []


def test_status_names_the_live_release(production: Production) -> None:
    current = prod.status(production.platform, production.settings)
    assert current.live is not None and (current.live.color, current.live.release) == ("blue", "v1")
    assert current.health.ok and current.health.detail["status"] == "healthy"
    assert current.parts[production.platform.color_name("blue")].startswith("healthy")


@pytest.fixture
def green_of(production: Production) -> Iterator:
    """Start a release as the (unrouted) green color against the un-migrated v1 schema."""
    platform = production.platform

    def start(release: str) -> str:
        image = platform.resolve_image(release, say=lambda message: None)
        state = platform.start_color("green", image, prod.app_environment(platform, production.settings))
        base = state.urls(production.settings.app_port)[0]
        # any status will do: a 503 is an answer
        wait_until(lambda: requests.get(f"{base}/health/", timeout=5).status_code, timeout=60, what=f"{release} to answer HTTP")
        return base

    yield start
    platform.remove_color("green")


def test_v2_fails_against_the_v1_schema(green_of) -> None:
    base = green_of("v2")
    health = requests.get(f"{base}/health/", timeout=10)
    assert health.status_code == 503
    # the renamed table (RenameModel) or column (RenameField) is what v2 cannot find
    assert "does not exist" in health.json()["error"]
    assert "bmparliamentmember" in health.json()["error"] or "bm_parliament_member" in health.json()["error"]
    assert requests.get(f"{base}/api/links/", timeout=10).status_code == 500


def test_v2_safe_works_against_the_v1_schema(green_of, production: Production) -> None:
    base = green_of("v2-safe")
    assert requests.get(f"{base}/health/", timeout=10).status_code == 200
    assert requests.get(f"{base}/api/links/", timeout=10).status_code == 200
    created = requests.post(f"{base}/api/links/", json={"full_name": "Written By Green", "email": "g@example.test"}, timeout=10)
    assert created.status_code == 201, created.text
    # what v2-safe wrote, v1 (still live behind the proxy) reads back
    read_back = requests.get(f"{production.url}/api/links/{created.json()['id']}/", timeout=10)
    assert read_back.status_code == 200 and read_back.json()["full_name"] == "Written By Green"


@pytest.fixture
def exiting_image(production: Production) -> Iterator[Image]:
    """v1's image with a command that dies at start, as a release broken at import time does."""
    client = production.platform.client
    dockerfile = b'FROM bmparliament:v1\nCMD ["python", "-c", "raise SystemExit(\'release broken at start\')"]\n'
    tag = f"{production.settings.project}-exits:1"
    built, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
    yield Image(tag=tag, id=built.id, built=True)
    production.platform.remove_color("green")
    client.images.remove(tag, force=True)


def test_a_color_that_exits_is_reported_at_once_with_its_logs(production: Production, exiting_image: Image) -> None:
    platform = production.platform
    platform.start_color("green", exiting_image, prod.app_environment(platform, production.settings))
    started = time.monotonic()
    # A long timeout: only a wait that fails on the exit itself (not on the deadline) raises StackError.
    with pytest.raises(StackError, match=r"exited .*: .*release broken at start"):
        platform.wait_healthy("green", timeout=600)
    print(f"a green that exits was reported {time.monotonic() - started:.1f}s after the wait began (timeout 600 s)")
