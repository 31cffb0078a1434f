"""The compatibility gate's verdict on every kind of schema change of ``tests/compat_cases``, rehearsed for real.

``tests/compat_cases`` is a small Django project (its shop app beside contenttypes and
auth): the release ``base`` (production) and one release per kind of change, each
carrying a single migration ``shop.0002_<case>`` (``ignored_migration`` none: its model
change never got one). Every case is rehearsed the way deploygate rehearses a candidate:
on an empty Postgres migrated by the base release and seeded, the candidate's plan is
applied, each release's models write fresh and boundary values on the other's schema,
then the migration is reversed and the content compared.

Run with ``-s`` to see the verdict table (label, verdict, reversal) at the end of the module.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from deploygate import advice, compat, config, probe, rehearsal
from deploygate.database import connect
from deploygate.fingerprint import ContentDiff, compare, fingerprint
from deploygate.migrations import RECORDER_TABLES
from deploygate.platform import Platform, images
from deploygate.platform import connect as connect_platform
from tests.support import project_name

BASE = "base"


@dataclass(frozen=True)
class Expected:
    """The truth about a case: each direction of the blue-green overlap, the migration, the data, the reversal."""

    production_on_new: bool  # the base release's models work on the migrated schema
    candidate_on_old: bool  # the candidate's models work on the schema before migrating
    reversible: bool  # migrating back restores the content (rows post_migrate added aside)
    candidate_on_new: bool = True  # the candidate's models work on its own migrated schema
    migrates: bool = True  # the plan applies to production's rows
    keeps_data: bool = True  # migrating loses or alters no existing row (rows post_migrate added aside)

    @property
    def compatible(self) -> bool:
        return self.production_on_new and self.candidate_on_old and self.candidate_on_new and self.migrates


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
    # The same column beside two choices-only AlterFields and a RunPython whose reverse is
    # RunPython.noop: the same verdict, one cause, and the column's fix alone (see ONE_CAUSE).
    "add_not_null_with_choices_and_noop_data": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    # Reversal re-adds "note" as a new, empty column: the notes themselves are gone. Before
    # the drop, the candidate's INSERT omits the still NOT NULL "note".
    "drop_column": Expected(production_on_new=False, candidate_on_old=False, reversible=False, keeps_data=False),
    # The old release asks for the old name; the candidate's new name is the plan's own.
    "rename_column": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    "rename_table": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    # As rename_table, and contenttypes renames Category's ContentType (its row changes) while
    # post_migrate adds Section's Permissions: Django's bookkeeping, not lost or altered data.
    "rename_model": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    # The old release compares quantity with an integer (varchar = integer: no operator),
    # the candidate with a string (invalid input syntax for type integer). No value changes:
    # 3 and '3' are the same text.
    "change_type_int_to_varchar": Expected(production_on_new=False, candidate_on_old=False, reversible=True),
    # Corrected (was compatible): the candidate's model allows NULL in "note", and the
    # schema before migrating still refuses it. Safe as two releases (KIND_ADVICE["drop_not_null"]).
    "drop_not_null": Expected(production_on_new=True, candidate_on_old=False, reversible=True),
    # Corrected (was compatible): the release serving now may write a code that another
    # row has, which the migrated schema rejects.
    "add_unique_constraint": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    "add_unique_together": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    # The candidate may write a barcode another row has; the schema before still refuses it.
    "drop_unique_constraint": Expected(production_on_new=True, candidate_on_old=False, reversible=True),
    # The release serving now writes names of 100 characters into varchar(80)...
    "shrink_varchar": Expected(production_on_new=False, candidate_on_old=True, reversible=True),
    # ...and the candidate names of 120 into the varchar(100) it finds before migrating.
    # No stored value changes either way, so the content check passes both.
    "widen_varchar": Expected(production_on_new=True, candidate_on_old=False, reversible=True),
    "add_index": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
    # A new table (and its through table): nothing the old release uses changes. post_migrate
    # adds Tag's ContentType and its four Permissions: listed, not counted as altered data.
    "add_many_to_many": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
    # The old release selects a table and a column that are gone; the data goes with them.
    "drop_table": Expected(production_on_new=False, candidate_on_old=True, reversible=False, keeps_data=False),
    # Django backfills NULL prices with 0 and adds NOT NULL: the old release still writes
    # NULL prices. Reversal drops NOT NULL but the NULLs are gone.
    "make_not_null_with_python_default": Expected(production_on_new=False, candidate_on_old=True, reversible=False, keeps_data=False),
    # SET NOT NULL fails on the rows that hold NULL: the plan rolls back, no schema changes,
    # the verdict is the failure itself (and the candidate is not blamed for it).
    "make_not_null_on_null_rows": Expected(production_on_new=True, candidate_on_old=True, reversible=True, migrates=False),
    # The model has "colour", no migration creates it: the candidate fails on every schema.
    "ignored_migration": Expected(production_on_new=True, candidate_on_old=False, reversible=True, candidate_on_new=False),
    # The old release never notices (its schema is unchanged); the candidate's ORM asks
    # for a column "sku" that no migration creates, on either schema.
    "state_only_rename_without_db_column": Expected(
        production_on_new=True, candidate_on_old=False, reversible=True, candidate_on_new=False
    ),
    # Compatible, but Django refuses to unapply RunPython without reverse_code; the backfill
    # alters the notes it fills.
    "run_python_without_reverse": Expected(production_on_new=True, candidate_on_old=True, reversible=False, keeps_data=False),
    # A data migration writing tables its plan's SQL never names: Category (its app's, hashed row by
    # row) and auth_group (not hashed: the copy's statistics see the row it inserts). Both caught; the
    # no-op reverse leaves both, so the reversal restores neither.
    "data_migration_beyond_its_sql": Expected(production_on_new=True, candidate_on_old=True, reversible=False, keeps_data=False),
    # A new table of every field type: all filled (PointField reported unchecked).
    "all_field_types": Expected(production_on_new=True, candidate_on_old=True, reversible=True),
}
# The plan each case carries (default: its one migration).
PLANS = {"ignored_migration": []}
# Where a boundary value breaks: the direction, the field and the value class the verdict must name.
BOUNDARY_BREAKS = {
    "add_unique_constraint": ("production_on_new", "code", "duplicate"),
    "add_unique_together": ("production_on_new", "name, category", "duplicate"),
    "drop_unique_constraint": ("candidate_on_old", "barcode", "duplicate"),
    "shrink_varchar": ("production_on_new", "name", "max_length=100"),
    "widen_varchar": ("candidate_on_old", "name", "max_length=120"),
    "drop_not_null": ("candidate_on_old", "note", "null"),
    "make_not_null_with_python_default": ("production_on_new", "price", "null"),
}
# The advice the verdict must give (advice.KIND_ADVICE) for the kind of change.
ADVICE_KINDS = {
    "drop_not_null": "drop_not_null",
    "add_unique_constraint": "add_unique",
    "add_unique_together": "add_unique",
    "drop_unique_constraint": "drop_unique",
    "shrink_varchar": "shrink",
    "widen_varchar": "widen",
    "make_not_null_with_python_default": "set_not_null",
    "change_type_int_to_varchar": "type_change",
}
# A single root cause (compat.by_cause): the direction where every failure comes from it, and the
# operations the fix names, exactly: not the choices-only AlterFields (no SQL), not RunPython (it has a reverse).
ONE_CAUSE = {
    "add_not_null_without_db_default": ("production_on_new", ["Add field unit to item"]),
    "add_not_null_with_choices_and_noop_data": ("production_on_new", ["Add field unit to item"]),
}
# Rows Django's post_migrate adds: a new model's ContentType and its 4 Permissions; a renamed model
# keeps its ContentType (renamed by RenameContentType) and gets 4 Permissions under its new name.
NEW_MODEL_ROWS = {"public.django_content_type": 1, "public.auth_permission": 4}
POST_MIGRATE_ROWS = {"add_many_to_many": NEW_MODEL_ROWS, "all_field_types": NEW_MODEL_ROWS, "rename_model": {"public.auth_permission": 4}}
# What the probe must report unchecked, as "model: field".
UNCHECKED = {"all_field_types": {"shop.Specimen: location"}}

CATEGORIES = ("tools", "garden", "kitchen")
ITEMS = 20
PRICELESS = [n for n in range(1, ITEMS + 1) if n % 3 == 0]  # items seeded without a price


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


@dataclass(frozen=True)
class CaseRun:
    """One case rehearsed and reversed on its own seeded copy."""

    rehearsed: rehearsal.Rehearsal
    reversal: rehearsal.Reversal
    seconds: float


@pytest.fixture(scope="module")
def run_case(
    compat_platform: Platform,
    compat_settings: config.Settings,
    postgres: images.Image,
    base_image: images.Image,
) -> Callable[[str], CaseRun]:
    """``run_case(case)``: the case rehearsed and reversed, once per module (later tests reuse the run)."""
    runs: dict[str, CaseRun] = {}

    def run(case: str) -> CaseRun:
        if case not in runs:
            started = time.monotonic()
            candidate = compat_platform.resolve_image(case, say=_quiet)
            with rehearsal.empty_database(compat_platform, compat_settings, postgres.id) as copy:
                _production_with_rows(compat_platform, compat_settings, base_image, copy)
                rehearsed = rehearsal.rehearse(compat_platform, compat_settings, candidate, copy, say=_quiet)
                reversal = rehearsal.reverse(compat_platform, compat_settings, rehearsed, copy, say=_quiet)
            runs[case] = CaseRun(rehearsed, reversal, time.monotonic() - started)
        return runs[case]

    return run


@pytest.fixture(scope="module")
def verdict_table() -> Iterator[dict[str, tuple[Expected, Expected, float, str]]]:
    """Per case (label, observed, seconds, first reason), printed when the module ends."""
    observed: dict[str, tuple[Expected, Expected, float, str]] = {}
    yield observed
    if observed:
        width = max(map(len, observed))
        print(f"\n{'case':<{width}}  label         verdict       reversible (label/seen)  agree  seconds  why")
        for case, (label, seen, seconds, why) in observed.items():

            def word(compatible: bool) -> str:
                return "compatible" if compatible else "incompatible"

            agree = "yes" if label == seen else "NO"
            print(
                f"{case:<{width}}  {word(label.compatible):<12}  {word(seen.compatible):<12}  "
                f"{'yes' if label.reversible else 'no':>3} / {'yes' if seen.reversible else 'no':<3}              "
                f"{agree:<5}  {seconds:7.1f}  {why}"
            )


def _production_with_rows(platform: Platform, settings: config.Settings, base: images.Image, copy: rehearsal.DatabaseCopy) -> None:
    """Build the base schema with the base release's own migrate, then seed it.

    Distinct codes and names, so a unique constraint can be added; half the notes empty,
    so the data migration has rows to change and a dropped note column has content to
    lose; every third price NULL, so making it NOT NULL meets real rows.
    """
    done = copy.prober(platform, settings, base).migrate()
    assert done.error is None, f"the base release's migrate failed: {done.error}"
    with connect(copy.host_address) as conn:
        category_ids = [
            conn.execute("INSERT INTO shop_category (title) VALUES (%s) RETURNING id", [title]).fetchone()[0] for title in CATEGORIES
        ]
        conn.cursor().executemany(
            "INSERT INTO shop_item (name, quantity, code, barcode, price, note, category_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    f"item {n}",
                    n * 3,
                    f"SKU-{n:04d}",
                    f"BC-{n:06d}",
                    None if n in PRICELESS else Decimal(n) + Decimal("0.5"),
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
    lines += diff.notes()
    return "; ".join(lines) or "identical"


def test_every_case_is_declared(compat_settings: config.Settings) -> None:
    """The releases of tests/compat_cases and the table above name the same cases."""
    assert set(images.releases(compat_settings)) == {BASE, *CASES}


@pytest.mark.parametrize("release", [BASE, *CASES])
def test_models_match_migrations(release: str, tmp_path: Path, compat_settings: config.Settings) -> None:
    """Each release's models are exactly what its migrations build: makemigrations finds nothing to write
    (except for ignored_migration, whose model change has no migration on purpose).

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
    if release == "ignored_migration":
        assert done.returncode != 0 and "colour" in done.stdout, f"makemigrations found no missing migration:\n{done.stdout}"
    else:
        assert done.returncode == 0, f"{release}'s models differ from its migrations:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("case", CASES)
