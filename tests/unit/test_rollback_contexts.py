"""The ROLLBACK steps' cores, called with hand-built contexts (no DeployRun): each returns a typed result.

A failure a core decides itself (the previous color is gone, nothing to restore, a schema that
is not the previous release's) is a result with ``failure`` set, never a half-written run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deploygate import window
from deploygate.deploy import colors, safekeeping, schema
from deploygate.errors import StackError
from deploygate.platform.images import Image
from deploygate.probe import parse_migrate
from deploygate.proxy import Route
from tests.unit.fakes import DB, RELEASES, FakeBackups, FakeData, FakePlatform, FakeProbe, FakeProxy, World, settings

V2 = Image(tag="app:v2", id="sha256:v2", built=False)


@pytest.fixture
def world() -> World:
    return World()


def _after_a_deploy(tmp_path: Path, world: World) -> FakePlatform:
    """Green (v2) serves on v2's schema; blue (v1) is stopped, kept for the rollback."""
    platform = FakePlatform(world, settings(tmp_path))
    platform._set("blue", "v1", "sha256:v1", "exited", {"worker": "exited"})
    platform._set("green", "v2", "sha256:v2", "running", {"worker": "running"})
    world.route, world.applied = Route("green", ""), list(RELEASES["v2"])
    return platform


def _back(platform: FakePlatform, world: World, lines: list[str], **changes: object) -> colors.TrafficBack:
    back = colors.TrafficBack(
        platform=platform,
        switch=FakeProxy(world, platform),
        old_color="blue",
        new_color="green",
        hold=False,
        timeout=1,
        say=lines.append,
    )
    return dataclasses.replace(back, **changes)


# --- traffic back --------------------------------------------------------------------------------


def test_traffic_goes_back_on_the_previous_color_and_says_when(tmp_path: Path, world: World) -> None:
    platform, lines = _after_a_deploy(tmp_path, world), []
    returned = colors.traffic_back(_back(platform, world, lines))
    assert returned.failure is None and returned.holding is False and returned.on_previous_at is not None
    assert world.serving == "blue" and world.colors["green"].processes == {"worker": "exited"}
    assert world.colors["blue"].processes == {"worker": "running"}
    assert lines == ["   proxy -> blue (v1)"]


def test_a_previous_color_that_no_longer_exists_is_a_failure_that_touches_nothing(tmp_path: Path, world: World) -> None:
    platform = _after_a_deploy(tmp_path, world)
    del world.colors["blue"]
    returned = colors.traffic_back(_back(platform, world, []))
    assert returned == colors.TrafficReturned(holding=False, failure="cannot roll back: app_blue no longer exists")
    assert world.calls == ["platform.wait_ready"] and world.serving == "green"


def test_a_previous_color_unhealthy_on_the_current_schema_is_held(tmp_path: Path, world: World) -> None:
    platform, lines = _after_a_deploy(tmp_path, world), []
    world.unhealthy.add("blue")
    returned = colors.traffic_back(_back(platform, world, lines))
    assert returned.holding is True and returned.on_previous_at is None and returned.failure is None
    assert world.serving == "hold" and world.colors["blue"].processes == {"worker": "exited"}
    assert lines == [
        "   blue is not healthy on the current schema (app_blue did not become healthy): holding traffic",
        "   proxy -> maintenance hold",
    ]


def test_a_deploy_that_held_traffic_is_held_again_without_the_previous_processes(tmp_path: Path, world: World) -> None:
    platform = _after_a_deploy(tmp_path, world)
    returned = colors.traffic_back(_back(platform, world, [], hold=True))
    assert returned.holding is True and world.serving == "hold"
    assert "platform.wait_healthy blue" not in world.calls and world.colors["blue"].processes == {"worker": "exited"}


