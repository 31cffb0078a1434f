"""The third target, bigapp, on its own: its releases work with plain Docker, and its traps are real.

tests/targets/build.py builds ``dgbigapp:1`` to ``:3``; the rest is the docker SDK driven the
way a person would by hand (tests/targets/rig.py), configured from bigapp's deploy.toml. No
other deploygate code path runs, so what this proves is bigapp's: its model code refuses rows
not shaped like its own (on purpose, see its README), release 2 (a squash and an index
rebuild) is compatible both ways and reverses, and release 3 (a plain rename) breaks the
release before it. The deploygate verdicts in tests/e2e/test_bigapp.py are judged against
these facts.
"""

from __future__ import annotations

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
from tests.targets.build import BIGAPP, build_target
from tests.targets.rig import Container, Rig, logs, plain_rig

PROJECT = project_name("dgbigapp_plain")
SEED_ORDERS = 60
SQUASHES = (
    "accounts.0001_squashed_0003_apikey",
    "catalog.0001_squashed_0004_product_cat_status",
    "ops.0001_squashed_0003_exportjob_webhook_dashboard",
    "sales.0001_squashed_0003_invoice_coupon_shipment",
)
# Each line tries one thing the app's own code never writes; the one-off prints the exception's class.
TRAPS = """
import django; django.setup()
from datetime import date
from django.db import transaction
from accounts.models import Member, Profile
from catalog.models import Price, Variant
from ops.models import Dashboard, ExportJob
from sales.models import Customer, Invoice, Order, OrderLine

def attempt(name, write):
    try:
        with transaction.atomic():
            write()
            raise RuntimeError("accepted")
    except Exception as exc:
        print(f"trap {name}: {type(exc).__name__}")

member, variant = Member.objects.first(), Variant.objects.first()
consumer = Customer.objects.create(email="consumer@example.invalid", name="consumer")
order = Order.objects.create(customer=consumer, currency="JPY")
attempt("second profile", lambda: Profile.objects.create(member=member))
attempt("unknown currency", lambda: Price.objects.create(variant=variant, currency="XYZ", amount=1))
attempt("line without a price", lambda: OrderLine.objects.create(order=order, variant=variant, quantity=1))
attempt("invoice of a consumer", lambda: Invoice.objects.create(order=order, number="INV-X", issued_on=date.today()))
attempt("export outside the web", lambda: ExportJob.objects.create(kind="orders"))
attempt("layout of no known shape", lambda: Dashboard.objects.create(member=member, title="x", layout={"x": 1}))
attempt("duplicate options", lambda: Variant.objects.create(product=variant.product, code="dup", options=variant.options))
attempt("negative stock", lambda: variant.stock.update(quantity=-1))
"""


@pytest.fixture(scope="module", autouse=True)
def _remove_test_stack() -> None:
    """Overrides the package's autouse fixture of that name: this module never uses the ``dgtest`` production."""


@pytest.fixture(scope="module")
def bigapp_config() -> dict[str, Any]:
    """bigapp's deploy.toml, read as plain TOML (deploygate's loader is not under test here)."""
    return tomllib.loads((BIGAPP.directory / "deploy.toml").read_text())


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return ensure_engine(say=print)


@pytest.fixture(scope="module")
def bigapp_images(client: docker.DockerClient, settings: config.Settings) -> dict[int, images.Image]:
    return {release: build_target(client, settings, BIGAPP, release, print) for release in BIGAPP.releases()}


@pytest.fixture(scope="module")
def rig(client: docker.DockerClient, settings: config.Settings, bigapp_config: dict[str, Any], bigapp_images) -> Iterator[Rig]:
    with plain_rig(client, settings, PROJECT, bigapp_config, {"DGBIGAPP_SECRET_KEY": secrets.token_urlsafe(40)}) as rig:
        yield rig


def _sql(rig: Rig, query: str) -> list[str]:
    """The rows of ``query`` in the rig's database, one string per row (psql's unaligned output)."""
    database = rig.environment["DATABASE_URL"].rsplit("/", 1)[1]
    code, output = rig.db.exec_run(["psql", "-U", rig.db_user, "-d", database, "-tAc", query])
    assert code == 0, output.decode()
    return [line for line in output.decode().splitlines() if line]


