"""rollback_verify (pure logic on fakes): history is not a mismatch; a real mismatch has a recorded way out."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from deploygate import cli
from deploygate.deploy.runner import StageFailed
from deploygate.deploy.state import Request
from deploygate.deploy.undo import verify_previous
from deploygate.probe import parse_plan
from deploygate.record import DeployRecord, Outcome

SQUASHED = {"catalog.0001_squashed_0002_b": ["catalog.0001_initial", "catalog.0002_b"]}


@dataclass
class FakeRun:
    """What verify_previous touches of a DeployRun: the old color, the probe's plan, the proxy, the record."""

    outside_graph: list[str]
    request: Request = field(default_factory=lambda: Request(candidate_ref=""))
    record: DeployRecord = field(default_factory=lambda: DeployRecord(kind="rollback", outcome=Outcome.RUNNING))
    old_color: str = "blue"
    candidate: object = None  # the candidate's squashes are asked for only when a name is unknown
    lines: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.platform = SimpleNamespace(color=lambda color: SimpleNamespace(release="v1", image_id="sha256:1"))
        self.proxy = SimpleNamespace(verify=self.verified.append)

    def prober(self, _image):
        payload = {
            "plan": [],
            "applied_leaves": {},
            "outside_graph": self.outside_graph,
            "squash_replaces": SQUASHED,
            "installed_apps": ["catalog"],
        }
        return SimpleNamespace(plan=lambda: parse_plan(payload))

    def log(self, line: str) -> None:
        self.lines.append(line)


def test_names_a_squash_replaces_and_removed_apps_pass_and_are_said() -> None:
    run = FakeRun(["catalog.0001_initial", "catalog.0002_b", "legacy.0001_initial"])
    verify_previous(run)
    assert run.verified == ["blue"]
    assert run.record.notes == [
        "rollback verify: applied migrations outside blue's graph, not a mismatch: replaced by squash: 2, of apps no longer installed: 1"
    ]


def test_an_unknown_name_fails_and_names_the_way_out() -> None:
    run = FakeRun(["catalog.0003_candidates"])
    with pytest.raises(StageFailed, match=r"unknown \['catalog.0003_candidates'\].*--accept-schema-mismatch --reason"):
        verify_previous(run)
    assert run.verified == []


def test_an_accepted_mismatch_is_recorded_with_its_reason_and_the_rollback_goes_on() -> None:
    run = FakeRun(["catalog.0003_candidates"], request=Request(candidate_ref="", accept_schema_mismatch="0003 was faked by hand"))
    verify_previous(run)
    assert run.verified == ["blue"]
    accepted = run.record.exceptions["accept schema mismatch"]
    assert accepted.startswith(
        "0003 was faked by hand (accepted: schema does not match blue: pending [], unknown ['catalog.0003_candidates']"
    )
    assert any("ACCEPTED (0003 was faked by hand)" in line for line in run.lines)


def test_accepting_a_mismatch_needs_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rollback", "--accept-schema-mismatch"]) == 2
    assert '--accept-schema-mismatch needs --reason "why"' in capsys.readouterr().err