def test_once_the_schema_is_back_the_held_previous_color_serves_again(tmp_path: Path, world: World) -> None:
    platform, lines = _after_a_deploy(tmp_path, world), []
    world.route = Route("blue", "", hold=True)
    serving = colors.serve_previous_again(_back(platform, world, lines))
    assert serving.release == "v1" and serving.at > 0 and world.serving == "blue"
    assert world.colors["blue"].processes == {"worker": "running"} and lines == ["   proxy -> blue (v1)"]


# --- export --------------------------------------------------------------------------------------


def _export(tmp_path: Path, world: World, lines: list[str], writes: window.MigrateWrites) -> safekeeping.WindowExport:
    data = FakeData(world)
    return safekeeping.WindowExport(
        path=tmp_path / "rollback_data.csv",
        started_ids={"catalog_product": 10},
        migrate_writes=writes,
        export_rows=lambda floors, path, w: data.export_rows(DB, floors, path, w),
        migrate_rows=lambda w: {"django_content_type": 2},
        say=lines.append,
    )


def test_the_windows_rows_are_exported_and_migrates_own_are_left_out(tmp_path: Path, world: World) -> None:
    lines: list[str] = []
    export = _export(tmp_path, world, lines, window.MigrateWrites({"django_content_type": 5}, {"django_content_type": [7]}))
    exported = safekeeping.export_window(export)
    assert exported == safekeeping.WindowExported(tmp_path / "rollback_data.csv", 3) and exported.path.exists()
    note = safekeeping.left_out_bookkeeping(export)
    assert note == "rollback export: left out 2 rows (django_content_type 2) the release's migrate wrote (bookkeeping)"
    assert lines == [
        f"   exported 3 rows written during the window to {tmp_path / 'rollback_data.csv'}",
        "   left out 2 rows (django_content_type 2) the release's migrate wrote (bookkeeping)",
    ]


def test_without_migrates_own_rows_there_is_nothing_to_leave_out(tmp_path: Path, world: World) -> None:
    assert safekeeping.left_out_bookkeeping(_export(tmp_path, world, [], window.MigrateWrites())) is None


# --- undo the plan -------------------------------------------------------------------------------


def _undo(tmp_path: Path, world: World, lines: list[str], **changes: object) -> schema.SchemaUndo:
    backups, data = FakeBackups(world), FakeData(world)
    undo = schema.SchemaUndo(
        plan_labels=("catalog.0002_price",),
        reversal_targets={"catalog": "0001_initial"},
        reversible=True,
        probe=lambda: FakeProbe(world, V2),
        backup=None,
        restore=lambda backup: backups.restore_production(None, DB, backup),
        reapply_rows=lambda path: data.reapply_rows(DB, path),
        export_path=None,
        say=lines.append,
    )
    return dataclasses.replace(undo, **changes)


def test_an_applied_plan_is_reversed(tmp_path: Path, world: World) -> None:
    world.applied, lines = list(RELEASES["v2"]), []
    undone = schema.undo_schema(_undo(tmp_path, world, lines))
    assert undone == schema.SchemaUndone("reversed to {'catalog': '0001_initial'}") and world.applied == RELEASES["v1"]
    assert lines == ["   reversed to {'catalog': '0001_initial'}"]


@pytest.mark.parametrize(
    "changes, method",
    [
        ({"reversal_targets": {}}, "nothing to reverse (the plan was empty)"),
        ({}, "nothing to reverse: none of the plan's migrations is applied"),
    ],
)
def test_nothing_is_undone_when_nothing_was_applied(tmp_path: Path, world: World, changes: dict, method: str) -> None:
    undone = schema.undo_schema(_undo(tmp_path, world, [], **changes))
    assert undone == schema.SchemaUndone(method) and "probe.migrate_to" not in world.calls


def _reversal_fails(world: World) -> FakeProbe:
    class ReversalFails(FakeProbe):
        def migrate_to(self, targets):
            return parse_migrate({"migrations": [], "error": "IrreversibleError"}, exit_code=1)

    return ReversalFails(world, V2)


