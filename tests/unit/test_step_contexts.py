"""The DEPLOY steps' cores, called with hand-built contexts (no DeployRun): each returns a typed result.

The fakes of tests/unit/fakes.py stand in for the platform, the proxy, the probe and the gates;
every context is built here, field by field, so a core that reached for more than its context
holds could not pass.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from deploygate import gate_result, window
from deploygate.deploy import colors, predeploy, safekeeping, schema
from deploygate.errors import StackError
from deploygate.gate_result import FAILED, CheckResult, GateResult, now_iso
from deploygate.ledger import Entry
from deploygate.platform.images import Image
from deploygate.probe import parse_plan
from deploygate.record import GateRow
from tests.unit.fakes import DB, RELEASES, FakeBackups, FakeGates, FakePlatform, FakeProbe, World, settings

V2 = Image(tag="app:v2", id="sha256:v2", built=False)


@pytest.fixture
def world() -> World:
    return World()


# --- predeploy -----------------------------------------------------------------------------------


def _gate(tmp_path: Path, world: World, lines: list[str], **changes: object) -> predeploy.PredeployGate:
    gates = FakeGates(world)

    def run_gate(args: list[str], path: Path) -> GateResult:
        world.calls.append(f"args {args}")
        return gates.run_gate(settings(tmp_path), "predeploy", args, result_path=path, log=lines.append)

    gate = predeploy.PredeployGate(
        candidate_ref="v2",
        image_id=V2.id,
        result_path=tmp_path / "predeploy" / "v2.json",
        skip_reason=None,
        accept_incompatible=None,
        gate_args=(),
        skip_checks={},
        production=lambda: "fake-production",
        check_names=gates.check_names,
        run_gate=run_gate,
        say=lines.append,
    )
    return dataclasses.replace(gate, **changes)


def test_a_passed_predeploy_is_a_verdict_with_its_rows_and_no_refusal(tmp_path: Path, world: World) -> None:
    verdict = predeploy.judge_predeploy(_gate(tmp_path, world, []))
    assert verdict.refusal is None and verdict.reversible is True and verdict.hold is None and verdict.failed == ()
    assert verdict.rows == (GateRow("predeploy", "test_ok", "health", "", "", "passed", ""),)
    assert world.calls == ["args ['--candidate', 'v2']", "gates.run_gate predeploy"]


def test_a_skipped_predeploy_is_recorded_and_leaves_reversibility_unjudged(tmp_path: Path, world: World) -> None:
    lines: list[str] = []
    verdict = predeploy.judge_predeploy(_gate(tmp_path, world, lines, skip_reason="hotfix"))
    assert verdict == predeploy.PredeployVerdict(exceptions={"skip predeploy": "hotfix"}, notes=("predeploy skipped: hotfix",))
    assert verdict.reversible is None and verdict.refusal is None
    assert lines == ["   predeploy SKIPPED on request: hotfix"] and world.calls == []


def test_a_failed_compat_check_is_a_refusal_naming_it(tmp_path: Path, world: World) -> None:
    world.gate_failures["predeploy"] = [("test_compat", "compat")]
    verdict = predeploy.judge_predeploy(_gate(tmp_path, world, []))
    assert verdict.failed == ("test_compat",) and verdict.hold is None
    assert verdict.refusal == "predeploy failed: test_compat"
    assert verdict.reversible is True  # only a failed reversal check makes the deploy irreversible


def test_an_accepted_incompatibility_is_a_hold_not_a_refusal(tmp_path: Path, world: World) -> None:
    world.gate_failures["predeploy"] = [("test_compat", "compat")]
    lines: list[str] = []
    verdict = predeploy.judge_predeploy(_gate(tmp_path, world, lines, accept_incompatible="a short hold is fine"))
    assert verdict.refusal is None and verdict.hold == "a short hold is fine"
    assert verdict.exceptions == {"accept incompatible": "a short hold is fine"}
    assert verdict.notes == ("incompatibility accepted (a short hold is fine): deploying behind a maintenance hold",)
    assert lines[-1] == "   incompatible, accepted: the proxy will answer 503 + Retry-After during migrate-and-switch"


def test_accepting_an_incompatibility_does_not_cover_a_failed_reversal(tmp_path: Path, world: World) -> None:
    world.gate_failures["predeploy"] = [("test_compat", "compat"), ("test_reverse", "reversal")]
    verdict = predeploy.judge_predeploy(_gate(tmp_path, world, [], accept_incompatible="fine"))
    assert verdict.hold is None and verdict.reversible is False
    assert verdict.refusal == "predeploy failed: test_compat, test_reverse"


def _passed_result(production: str) -> GateResult:
    check = CheckResult("predeploy::test_ok", "test_ok", "health")
    return GateResult("predeploy", now_iso(), now_iso(), passed=True, complete=True, production=production, checks=[check])


def test_a_passed_result_of_this_digest_on_this_production_is_reused(tmp_path: Path, world: World) -> None:
    lines: list[str] = []
    gate = _gate(tmp_path, world, lines)
    gate_result.save(_passed_result("fake-production"), gate.result_path)
    verdict = predeploy.judge_predeploy(gate)
    assert world.calls == [] and verdict.refusal is None and [r.name for r in verdict.rows] == ["test_ok"]
    assert lines[0].startswith("   predeploy already passed for sha256:v2 on this production at ") and lines[0].endswith("not repeated")


@pytest.mark.parametrize(
    "changes", [{"production": lambda: "another-production"}, {"gate_args": ("-k", "x")}, {"skip_checks": {"test_ok": "why"}}]
)
def test_a_passed_result_is_not_reused_elsewhere_or_with_other_options(tmp_path: Path, world: World, changes: dict) -> None:
    gate = _gate(tmp_path, world, [], **changes)
    gate_result.save(_passed_result("fake-production"), gate.result_path)
    predeploy.judge_predeploy(gate)
    assert "gates.run_gate predeploy" in world.calls


def test_a_failed_data_check_is_a_refusal_that_no_acceptance_covers(tmp_path: Path, world: World) -> None:
    failing = GateResult("predeploy", now_iso(), now_iso(), checks=[CheckResult("n", "test_x", "data", FAILED)])
    gate = _gate(tmp_path, world, [], run_gate=lambda args, path: failing, accept_incompatible="fine")
    assert predeploy.judge_predeploy(gate).refusal == "predeploy failed: test_x"


# --- plan and migrate ----------------------------------------------------------------------------


def test_the_plan_is_what_the_candidate_would_apply_with_its_reversal_targets(world: World) -> None:
    lines: list[str] = []
    planned = schema.plan_schema(schema.SchemaPlanning(probe=lambda: FakeProbe(world, V2), reversible=True, say=lines.append))
    assert planned.plan.labels == ["catalog.0002_price"] and planned.reversal_targets == {"catalog": "0001_initial"}
    assert planned.reversible is True and [r.label for r in planned.records] == ["catalog.0002_price"]
    assert lines == ["   plan: ['catalog.0002_price']; reversal targets {'catalog': '0001_initial'}"]


def test_a_plan_can_take_reversibility_away_but_never_give_it_back(world: World) -> None:
    irreversible = {
        "plan": [
            {
                "app": "catalog",
                "name": "0002_price",
                "operations": ["RunSQL"],
                "operation_types": ["RunSQL"],
                "reversible": False,
                "atomic": True,
                "sql": [],
            }
        ],
        "applied_leaves": {"catalog": "0001_initial"},
        "installed_apps": ["catalog"],
    }
    probe = type("P", (), {"plan": lambda self: parse_plan(irreversible)})()
    assert schema.plan_schema(schema.SchemaPlanning(probe=lambda: probe, reversible=True, say=print)).reversible is False
    assert schema.plan_schema(schema.SchemaPlanning(lambda: FakeProbe(world, V2), reversible=False, say=print)).reversible is False


def _migration(world: World, lines: list[str]) -> schema.Migration:
    return schema.Migration(
        max_ids=lambda: {"catalog_product": 10},
        probe=lambda: FakeProbe(world, Image("app:v3", "sha256:v3", False)),
        migrate_rows=lambda writes: {"django_content_type": 1},
        say=lines.append,
    )


def test_a_migrate_that_passed_is_ok_with_its_records_and_where_its_own_rows_are(world: World) -> None:
    lines: list[str] = []
    migration = _migration(world, lines)
    migrated = schema.migrate_schema(migration)
    assert migrated.ok and migrated.failure is None and world.applied == RELEASES["v3"]
    assert [m.label for m in migrated.migrations] == ["catalog.0002_price", "catalog.0003_stock"]
    assert migrated.writes == window.MigrateWrites()  # the fake probe reports no inserted rows
    assert lines == ["   catalog.0002_price: 0.010s, no table locks", "   catalog.0003_stock: 0.010s, no table locks"]
    note = schema.migrate_bookkeeping(migration, migrated.writes)
    assert note == "migrate itself wrote 1 rows (django_content_type 1): bookkeeping, left out of the rows written during the window"
    assert lines[-1] == "   migrate itself wrote 1 rows (django_content_type 1): bookkeeping, not the window's writes"


def test_a_migrate_that_failed_half_way_is_a_failure_with_what_it_applied(world: World) -> None:
    world.migrate_fails_at = "catalog.0003_stock"
    migrated = schema.migrate_schema(_migration(world, []))
    assert not migrated.ok and migrated.error == "catalog.0003_stock: lock timeout"
    assert migrated.failure == "migrate failed on production: catalog.0003_stock: lock timeout"
    assert [m.label for m in migrated.migrations] == ["catalog.0002_price"] and migrated.writes == window.MigrateWrites()


# --- backup --------------------------------------------------------------------------------------


def test_a_backup_is_taken_checked_and_described_for_the_record(tmp_path: Path, world: World) -> None:
    backups, s = FakeBackups(world), settings(tmp_path)
    taken = safekeeping.take_backup(
        safekeeping.BackupTaking(take=lambda: backups.take_backup(None, s, DB), check_integrity=backups.check_integrity)
    )
    assert world.calls == ["backups.take_backup", "backups.check_integrity"]
    assert taken.record.path == str(taken.backup.path) and taken.record.sha256 == "0" * 64
    assert taken.record.restore_verified == "by the predeploy gate's restore of the same server's dump"


def test_a_backup_whose_integrity_check_fails_fails_the_step(tmp_path: Path, world: World) -> None:
    backups, s = FakeBackups(world), settings(tmp_path)
    world.fail("backups.check_integrity", StackError("sha256 differs from the manifest"))
    with pytest.raises(StackError, match="sha256 differs"):
        safekeeping.take_backup(safekeeping.BackupTaking(lambda: backups.take_backup(None, s, DB), backups.check_integrity))


# --- the new color, the switch, finish -----------------------------------------------------------


def _platform(tmp_path: Path, world: World) -> FakePlatform:
    platform = FakePlatform(world, settings(tmp_path))
    platform._set("blue", "v1", "sha256:v1", "running", {})
    return platform


def _new_color(platform: FakePlatform, lines: list[str], *, hold: bool) -> colors.NewColor:
    return colors.NewColor(
        platform=platform, color="green", image=V2, environment=lambda: {}, processes={"worker": "w"}, hold=hold, say=lines.append
    )


def test_the_new_color_starts_with_its_processes_and_replaces_a_stale_one(tmp_path: Path, world: World) -> None:
    platform, lines = _platform(tmp_path, world), []
    platform._set("green", "v0", "sha256:v0", "exited", {})
    started = colors.start_color(_new_color(platform, lines, hold=False))
    assert started.replaced == "v0" and started.state.release == "v2" and started.state.processes == {"worker": "running"}
    assert lines == ["   removing the previous green (v0)"]
    assert world.calls == ["platform.remove_color green", "platform.start_color green"]


def test_behind_a_hold_the_new_color_starts_without_its_processes(tmp_path: Path, world: World) -> None:
    started = colors.start_color(_new_color(_platform(tmp_path, world), [], hold=True))
    assert started.replaced is None and started.state.processes == {}


def test_the_switch_routes_to_the_new_color_and_says_when(world: World) -> None:
    routed, lines = [], []
    before = time.time()
    switched = colors.switch_to(colors.TrafficSwitch(route=routed.append, color="green", say=lines.append))
    assert routed == ["green"] and switched.color == "green" and before <= switched.at <= time.time()
    assert lines == ["   proxy -> green"]


def _finish(platform: FakePlatform, world: World, lines: list[str], **changes: object) -> colors.Finish:
    finish = colors.Finish(
        record_succeeded=lambda: world.calls.append("ledger succeeded"),
        deploys=lambda: [
            Entry(None, "deploy", "succeeded", "v1", "sha256:v1", {}),
            Entry(None, "deploy", "succeeded", "v0", "sha256:v0", {}),
        ],
        platform=platform,
        old_color="blue",
        new_color="green",
        candidate_id="sha256:v2",
        keep_releases=2,
        apply_retention=lambda: [Path("/b/backup_1.dump")],
        say=lines.append,
    )
    return dataclasses.replace(finish, **changes)


def test_finish_records_success_first_then_stops_the_old_color_and_applies_retention(tmp_path: Path, world: World) -> None:
    platform, lines, kept, offered = _platform(tmp_path, world), [], [], []
    platform.prune_releases = lambda keep, ours: kept.append(keep) or offered.append(ours) or ["app:v0"]
    finished = colors.finish_deploy(_finish(platform, world, lines))
    assert finished == colors.Finished(stopped="blue", removed_backups=("backup_1.dump",), removed_images=("app:v0",))
    assert world.calls == ["ledger succeeded", "platform.stop_color blue"] and not world.colors["blue"].running
    assert kept == [{"sha256:v0", "sha256:v2", "sha256:v1"}]  # the last succeeded deploy, the candidate, what runs
    assert offered == [{"sha256:v0", "sha256:v1"}]  # only what this production's ledger deployed may go
    assert lines == ["   stopped blue (kept for rollback)", "   retention: removed backup_1.dump", "   retention: removed image app:v0"]


def test_finish_without_an_old_color_stops_nothing(tmp_path: Path, world: World) -> None:
    finished = colors.finish_deploy(_finish(FakePlatform(world, settings(tmp_path)), world, [], apply_retention=list))
    assert finished == colors.Finished(stopped=None, removed_backups=(), removed_images=())


def test_a_finish_whose_ledger_write_fails_changes_no_color(tmp_path: Path, world: World) -> None:
    platform = _platform(tmp_path, world)

    def no_ledger() -> None:
        raise StackError("production's database does not answer")

    with pytest.raises(StackError):
        colors.finish_deploy(_finish(platform, world, [], record_succeeded=no_ledger))
    assert world.calls == [] and world.colors["blue"].running