def _migrate(rig: Rig, image: images.Image, *target: str) -> str:
    code, output = rig.oneoff(image, ["python", "manage.py", "migrate", *target, "--no-input"])
    assert code == 0, output
    return output


@dataclass
class Release1:
    url: str
    worker: Container


@pytest.fixture(scope="module")
def release1(rig: Rig, bigapp_config: dict[str, Any], bigapp_images) -> Release1:
    """Release 1 migrated from its original history, seeded by its own command, web and worker running."""
    _migrate(rig, bigapp_images[1])
    seed = bigapp_config["seed"]["command"].format(rows=SEED_ORDERS, random_seed=7, members=0)
    code, output = rig.oneoff(bigapp_images[1], seed.split())
    assert code == 0 and f"seed: {SEED_ORDERS} orders written" in output, output
    return Release1(url=rig.start_web("web1", bigapp_images[1]), worker=rig.start_worker("worker1", bigapp_images[1]))


def _place(base_url: str, email: str) -> dict[str, Any]:
    answer = requests.post(base_url + "/api/orders/", json={"email": email, "name": "someone"}, timeout=10)
    assert answer.status_code == 201, f"POST /api/orders/ answered {answer.status_code}: {answer.text[:500]}"
    return answer.json()


def _get(base_url: str, path: str) -> requests.Response:
    return requests.get(base_url + path, timeout=10)


@pytest.mark.parametrize("release", [1, 2, 3])
def test_models_match_migrations(client: docker.DockerClient, bigapp_images, release: int) -> None:
    """makemigrations finds nothing in any release, with no database reachable (the settings import without one)."""
    output = client.containers.run(
        bigapp_images[release].id,
        ["python", "manage.py", "makemigrations", "--check", "--dry-run"],
        environment={"DJANGO_SETTINGS_MODULE": "bigapp.settings", "SECRET_KEY": "x", "DATABASE_URL": "postgres://u:p@nowhere/db"},
        network_mode="none",
        labels={PROJECT_LABEL: PROJECT},
        remove=True,
        stderr=True,
    ).decode()
    assert "No changes detected" in output, output