def test_verdict(case: str, run_case: Callable[[str], CaseRun], verdict_table: dict[str, tuple[Expected, Expected, float, str]]) -> None:
    """Rehearse one case on a seeded copy; the gate's verdict, the content check and the reversal match the truth."""
    run = run_case(case)
    rehearsed, reversal = run.rehearsed, run.reversal
    verdict = compat.judge(rehearsed)
    forward = rehearsed.content_diff()
    backward = rehearsal.reversal_diff(rehearsed, reversal)
    observed = Expected(
        production_on_new=not verdict.production_on_new,
        candidate_on_old=not verdict.candidate_on_old,
        reversible=reversal.error is None and backward.identical,
        candidate_on_new=not verdict.candidate_on_new,
        migrates=verdict.migration_failure is None,
        keeps_data=forward.data_intact,
    )
    broken = verdict.production_on_new + verdict.candidate_on_old + verdict.candidate_on_new
    why = compat.explain_failure(verdict.migration_failure) if verdict.migration_failure else broken[0].describe() if broken else "-"
    verdict_table[case] = (CASES[case], observed, run.seconds, why[:120])

    # A verdict on a plan other than the case's would judge the wrong change.
    assert rehearsed.plan.labels == PLANS.get(case, [f"shop.0002_{case}"])
    assert observed == CASES[case], (
        f"{case}: expected compatible={CASES[case].compatible} {CASES[case]}, observed compatible={observed.compatible} {observed}\n"
        f"{verdict.explain(rehearsed.plan)}\n"
        f"forward content: {_describe(forward)}\n"
        f"reversal: {reversal.error or 'no error'}; content after reversal: {_describe(backward)}"
    )
    if case in BOUNDARY_BREAKS:
        direction, field, value = BOUNDARY_BREAKS[case]
        named = [(item.field, item.values) for item in getattr(verdict, direction)]
        assert any(f == field and value in values for f, values in named), f"{case}: {direction} names {named}"
    if case in ADVICE_KINDS:
        assert any(advice.KIND_ADVICE[ADVICE_KINDS[case]] in line for line in verdict.advice), verdict.advice
    if case in ONE_CAUSE:
        direction, advised = ONE_CAUSE[case]
        items = getattr(verdict, direction)
        (finding,) = compat.by_cause(items)
        explanation = verdict.explain(rehearsed.plan)
        assert len(items) > 1 and explanation.count(finding.first.error) == 1, explanation
        assert [line.split(" (", 1)[1].split("): ", 1)[0] for line in verdict.advice] == advised, verdict.advice
    added = {rows.table: rows.count for rows in forward.post_migrate_rows}
    assert added == POST_MIGRATE_ROWS.get(case, {}), forward.post_migrate_rows
    assert {rows.table: rows.count for rows in backward.post_migrate_rows} == added, "reversal is judged the same way"
    # Reversal renames the ContentType back, as Django's migrate does.
    assert forward.content_type_renames == (["public.django_content_type"] if case == "rename_model" else [])
    assert backward.content_type_renames == []
    unchecked = {": ".join(line.split(": ")[:2]) for line in verdict.unchecked}
    assert unchecked == UNCHECKED.get(case, set()), verdict.unchecked


