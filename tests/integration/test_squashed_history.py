"""A squashed migration history and an uninstalled app on a real Postgres, through the probe in a real image.

``squashed_app/`` (see its README) is mounted over the image's app directory: the image only
brings Python, Django and psycopg (the demo's, already built for this tier). v1 applies stock's
0001-0003 one by one and has the app ``legacy``; v2 squashes them (``replaces``) and drops
``legacy``; v3 adds a model and a data migration. Checked: the names a squash replaces, and
those of an uninstalled app, are history, not a mismatch (issue 27, 3), and the rows the
release's own migrate writes are not the window's (issue 27, 5).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from deploygate import config, probe, window
from deploygate.database import connect
from deploygate.platform import Platform
from deploygate.platform.images import Image
from deploygate.rehearsal import DatabaseCopy, empty_database

APP = Path(__file__).parent / "squashed_app"
RELEASES = {"v1": (["history"], "stock,legacy"), "v2": (["squashed"], "stock"), "v3": (["squashed", "shelf"], "stock")}
REPLACED = ["stock.0001_initial", "stock.0002_item_note", "stock.0003_item_code"]


@pytest.fixture(scope="module")
def sq_settings(settings: config.Settings) -> config.Settings:
    return settings.replace(db_name="sq", db_user="sq")


@pytest.fixture(scope="module")
def django_image(platform: Platform) -> Image:
    """Any image with the app's Python, Django and psycopg: the demo's v1 (its app is mounted over)."""
    return platform.resolve_image("v1", say=lambda message: None)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each release's app directory: base/ with its overlays on top."""
    built = {}
    for name, (overlays, _) in RELEASES.items():
        target = tmp_path_factory.mktemp(name)
        for part in ["base", *overlays]:
            shutil.copytree(APP / part, target, dirs_exist_ok=True)
        target.chmod(0o755)
        built[name] = target
    return built


@pytest.fixture
def database(platform: Platform, sq_settings: config.Settings):
    with empty_database(platform, sq_settings, platform.service_image("postgres", say=lambda m: None).id) as copy:
        yield copy


@pytest.fixture
def run_probe(platform: Platform, sq_settings: config.Settings, django_image: Image, releases: dict[str, Path], database: DatabaseCopy):
    """``run_probe(release, command)``: the probe's parsed result, in the image with that release's app."""

    def run(release: str, command: str):
        environment = {
            **database.app_environment(sq_settings),
            "DJANGO_SETTINGS_MODULE": "sqproj.settings",
            "SQ_APPS": RELEASES[release][1],
        }
        done = platform.run_job(
            django_image.id,
            probe.argv(command, python=sq_settings.app_python),
            environment=environment,
            # The release's app over the image's WORKDIR, where the probe finds the project.
            mounts={**probe.mounts(), str(releases[release]): "/app"},
            network=database.scratch.database.network,
        )
        payload = probe.result_of(done.output, command=command, image=release, exit_code=done.exit_code)
        return probe.parse_plan(payload) if command == "plan" else probe.parse_migrate(payload, done.exit_code)

    return run


def test_names_a_squash_replaces_and_an_uninstalled_apps_are_history(run_probe, database: DatabaseCopy) -> None:
    assert run_probe("v1", "migrate").ok
    plan = run_probe("v2", "plan")
    assert plan.at_release, plan.mismatch()
    assert plan.unknown_applied == []
    assert plan.outside.replaced_by_squash == REPLACED
    assert plan.outside.of_removed_apps == ["legacy.0001_initial"]
    # Any other name still is a mismatch.
    with connect(database.host_address) as conn:
        conn.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('stock', '0009_gone', now())")
    plan = run_probe("v2", "plan")
    assert not plan.at_release and plan.unknown_applied == ["stock.0009_gone"], plan.mismatch()


def test_a_squash_applied_from_scratch_is_at_its_release(run_probe, database: DatabaseCopy) -> None:
    """Django records the names the squash replaces when it applies it: they are not unknown to that same release."""
    assert run_probe("v2", "migrate").ok
    with connect(database.host_address) as conn:
        recorded = {f"{a}.{n}" for a, n in conn.execute("SELECT app, name FROM django_migrations WHERE app = 'stock'").fetchall()}
    assert set(REPLACED) <= recorded
    plan = run_probe("v2", "plan")
    assert plan.at_release and plan.outside.replaced_by_squash == REPLACED, plan.mismatch()


def test_rows_the_releases_migrate_writes_are_not_the_windows(run_probe, database: DatabaseCopy, tmp_path: Path) -> None:
    """post_migrate's content type and permissions and the data migration's row are migrate's own; users' rows
    written before and after migrate, into the same tables, are the window's."""
    assert run_probe("v2", "migrate").ok
    db = database.host_address
    started = window.max_ids(db)
    with connect(db) as conn:
        conn.execute("INSERT INTO stock_item (name, note, code) VALUES ('before migrate', '', 'u1')")
    before = window.max_ids(db)
    done = run_probe("v3", "migrate")
    assert done.ok, done.error
    writes = window.MigrateWrites.taken(before, done.inserted_xids)
    assert window.migrate_rows(db, writes) == {"auth_permission": 4, "django_content_type": 1, "stock_shelf": 1}
    with connect(db) as conn:
        conn.execute("INSERT INTO stock_shelf (label) VALUES ('a user''s')")
        conn.execute("INSERT INTO django_content_type (app_label, model) VALUES ('users', 'own')")
    export = tmp_path / "window.csv"
    assert window.export_rows(db, {**started, "stock_shelf": 0}, export, writes) == 3
    with export.open(newline="") as handle:
        rows = sorted((r["table"], r["row"]) for r in csv.DictReader(handle))
    assert [table for table, _ in rows] == ["django_content_type", "stock_item", "stock_shelf"], rows
    assert "a user's" in rows[2][1] and "users" in rows[0][1]
    # Without them, every row above the floor counts: what deploygate did before.
    assert window.export_rows(db, {**started, "stock_shelf": 0}, tmp_path / "all.csv") == 3 + 6