def test_seed_writes_every_model_through_its_own_code(rig: Rig, release1: Release1) -> None:
    assert _sql(rig, "SELECT count(*) FROM sales_order") == [str(SEED_ORDERS)]
    # The signals: a profile per member, an audit row per order.
    assert _sql(rig, "SELECT count(*) FROM accounts_member m LEFT JOIN accounts_profile p ON p.member_id = m.id WHERE p.id IS NULL") == [
        "0"
    ]
    assert _sql(rig, "SELECT count(*) FROM ops_auditlog WHERE action = 'order.created'") == [str(SEED_ORDERS)]
    assert _sql(rig, "SELECT count(*) > 0 FROM sales_invoice WHERE due_on > issued_on") == ["t"]
    assert _sql(rig, "SELECT count(*) FROM catalog_price WHERE minor_units = 2") != ["0"]
    tables = _sql(rig, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename ~ '^(accounts|catalog|sales|ops)_'")
    assert len(tables) == 28, tables
    counts = {table: int(_sql(rig, f"SELECT count(*) FROM {table}")[0]) for table in tables}
    assert not [table for table, count in counts.items() if count == 0], f"the seed left tables empty: {counts}"


def test_model_code_refuses_rows_not_shaped_like_the_apps(rig: Rig, bigapp_images, release1: Release1) -> None:
    """What the README promises: each trap raises, in a one-off process (which has no EXPORTS_DIR)."""
    code, output = rig.oneoff(bigapp_images[1], ["python", "-c", TRAPS])
    assert code == 0, output
    assert {
        line.split(": ", 1)[0].removeprefix("trap "): line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("trap ")
    } == {
        "second profile": "IntegrityError",
        "unknown currency": "KeyError",
        "line without a price": "DoesNotExist",
        "invoice of a consumer": "AttributeError",
        "export outside the web": "ValueError",
        "layout of no known shape": "RecursionError",
        "duplicate options": "ValidationError",
        "negative stock": "IntegrityError",
    }


def test_api_and_worker(rig: Rig, release1: Release1) -> None:
    placed = _place(release1.url, "buyer@example.invalid")
    detail = _get(release1.url, f"/api/orders/{placed['id']}/").json()
    assert (detail["reference"], detail["customer"], detail["lines"]) == (placed["reference"], "buyer@example.invalid", 0)
    assert _get(release1.url, "/api/orders/").json()["orders"][0]["id"] == placed["id"]
    assert _get(release1.url, "/api/orders/999999/").status_code == 404
    wait_until(
        lambda: _sql(rig, f"SELECT status FROM ops_job WHERE payload->>'order' = '{placed['id']}'") == ["done"],
        timeout=30,
        what="the worker to process the order's job",
        last_seen=lambda: logs(release1.worker)[-500:],
    )


def test_release_2_squash_and_index_under_release_1(rig: Rig, bigapp_images, release1: Release1) -> None:
    """Release 2's migrate applies the index rebuild alone and records its squashes beside the names they replace;
    release 1 keeps working on that schema, release 2 on it too, and release 1's worker serves release 2's jobs."""
    output = _migrate(rig, bigapp_images[2])
    assert [line.strip() for line in output.splitlines() if "Applying" in line] == [
        "Applying catalog.0005_product_cat_status_created_at... OK"
    ]
    applied = set(_sql(rig, "SELECT app || '.' || name FROM django_migrations"))
    assert set(SQUASHES) <= applied and "catalog.0004_product_cat_status" in applied
    assert "created_at" in _sql(rig, "SELECT indexdef FROM pg_indexes WHERE indexname = 'catalog_product_cat_status'")[0]
    old = _place(release1.url, "old-code@example.invalid")
    assert _get(release1.url, f"/api/orders/{old['id']}/").status_code == 200
    url2 = rig.start_web("web2", bigapp_images[2])
    new = _place(url2, "new-code@example.invalid")
    assert _get(url2, f"/api/orders/{old['id']}/").json()["reference"] == old["reference"]
    wait_until(
        lambda: _sql(rig, f"SELECT status FROM ops_job WHERE payload->>'order' = '{new['id']}'") == ["done"],
        timeout=30,
        what="release 1's worker to process release 2's job",
    )


def test_release_2_reverses(rig: Rig, bigapp_images, release1: Release1) -> None:
    """What a rollback does: release 2's image migrates back to its squash (the index as release 1 had it); then forward again."""
    _migrate(rig, bigapp_images[2])
    output = _migrate(rig, bigapp_images[2], "catalog", "0001_squashed_0004_product_cat_status")
    assert "Unapplying catalog.0005_product_cat_status_created_at... OK" in output
    assert "created_at" not in _sql(rig, "SELECT indexdef FROM pg_indexes WHERE indexname = 'catalog_product_cat_status'")[0]
    assert _get(release1.url, "/api/orders/").status_code == 200
    _migrate(rig, bigapp_images[2])


def test_release_3_breaks_the_release_before_it(rig: Rig, bigapp_images, release1: Release1) -> None:
    """The rename is a real incompatibility: once release 3 has migrated, release 2's code fails on `reference`
    while release 3 serves; migrating back restores release 2."""
    _migrate(rig, bigapp_images[2])
    url2 = rig.start_web("web2b", bigapp_images[2])
    output = _migrate(rig, bigapp_images[3])
    assert "Applying sales.0004_rename_order_reference_number... OK" in output
    try:
        broken = _get(url2, "/api/orders/")
        assert broken.status_code == 500, broken.text[:300]
        failed_post = requests.post(url2 + "/api/orders/", json={"email": "x@example.invalid"}, timeout=10)
        assert failed_post.status_code == 500
        url3 = rig.start_web("web3", bigapp_images[3])
        placed = _get(url3, f"/api/orders/{_place(url3, 'v3@example.invalid')['id']}/").json()
        assert placed["number"].startswith("ORD-") and "reference" not in placed
    finally:
        _migrate(rig, bigapp_images[3], "sales", "0001_squashed_0003_invoice_coupon_shipment")
    assert _get(url2, "/api/orders/").status_code == 200
