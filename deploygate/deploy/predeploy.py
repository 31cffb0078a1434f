"""The predeploy gate as a deploy step: what it may use (``PredeployGate``), what it decided (``PredeployVerdict``).

``judge_predeploy`` never sees the deploy's run: the step's adapter builds its context and
writes the verdict back, so the rules (reuse, skip, an accepted incompatibility, a failed
reversal check) are tested with hand-built contexts and a gate result made up on the spot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deploygate.deploy import gates
from deploygate.gate_result import GateResult, load_or_none, path_for
from deploygate.log import Say
from deploygate.record import GateRow

if TYPE_CHECKING:
    from deploygate.deploy.state import DeployRun

# A passed predeploy of the same image digest is reused this long: production moves on.
PREDEPLOY_REUSE_MIN = 60


@dataclass(frozen=True)
class PredeployGate:
    """All the predeploy step may use: the request's gate options, the candidate's digest, where its
    result lives, production's identity (to reuse a result only on the production it proved), the gate."""

    candidate_ref: str
    image_id: str
    result_path: Path
    skip_reason: str | None
    accept_incompatible: str | None
    gate_args: tuple[str, ...]
    skip_checks: Mapping[str, str]
    production: Callable[[], str]  # asked only when a passed result could be reused
    check_names: Callable[[str], set[str]]
    run_gate: Callable[[list[str], Path], GateResult]  # the predeploy suite with these arguments, writing its result there
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> PredeployGate:
        request, s = run.request, run.settings
        return cls(
            candidate_ref=request.candidate_ref,
            image_id=run.candidate.id,
            result_path=path_for(s.path(s.reports_dir), "predeploy", run.candidate.id),
            skip_reason=request.skip_predeploy,
            accept_incompatible=request.accept_incompatible,
            gate_args=tuple(request.gate_args),
            skip_checks=request.skip_checks,
            production=lambda: run.services.data.identity(run.db),
            check_names=run.services.gates.check_names,
            run_gate=lambda args, path: run.services.gates.run_gate(s, "predeploy", args, result_path=path, log=run.log),
            say=run.log,
        )


@dataclass(frozen=True)
class PredeployVerdict:
    """What the gate decided, for the record and the run: ``refusal`` set means the deploy stops here."""

    exceptions: Mapping[str, str] = field(default_factory=dict)  # in the order the record lists them
    rows: tuple[GateRow, ...] = ()
    notes: tuple[str, ...] = ()
    reversible: bool | None = None  # None: not judged (skipped), what the run believed stands
    hold: str | None = None  # the accepted incompatibility's reason: deploy behind a maintenance hold
    failed: tuple[str, ...] = ()  # the checks that failed

    @property
    def refusal(self) -> str | None:
        if self.failed and not self.hold:
            return f"predeploy failed: {', '.join(self.failed)}"
        return None


def _reusable(gate: PredeployGate, result: GateResult | None) -> bool:
    return (
        result is not None
        and result.passed
        and result.complete
        and not gate.gate_args
        and not gate.skip_checks
        and dt.datetime.now(dt.UTC) - result.finished_at() < dt.timedelta(minutes=PREDEPLOY_REUSE_MIN)
        and result.production == gate.production()
    )


def judge_predeploy(gate: PredeployGate) -> PredeployVerdict:
    """Reuse a passed predeploy of this image digest on this production, else run the gate now."""
    if gate.skip_reason:
        # An explicit, recorded escape hatch (and how the tests reach failures the gate would stop).
        gate.say(f"   predeploy SKIPPED on request: {gate.skip_reason}")
        return PredeployVerdict(exceptions={"skip predeploy": gate.skip_reason}, notes=(f"predeploy skipped: {gate.skip_reason}",))
    result = load_or_none(gate.result_path)
    if _reusable(gate, result):
        gate.say(f"   predeploy already passed for {gate.image_id[:19]} on this production at {result.finished}: not repeated")
        gates.log_checks(result, gate.say)
    else:
        skips = gates.skip_args("predeploy", gate.skip_checks, gate.check_names)
        result = gate.run_gate(["--candidate", gate.candidate_ref, *skips, *gate.gate_args], gate.result_path)
    exceptions = {f"override {k}": v for k, v in result.overrides.items()}
    notes = gates.notes(result)
    failed = result.failed()
    reversible = not any(c.category == "reversal" for c in failed)
    hold = None
    if failed and gate.accept_incompatible and all(c.category == "compat" for c in failed):
        hold = gate.accept_incompatible
        exceptions["accept incompatible"] = hold
        notes.append(f"incompatibility accepted ({hold}): deploying behind a maintenance hold")
        gate.say("   incompatible, accepted: the proxy will answer 503 + Retry-After during migrate-and-switch")
    return PredeployVerdict(
        exceptions=exceptions,
        rows=tuple(gates.rows(result)),
        notes=tuple(notes),
        reversible=reversible,
        hold=hold,
        failed=tuple(c.name for c in failed),
    )