def test_failing_migration_is_reported_as_such(run_case: Callable[[str], CaseRun]) -> None:
    """SET NOT NULL on a column holding NULLs: the statement, the table and column, how many rows, the recipe."""
    rehearsed = run_case("make_not_null_on_null_rows").rehearsed
    failure = rehearsed.migrate_failure
    assert failure is not None, rehearsed.migrate_error
    assert (failure.migration, failure.table, failure.column) == ("shop.0002_make_not_null_on_null_rows", "shop_item", "price")
    assert "SET NOT NULL" in failure.statement and failure.offending_rows == len(PRICELESS)
    line = compat.explain_failure(failure)
    assert f"{len(PRICELESS)} rows violate it" in line and advice.KIND_ADVICE["set_not_null"] in line, line
    verdict = compat.judge(rehearsed)
    assert not verdict.compatible and not verdict.candidate_on_new, "the candidate is blamed for the data"
    assert "models and migrations disagree" not in verdict.explain(rehearsed.plan)


def test_locks_name_dropped_tables(run_case: Callable[[str], CaseRun]) -> None:
    """DROP TABLE holds ACCESS EXCLUSIVE on a table gone from pg_class: recorded under its name all the same."""
    (migration,) = run_case("drop_table").rehearsed.applied
    assert {"shop_category", "shop_item"} <= set(migration.exclusive_locks_ms()), migration.strongest_locks()


