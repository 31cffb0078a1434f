"""Deploy and rollback: the entry points. The steps are tables in ``steps`` (DEPLOY) and ``undo`` (ROLLBACK).

deploy:   lock -> candidate -> converge -> predeploy -> plan -> backup -> window -> green ->
          [hold] -> migrate -> green healthy -> post checks on green -> switch -> monitor ->
          post checks via proxy -> finish
rollback: export the window's rows -> traffic to the previous color -> undo the plan ->
          verify -> remove the new color -> ledger

Both hold the deploy lock for their whole run and end with a report, whatever happened.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from deploygate import ledger, replicas
from deploygate.config import Settings
from deploygate.deploy import abort, runner, steps, undo
from deploygate.deploy.services import Services
from deploygate.deploy.state import Checkpoint, DeployRun, Request, unfinished
from deploygate.errors import DeployGateError, one_line
from deploygate.platform import Platform
from deploygate.record import MonitoringRecord, Outcome, ReplicaLagRecord
from deploygate.traffic import Response

__all__ = ["Request", "Result", "RollbackRefused", "Services", "deploy", "rollback"]


class RollbackRefused(DeployGateError):
    """A forced rollback was refused (nothing to roll back, or past the forward-fix threshold without --force)."""


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    report: Path | None
    detail: str
    monitoring: MonitoringRecord | None = None  # the window's verdict, when the deploy reached it


def deploy(platform: Platform, settings: Settings, request: Request, *, echo: bool = True, services: Services | None = None) -> Result:
    """Deploy ``request.candidate_ref`` blue-green; roll back by itself on any failure after production was touched.

    Raises ``LockHeld`` when another deploy runs, ``runner.Refused`` when it stopped before
    touching production, ``runner.RollbackFailed`` when a rollback could not finish, and
    ``abort.Aborted`` when a signal or an abort request stopped it (rolled back by then).
    ``services``: what the deploy reaches besides the platform (the real ones by default).
    """
    run = DeployRun.create(platform, settings, request, echo=echo, services=services)
    started = dt.datetime.now(dt.UTC)
    with run.services.lock(run.db, settings.project):
        run.log(f"deploy of {request.candidate_ref} to {settings.project}; lock held")
        try:
            with abort.watching(run.db, started, run.log, run.services.ledger):
                outcome = runner.execute(steps.DEPLOY, run, undo.run_rollback)
            if outcome is Outcome.SUCCEEDED:
                run.log(f"DEPLOYMENT SUCCESSFUL: {run.candidate.tag} serves on {run.new_color}")
        finally:
            report = _finish_report(run)
    detail = run.record.rollback.reason if run.record.rollback else ("production untouched" if outcome is Outcome.DRY_RUN else "")
    return Result(outcome, report, detail, run.record.monitoring)


def rollback_reason(minutes: float, limit_min: int, *, force: bool) -> str:
    """Why a finished deploy is rolled back, as the log, report and ledger say it: "forced" only when
    --force took it past the forward-fix limit; within the limit it is a rollback on request."""
    if minutes > limit_min and force:
        return f"forced rollback (--force), {minutes:.1f} min after the switch (past the {limit_min}-min forward-fix limit)"
    return f"rollback on request, {minutes:.1f} min after the switch (within the {limit_min}-min forward-fix limit)"


def _last_deploy_checkpoint(entries: list[ledger.Entry], last: ledger.Entry) -> Checkpoint:
    detail = last.detail
    if "candidate" not in detail:
        # Ledgers written before checkpoints had a type kept the full detail on the "backed_up" entry.
        started = next(e for e in reversed(entries) if e.outcome == "backed_up" and e.detail.get("stamp") == detail.get("stamp"))
        detail = {**started.detail, "switched_at": detail.get("switched_at")}
    return Checkpoint.from_json(detail)


def rollback(
    platform: Platform,
    settings: Settings,
    *,
    force: bool = False,
    only_unfinished: bool = False,
    accept_schema_mismatch: str | None = None,
    echo: bool = True,
    services: Services | None = None,
) -> Result | None:
    """Forced rollback: of an unfinished deploy (crash), or of the last successful one within the forward-fix threshold.

    With ``only_unfinished`` (a CI job's cleanup after a cancel), a finished deploy is left as it
    is and None is returned when no deploy is open. ``accept_schema_mismatch`` (the reason,
    recorded): a schema ``rollback_verify`` finds not to be the previous release's is noted
    instead of keeping the deploy open. Raises ``RollbackRefused`` when there is nothing to roll
    back or it is too late without ``force``.
    """
    services = services or Services.real()
    if only_unfinished and unfinished(platform.database(), services.ledger) is None:
        return None
    request = Request(candidate_ref="", accept_schema_mismatch=accept_schema_mismatch)
    run = DeployRun.create(platform, settings, request, kind="rollback", echo=echo, services=services)
    if accept_schema_mismatch:
        run.record.exceptions["accept schema mismatch"] = accept_schema_mismatch
    with services.lock(run.db, settings.project):
        leftover = unfinished(run.db, services.ledger)
        if leftover is None and only_unfinished:  # another process closed it meanwhile
            return None
        if leftover is not None:
            run.log(f"rolling back the unfinished deploy {leftover.detail.get('stamp')}")
            run.resume(Checkpoint.from_json(leftover.detail))
            reason = undo.UNFINISHED_REASON
        else:
            entries = services.ledger.entries(run.db, "deploy")
            ended = [e for e in entries if e.outcome in ("succeeded", "rolled_back")]
            if not ended or ended[-1].outcome == "rolled_back":
                raise RollbackRefused("nothing to roll back: the last deploy was already rolled back (or there was none)")
            checkpoint = _last_deploy_checkpoint(entries, ended[-1])
            minutes = (time.time() - (checkpoint.switched_at or ended[-1].at.timestamp())) / 60
            if minutes > settings.forward_fix_after_min and not force:
                raise RollbackRefused(
                    f"the switch was {minutes:.0f} min ago, past the forward-fix threshold of {settings.forward_fix_after_min} min: "
                    "rows written since depend on the new schema; fix forward, or pass --force to roll back anyway"
                )
            run.resume(checkpoint)
            reason = rollback_reason(minutes, settings.forward_fix_after_min, force=force)
        try:
            if settings.traffic_rate > 0:
                run.traffic = services.traffic(settings, run.proxy.url).start()
            with abort.deferred(run.log):
                undo.run_rollback(run, reason)
            run.record.outcome = Outcome.ROLLED_BACK
        except BaseException:
            run.record.outcome = Outcome.FAILED
            raise
        finally:
            report = _finish_report(run)
    return Result(run.record.outcome, report, reason)


def traffic_line(responses: list[Response]) -> str:
    """``traffic probe: N requests, F failed, H held``: an accepted hold's 503 answers are their own class,
    failed is no answer or a 5xx otherwise (as the report counts them); other non-2xx answers are named when there are any."""
    failed, held = sum(r.failed for r in responses), sum(r.held for r in responses)
    other = sum(not r.ok and not r.failed and not r.held for r in responses)
    return f"traffic probe: {len(responses)} requests, {failed} failed, {held} held" + (f", {other} answered 4xx" if other else "")


def _finish_report(run: DeployRun) -> Path | None:
    """Stop the traffic probe, put what it wrote into the record, and write the report.

    Runs in a ``finally``: a report that cannot be written (matplotlib missing, a full disk) is said
    in the log and never replaces the deploy's own outcome or error.
    """
    responses = []
    if run.traffic is not None:
        responses = run.traffic.stop()
        run.log(traffic_line(responses))
    run.record.traffic_created_ids = [r.created_id for r in responses if r.created_id is not None]
    if run.replica_lag is not None:
        run.record.replica_lag = [ReplicaLagRecord(s.ts, s.name, s.behind_bytes, s.lag_s) for s in run.replica_lag.stop()]
        run.log("replica lag: " + "; ".join(replicas.lag_summary(run.replica_lag.samples())))
    try:
        markdown = run.services.report(run.record, responses, run.settings.path(run.settings.logs_dir), run.stamp)
    except Exception as exc:  # noqa: BLE001 - the deploy's outcome stands whatever the report does
        run.log(f"   report not written: {one_line(exc)}")
        return None
    run.log(f"report: {markdown}")
    return markdown
