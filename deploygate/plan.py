"""``deploygate plan``: the predeploy gate's result for one candidate, run now or reused, for the reviewer's view.

The same result file as the deploy's (``gate_result.path_for``): a plan run before a
merge is what the deploy then reuses, and a deploy's recent gate is what a plan reuses,
passed or failed, when it was a whole run on this production and recorded what the plan
shows (``plan_facts``). Rendering is ``plan_view``'s.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from deploygate import gate_result
from deploygate.config import Settings
from deploygate.database import production_identity
from deploygate.deploy import gates
from deploygate.deploy.predeploy import PREDEPLOY_REUSE_MIN
from deploygate.deploy.state import new_stamp
from deploygate.gate_result import GateResult
from deploygate.log import DeployLog, Say
from deploygate.plan_facts import REHEARSAL
from deploygate.platform.base import Platform
from deploygate.redaction import secrets_of


@dataclass(frozen=True)
class PlanRun:
    """The gate result the plan shows, whether it was reused, and what to keep out of the body."""

    result: GateResult
    reused: bool
    secrets: list[str]
    log_path: str | None = None


def reusable(result: GateResult | None, production: str, now: dt.datetime) -> bool:
    """Whether a stored result can stand for a run now: a whole run on this production, recent, with the plan's details."""
    return (
        result is not None
        and result.complete
        and result.production == production
        and REHEARSAL in (result.details or {})
        and now - result.finished_at() < dt.timedelta(minutes=PREDEPLOY_REUSE_MIN)
    )


def gate_for_plan(platform: Platform, settings: Settings, candidate_ref: str, say: Say) -> PlanRun:
    """The predeploy gate's result for ``candidate_ref`` on this production: reused when ``reusable``, else run now.

    Raises ``DeployGateError`` subclasses when the candidate or production cannot be reached
    or the gate wrote no result (``GateResultError``).
    """
    candidate = platform.resolve_image(candidate_ref, say)
    db = platform.database()
    secrets = secrets_of(settings, db)
    path = gate_result.path_for(settings.path(settings.reports_dir), "predeploy", candidate.id)
    stored = gate_result.load_or_none(path)
    if reusable(stored, production_identity(db), dt.datetime.now(dt.UTC)):
        say(f"the predeploy gate ran for {candidate.id[:19]} on this production at {stored.finished}: reused")
        return PlanRun(stored, reused=True, secrets=secrets)
    log = DeployLog(settings.path(settings.logs_dir) / f"plan_{new_stamp()}.log", secrets, echo=False)
    say(f"running the predeploy gate for {candidate_ref} (pytest output: {log.path.with_name(log.path.stem + '_predeploy.log')})...")
    result = gates.run_gate(settings, "predeploy", ["--candidate", candidate_ref], result_path=path, log=log)
    return PlanRun(result, reused=False, secrets=secrets, log_path=str(log.path))