def test_probe_fills_every_field_type(run_case: Callable[[str], CaseRun]) -> None:
    """Every built-in field type of Specimen takes a fresh value and every boundary value, on its own schema."""
    exercises = run_case("all_field_types").rehearsed.candidate_on_new_schema
    (specimen,) = [m for m in exercises if m.model == "shop.Specimen"]
    assert not specimen.failures, specimen.failures
    inserted = {(c.field, c.value) for c in specimen.checks if c.op == "insert" and c.ok and not c.unchecked}
    assert (None, "fresh") in inserted and (None, "duplicate") in inserted
    for expected in [
        ("small", "min=-32768"),
        ("positive_small", "max=32767"),
        ("positive_big", "max=9223372036854775807"),
        ("amount", "min=-999.99"),
        ("email", "max_length=254"),
        ("kind", "choice 'b'"),
        ("level", "choice 2"),
        ("maybe", "null"),
        ("category", "null"),
    ]:
        assert expected in inserted, f"{expected} not written; written: {sorted(inserted, key=str)}"


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


def test_an_index_only_plan_exercises_no_model(run_case: Callable[[str], CaseRun]) -> None:
    """add_index changes no table or column: no model is exercised (gates.compat_scope = "changed"), and a
    plan that changes a column exercises its model and the models reaching it, not every model."""
    rehearsed = run_case("add_index").rehearsed
    exercised = rehearsed.candidate_on_old_schema + rehearsed.candidate_on_new_schema
    exercised += rehearsed.production_on_old_schema + rehearsed.production_on_new_schema
    assert exercised == [] and rehearsed.scope_description == "nothing (no table or column changes)"
    renamed = run_case("rename_column").rehearsed
    assert {m.model for m in renamed.candidate_on_new_schema} == {"shop.Item"}, "contenttypes, auth and Category are not changed"