def test_a_failed_reversal_without_a_backup_is_a_failure(tmp_path: Path, world: World) -> None:
    world.applied, lines = list(RELEASES["v2"]), []
    undone = schema.undo_schema(_undo(tmp_path, world, lines, probe=lambda: _reversal_fails(world)))
    assert undone == schema.SchemaUndone(None, failure="the plan cannot be reversed and there is no backup to restore")
    assert lines == ["   reversal failed (IrreversibleError): restoring the backup instead"]  # the method is never said


def test_a_failed_reversal_restores_the_backup_and_puts_the_windows_rows_back(tmp_path: Path, world: World) -> None:
    backup = FakeBackups(world).take_backup(None, settings(tmp_path), DB)  # taken on v1's schema
    export = tmp_path / "rollback_data.csv"
    export.write_text("table,id,row\ncatalog_product,11,[]\ncatalog_product,12,[]\n")
    world.applied = list(RELEASES["v2"])
    undo = _undo(tmp_path, world, [], probe=lambda: _reversal_fails(world), backup=backup, export_path=str(export))
    undone = schema.undo_schema(undo)
    assert undone == schema.SchemaUndone("restored backup_fake.dump and re-applied 2 rows written during the window")
    assert world.applied == RELEASES["v1"]


def test_an_irreversible_plan_goes_straight_to_the_backup(tmp_path: Path, world: World) -> None:
    world.applied = list(RELEASES["v2"])
    undone = schema.undo_schema(_undo(tmp_path, world, [], reversible=False))
    assert undone.failure == "the plan cannot be reversed and there is no backup to restore"
    assert "probe.migrate_to" not in world.calls


# --- verify --------------------------------------------------------------------------------------


def _check(tmp_path: Path, world: World, lines: list[str], **changes: object) -> schema.SchemaCheck:
    platform = _after_a_deploy(tmp_path, world)
    world.applied = list(RELEASES["v1"])
    check = schema.SchemaCheck(
        old_color="blue",
        color_state=platform.color,
        probe_of=lambda image: FakeProbe(world, image),
        candidate=V2,
        accept_mismatch=None,
        say=lines.append,
    )
    return dataclasses.replace(check, **changes)


def test_the_previous_releases_schema_passes_verify(tmp_path: Path, world: World) -> None:
    assert schema.check_schema(_check(tmp_path, world, [])) == schema.SchemaVerdict()


def test_a_schema_that_is_not_the_previous_releases_is_a_failure_naming_the_way_out(tmp_path: Path, world: World) -> None:
    check = _check(tmp_path, world, [])
    world.applied.append("catalog.0009_by_hand")
    verdict = schema.check_schema(check)
    assert verdict.failure.startswith("schema does not match blue: pending [], unknown ['catalog.0009_by_hand']")
    assert verdict.failure.endswith('`nox -s rollback -- --accept-schema-mismatch --reason "why"` closes the deploy (recorded)')
    assert verdict.exceptions == {}


def test_an_accepted_mismatch_is_an_exception_and_a_note_not_a_failure(tmp_path: Path, world: World) -> None:
    lines: list[str] = []
    check = _check(tmp_path, world, lines, accept_mismatch="faked by hand")
    world.applied.append("catalog.0009_by_hand")
    verdict = schema.check_schema(check)
    assert verdict.failure is None and verdict.exceptions["accept schema mismatch"].startswith("faked by hand (accepted: schema")
    assert verdict.notes[-1].startswith("rollback verify: schema does not match blue") and lines[-1].endswith("ACCEPTED (faked by hand)")


def test_a_probe_that_cannot_run_fails_verify_with_its_error(tmp_path: Path, world: World) -> None:
    check = _check(tmp_path, world, [])
    world.fail("probe.plan", StackError("the probe could not run"))
    with pytest.raises(StackError, match="the probe could not run"):
        schema.check_schema(check)
