"""The compatibility gate's verdict on thirteen kinds of schema change, each rehearsed for real.

``tests/compat_cases`` is a small Django project: the release ``base`` (production) and
one release per kind of change, each carrying a single migration ``shop.0002_<case>``.
Every case is rehearsed the way deploygate rehearses a candidate: on an empty Postgres
migrated by the base release and seeded, the candidate's plan is applied, the production
release's models are exercised on the migrated schema and the candidate's models on the
schema before migrating, then the migration is reversed and the content compared.

Run with ``-s`` to see the verdict table at the end of the module.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploygate import compat, config, probe, rehearsal
from deploygate.database import connect
from deploygate.fingerprint import ContentDiff, compare, fingerprint
from deploygate.migrations import RECORDER_TABLES
from deploygate.platform import Platform, images
from deploygate.platform import connect as connect_platform
from tests.support import project_name

BASE = "base"


@dataclass(frozen=True)
class Expected:
    """What the gate should find: each direction of the blue-green overlap, and the reversal."""

    production_on_new: bool  # the base release's models work on the migrated schema
    candidate_on_old: bool  # the candidate's models work on the schema before migrating
    reversible: bool  # migrating back restores identical content

    @property
    def compatible(self) -> bool:
        return self.production_on_new and self.candidate_on_old


CASES = {
    # The candidate cannot select a column its own migration adds before that migration
    # runs; deploygate migrates before it routes anything to the candidate, so the gate
    # discounts failures on what the plan creates or renames (compat.explained_by_plan).
    "add_nullable_column": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
    # The database default keeps the old release's inserts valid.
    "add_not_null_with_db_default": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
    # Django adds the column with DEFAULT 'pcs' and drops the default at once: the old
    # release's INSERT, which omits "unit", violates NOT NULL.
    "add_not_null_without_db_default": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    # Reversal re-adds "note" as a new, empty column: the notes themselves are gone. Before
    # the drop, the candidate's INSERT omits the still NOT NULL "note".
    "drop_column": Expected(production_on_new=False, candidate_on_old=False, reversible=False),
    # The old release asks for the old name; the candidate's new name is the plan's own.
    "rename_column": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    "rename_table": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    # The old release compares quantity with an integer (varchar = integer: no operator),
    # the candidate with a string (invalid input syntax for type integer).
    "change_type_int_to_varchar": Expected(production_on_new=False, candidate_on_old=False, reversible=True),
    # The field made nullable is "note", which has default "": the candidate never writes
    # NULL, so the old NOT NULL does not stop it. (A nullable field without a default,
    # such as quantity, would be written as NULL by the probe and rejected before migrating.)
    "drop_not_null": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
    "add_unique_constraint": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
    "add_index": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
    # A new table (and its through table): nothing the old release uses changes.
    "add_many_to_many": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
    # The old release never notices (its schema is unchanged); the candidate's ORM asks
    # for a column "sku" that no migration creates, on either schema.
    "state_only_rename_without_db_column": Expected(production_on_new=True, candidate_on_old=False, reversible=True),
    # Compatible, but Django refuses to unapply RunPython without reverse_code.
    "run_python_without_reverse": Expected(production_on_new=True, candidate_on_old=True, reversible=False),
}

CATEGORIES = ("tools", "garden", "kitchen")
ITEMS = 20


def _quiet(message: str) -> None:
    """Progress messages of the library are not wanted here: the verdict table says it all."""


@pytest.fixture(scope="module", autouse=True)
def _remove_test_stack() -> None:
    """Overrides the package's autouse fixture of that name: these cases never use the ``dgtest``
    production, so this module must not remove (or tear down) a stack another run may be using."""


@pytest.fixture(scope="module")
def compat_settings(pytestconfig: pytest.Config) -> config.Settings:
    """deploygate pointed at the compatibility cases, under its own project name."""
    return config.load(
        root=pytestconfig.rootpath,
        environ={},
        overrides={
            "project": project_name("dgcompat"),
            "app_source": "tests/compat_cases",
            "app_image": project_name("dgcompat"),
            "db_name": "caseproj",
            "db_user": "caseproj",
            "expected_plan": "",
        },
    )


@pytest.fixture(scope="module")
def compat_platform(compat_settings: config.Settings) -> Platform:
    return connect_platform(compat_settings, say=_quiet)


@pytest.fixture(scope="module")
def postgres(compat_platform: Platform) -> images.Image:
    """Production's Postgres image; database copies a crashed run left behind are removed first."""
    compat_platform.remove_stale_scratch()
    return compat_platform.service_image("postgres", say=_quiet)