def test_each_operation_says_whether_it_has_a_reverse(run_case: Callable[[str], CaseRun]) -> None:
    """The probe's plan carries reversibility per operation: RunPython with RunPython.noop has a reverse, without
    reverse_code none (what the advice reads, not the migration's all-or-nothing)."""
    (step,) = run_case("add_not_null_with_choices_and_noop_data").rehearsed.plan.steps
    assert [(c.type, c.reversible) for c in step.changes] == [
        ("AddField", True),
        ("AlterField", True),
        ("AlterField", True),
        ("RunPython", True),
    ]
    # The choices-only AlterFields run no SQL (Django's "-- (no-op)"); the column's statements are its own.
    assert [bool(sql) for sql in advice.operation_sql(step)] == [True, False, False, False]
    (irreversible,) = run_case("run_python_without_reverse").rehearsed.plan.steps
    assert [(c.type, c.reversible) for c in irreversible.changes] == [("RunPython", False)] and not irreversible.reversible


def test_a_data_migration_beyond_its_sql_is_caught(run_case: Callable[[str], CaseRun]) -> None:
    """The plan's SQL names shop_item only; its RunPython changes Category's rows and inserts a Group.
    Category (the data migration's app) is proven row by row, auth_group by the copy's statistics, and
    both changes are problems of the content check, forward and after the no-op reversal."""
    run = run_case("data_migration_beyond_its_sql")
    rehearsed = run.rehearsed
    assert rehearsed.writes is not None, "the probe counted no writes (PostgreSQL 15+ expected)"
    assert "public.shop_category" in rehearsed.content_tables and "public.auth_group" not in rehearsed.content_tables
    forward = rehearsed.content_diff()
    assert {"public.shop_item", "public.shop_category"} <= set(forward.proven_by_rows), forward.proof()
    assert {"public.auth_group", "public.auth_user"} <= set(forward.proven_by_statistics), forward.proof()
    assert "public.auth_group" not in forward.proven_by_rows and not forward.unproven, forward.problems()
    assert forward.problems() == ["public.shop_category.row content: values changed", "public.auth_group: 1 row added"]
    assert forward.added_columns == [("public.shop_item", "colour")]
    backward = rehearsal.reversal_diff(rehearsed, run.reversal)
    assert run.reversal.error is None and backward.problems() == forward.problems(), _describe(backward)
    # Every table the plan did not touch was proven without reading its rows.
    untouched = {"public.auth_user", "public.auth_group_permissions", "public.auth_user_groups"}
    assert untouched <= set(backward.proven_by_statistics), backward.proof()