@pytest.fixture(scope="module")
def base_image(compat_platform: Platform) -> images.Image:
    return compat_platform.resolve_image(BASE, say=_quiet)


@pytest.fixture(scope="module")
def verdict_table() -> Iterator[dict[str, tuple[bool, bool, float]]]:
    """Observed (compatible, reversible, seconds) per case, printed when the module ends."""
    observed: dict[str, tuple[bool, bool, float]] = {}
    yield observed
    if observed:
        width = max(map(len, observed))
        print(f"\n{'case':<{width}}  compatible  reversible  seconds")
        for case, (compatible, reversible, seconds) in observed.items():
            print(f"{case:<{width}}  {'yes' if compatible else 'no':<10}  {'yes' if reversible else 'no':<10}  {seconds:7.1f}")


def _production_with_rows(
    platform: Platform, settings: config.Settings, base: images.Image, copy: rehearsal.DatabaseCopy
) -> None:
    """Build the base schema with the base release's own migrate, then seed it.

    Distinct codes, so a unique constraint can be added; half the notes empty, so the
    data migration has rows to change and a dropped note column has content to lose.
    """
    done = copy.prober(platform, settings, base).migrate()
    assert done.error is None, f"the base release's migrate failed: {done.error}"
    with connect(copy.host_address) as conn:
        category_ids = [
            conn.execute("INSERT INTO shop_category (title) VALUES (%s) RETURNING id", [title]).fetchone()[0]
            for title in CATEGORIES
        ]
        conn.cursor().executemany(
            "INSERT INTO shop_item (name, quantity, code, note, category_id) VALUES (%s, %s, %s, %s, %s)",
            [
                (
                    f"item {n}",
                    n * 3,
                    f"SKU-{n:04d}",
                    "" if n % 2 else f"note {n}",
                    # every fourth item has no category: nullable foreign keys hold NULLs in real data
                    None if n % 4 == 0 else category_ids[n % len(CATEGORIES)],
                )
                for n in range(1, ITEMS + 1)
            ],
        )


def _describe(diff: ContentDiff) -> str:
    """Every way the reversed copy differs from the one before migrating, harmless renames included."""
    lines = diff.problems()
    lines += [f"table {old} is now {new}" for old, new in diff.renamed_tables]
    lines += [f"column {table}.{old} is now {new}" for table, old, new in diff.renamed_columns]
    lines += [f"table {table} added" for table in diff.added_tables]
    lines += [f"column {table}.{column} added" for table, column in diff.added_columns]
    return "; ".join(lines) or "identical"


def test_every_case_is_declared(compat_settings: config.Settings) -> None:
    """The releases of tests/compat_cases and the table above name the same cases."""
    assert set(images.releases(compat_settings)) == {BASE, *CASES}


@pytest.mark.parametrize("release", [BASE, *CASES])
def test_models_match_migrations(release: str, tmp_path: Path, compat_settings: config.Settings) -> None:
    """Each release's models are exactly what its migrations build: makemigrations finds nothing to write.

    Checked on the host, in the file tree the image build assembles (app, overlay, release.json).
    """
    source = compat_settings.path(compat_settings.app_source)
    spec = images.releases(compat_settings)[release]
    context = images.BuildContext.empty().add_tree(source / "app")
    if spec.overlay:
        context.add_tree(source / "releases" / spec.overlay)
    context.add_bytes("release.json", spec.manifest())
    for name, data in context.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    # makemigrations also checks the migration history of the configured database; a port
    # that is bound but not listening refuses at once, which Django reports as a warning.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        done = subprocess.run(
            [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run", "shop"],
            cwd=tmp_path,
            env={"DB_HOST": "127.0.0.1", "DB_PORT": str(closed.getsockname()[1])},
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, f"{release}'s models differ from its migrations:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("case", CASES)
def test_verdict(
    case: str,
    compat_platform: Platform,
    compat_settings: config.Settings,
    postgres: images.Image,
    base_image: images.Image,
    verdict_table: dict[str, tuple[bool, bool, float]],
) -> None:
    """Rehearse one case on a seeded copy; the gate's verdict and the reversal match the table."""
    started = time.monotonic()
    candidate = compat_platform.resolve_image(case, say=_quiet)
    with rehearsal.empty_database(compat_platform, compat_settings, postgres.id) as copy:
        _production_with_rows(compat_platform, compat_settings, base_image, copy)
        rehearsed = rehearsal.rehearse(compat_platform, compat_settings, candidate, copy, say=_quiet)
        reversal = rehearsal.reverse(compat_platform, compat_settings, rehearsed, copy, say=_quiet)
    verdict = compat.judge(rehearsed)
    diff = compare(rehearsed.before, reversal.after, ignore=RECORDER_TABLES)
    reversible = reversal.error is None and diff.identical
    verdict_table[case] = (verdict.compatible, reversible, time.monotonic() - started)

    # A verdict on a migration that did not apply would judge the wrong schema.
    assert rehearsed.plan.labels == [f"shop.0002_{case}"]
    assert rehearsed.migrate_error is None, f"{case}: migrate failed on the copy: {rehearsed.migrate_error}"
    expected = CASES[case]
    observed = Expected(
        production_on_new=not verdict.production_on_new, candidate_on_old=not verdict.candidate_on_old, reversible=reversible
    )
    assert observed == expected, (
        f"{case}: expected compatible={expected.compatible} {expected}, observed compatible={observed.compatible} {observed}\n"
        f"{verdict.explain(rehearsed.plan)}\n"
        f"reversal: {reversal.error or 'no error'}; content after reversal: {_describe(diff)}"
    )


def _migrate_with_file(
    platform: Platform,
    settings: config.Settings,
    image: images.Image,
    copy: rehearsal.DatabaseCopy,
    migration: Path,
    target: str,
) -> dict:
    """The probe's ``migrate`` in ``image`` with ``migration`` mounted over its file ``target``.

    ``Prober`` takes no extra mounts, hence this job of its own.
    """
    result = platform.run_job(
        image.id,
        probe.argv("migrate"),
        environment=copy.app_environment(settings),
        mounts={**probe.mounts(), str(migration): target},
        network=copy.scratch.database.network,
    )
    return probe.result_of(result.output, command="migrate", image=image.tag, exit_code=result.exit_code)


def test_safe_migrations_keep_the_renamed_column(
    compat_platform: Platform,
    compat_settings: config.Settings,
    postgres: images.Image,
    base_image: images.Image,
    tmp_path: Path,
) -> None:
    """The probe's ``safe-migrations`` turns rename_column's RenameField into a state-only rename
    that keeps the column, and with it applied the base release still works on the schema."""
    candidate = compat_platform.resolve_image("rename_column", say=_quiet)
    relative = "shop/migrations/0002_rename_column.py"
    with rehearsal.empty_database(compat_platform, compat_settings, postgres.id) as copy:
        _production_with_rows(compat_platform, compat_settings, base_image, copy)
        files = copy.prober(compat_platform, compat_settings, candidate).safe_migrations(["shop.0002_rename_column"])
        assert set(files) == {relative}
        text = files[relative]
        assert "SeparateDatabaseAndState" in text and "db_column='code'" in text, text

        safe = tmp_path / "0002_rename_column.py"
        safe.write_text(text)
        before = fingerprint(copy.host_address)
        applied = _migrate_with_file(compat_platform, compat_settings, candidate, copy, safe, f"/app/{relative}")
        assert applied["error"] is None, applied["error"]
        assert [m["name"] for m in applied["migrations"]] == ["0002_rename_column"]
        diff = compare(before, fingerprint(copy.host_address), ignore=RECORDER_TABLES)
        assert diff.identical, f"the state-only rename changed the schema: {_describe(diff)}"
        # Production's own code (the base image, not historical models) on the migrated copy.
        exercised = copy.prober(compat_platform, compat_settings, base_image).exercise("current")
    failures = probe.exercise_failures(exercised)
    assert exercised and not failures, "the base release fails after the safe migration: " + "; ".join(failures)
