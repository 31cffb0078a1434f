"""What one deploy (or rollback) run knows, and the checkpoint of it the ledger keeps.

State is never held only in memory: the proxy's state says which color serves, the
platform says which release each color runs, and the ledger (in production's database)
holds a ``Checkpoint`` of every deploy that touched production, so another process (after
a crash, even SIGKILL) can finish or undo it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deploygate import ledger
from deploygate.backup import Backup
from deploygate.cache import Namespaces
from deploygate.config import Settings
from deploygate.database import DatabaseAddress
from deploygate.deploy.services import Ledger, Probe, Services, Switch
from deploygate.errors import DeployGateError, one_line
from deploygate.log import DeployLog
from deploygate.platform import OTHER_COLOR, Platform
from deploygate.platform.images import Image
from deploygate.probe import MigrationPlan
from deploygate.proxy import Route
from deploygate.record import DeployRecord, ImageRecord, Outcome, RouteRecord, StageRecord
from deploygate.redaction import secrets_of
from deploygate.window import MigrateWrites

if TYPE_CHECKING:
    from deploygate.deploy.services import Traffic
    from deploygate.replicas import LagSampler

# Written after each rollback step passed: the deploy stays open, and says how far its rollback got.
ROLLING_BACK = "rolling_back"
# Ledger outcomes of a deploy that touched production and has not ended: another run must finish it.
OPEN_OUTCOMES = ("started", "backed_up", "migrated", "switched", ROLLING_BACK)


@dataclass(frozen=True)
class Request:
    """What was asked for on the command line."""

    candidate_ref: str
    dry_run: bool = False
    accept_incompatible: str | None = None  # the reason given: deploy behind a maintenance hold
    skip_predeploy: str | None = None  # the reason given
    gate_args: tuple[str, ...] = ()
    skip_checks: Mapping[str, str] = field(default_factory=dict)  # check name -> the reason given
    # A rollback's way out of a schema its verify finds not to be the previous release's (the reason given).
    accept_schema_mismatch: str | None = None


@dataclass
class Checkpoint:
    """What another run needs to finish or undo this deploy: written to the ledger at each checkpoint."""

    stamp: str
    candidate: ImageRecord
    previous: RouteRecord | None
    new_color: str
    reversal_targets: dict[str, str | None]
    plan: list[str]
    reversible: bool
    hold: str | None
    exceptions: dict[str, str]
    started_ids: dict[str, int]
    backup_manifest: str | None
    switched_at: float | None = None
    # Rows the release's migrate inserted: bookkeeping, left out of the window's rows (window.MigrateWrites).
    migrate_writes: MigrateWrites = field(default_factory=MigrateWrites)
    # The cache namespaces of the schema before and after (``deploygate.cache``): what a rollback drops.
    cache_namespaces: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Checkpoint:
        previous = data.get("previous") or data.get("live")  # "live" in ledgers written before the checkpoint had a type
        candidate = data["candidate"]
        return cls(
            stamp=data["stamp"],
            candidate=ImageRecord(
                ref=candidate.get("ref", ""), tag=candidate.get("tag"), image_id=candidate.get("image_id") or candidate.get("id")
            ),
            previous=RouteRecord(color=previous["color"], release=previous.get("release", "")) if previous else None,
            new_color=data["new_color"],
            reversal_targets=data.get("reversal_targets", {}),
            plan=[p["label"] if isinstance(p, dict) else p for p in data.get("plan", [])],
            reversible=data.get("reversible", True),
            hold=data.get("hold"),
            exceptions=data.get("exceptions", {}),
            started_ids=data.get("started_ids", {}),
            backup_manifest=data.get("backup_manifest"),
            switched_at=data.get("switched_at"),
            migrate_writes=MigrateWrites.from_json(data.get("migrate_writes")),
            cache_namespaces=data.get("cache_namespaces") or {},
        )


def new_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")


@dataclass
class DeployRun:
    """One deploy (or rollback) in progress: the parts it works with, what it learnt, and its record."""

    platform: Platform
    settings: Settings
    services: Services
    proxy: Switch
    log: DeployLog
    stamp: str
    db: DatabaseAddress
    request: Request
    record: DeployRecord
    candidate: Image | None = None
    previous: Route | None = None
    new_color: str = "green"
    plan: MigrationPlan | None = None
    plan_labels: list[str] = field(default_factory=list)  # what reversal undoes (the plan, or a resumed deploy's)
    reversal_targets: dict[str, str | None] = field(default_factory=dict)
    reversible: bool = True
    hold: str | None = None
    backup: Backup | None = None
    started_ids: dict[str, int] = field(default_factory=dict)
    migrate_writes: MigrateWrites = field(default_factory=MigrateWrites)
    switched_at: float | None = None
    touched: bool = False  # production was changed by this run: a failure now means a rollback
    holding: bool = False  # a rollback holds traffic until the schema is the previous release's again
    traffic: Traffic | None = None
    replica_lag: LagSampler | None = None  # every replica's lag, sampled from the window's opening to the report
    cache_namespaces: Namespaces | None = None  # the app's cache namespace per schema, when production has a cache

    @classmethod
    def create(
        cls,
        platform: Platform,
        settings: Settings,
        request: Request,
        *,
        kind: str = "deploy",
        echo: bool = True,
        services: Services | None = None,
    ) -> DeployRun:
        services = services or Services.real()
        stamp = new_stamp()
        db = platform.database()
        log = DeployLog(settings.path(settings.logs_dir) / f"deployment_{stamp}.log", secrets_of(settings, db), echo=echo)
        record = DeployRecord(
            kind=kind, outcome=Outcome.RUNNING, candidate=ImageRecord(ref=request.candidate_ref) if request.candidate_ref else None
        )
        return cls(
            platform=platform,
            settings=settings,
            services=services,
            proxy=services.proxy(settings, platform),
            log=log,
            stamp=stamp,
            db=db,
            request=request,
            record=record,
        )

    @property
    def old_color(self) -> str:
        return self.previous.color if self.previous else OTHER_COLOR[self.new_color]

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        """Time a named stage into the record; a failure is noted with its first line and re-raised."""
        stage = StageRecord(name=name, started=time.time())
        self.record.stages.append(stage)
        self.log(f"== {name}")
        try:
            yield stage
        except BaseException as exc:
            stage.finished, stage.outcome = time.time(), "failed"
            stage.detail = one_line(exc)
            self.log(f"   {name} FAILED: {stage.detail}")
            raise
        stage.finished, stage.outcome = time.time(), "ok"
        self.log(f"   {name} ok ({stage.finished - stage.started:.1f}s)")

    def prober(self, image: Image) -> Probe:
        """The probe in ``image`` against production (reads, or writes it rolls back; migrations)."""
        return self.services.probe(self.platform, self.settings, image, self.log)

    # --- the ledger ------------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        assert self.candidate is not None, "a checkpoint needs the candidate"
        return Checkpoint(
            stamp=self.stamp,
            candidate=ImageRecord(ref=self.request.candidate_ref, tag=self.candidate.tag, image_id=self.candidate.id),
            previous=RouteRecord(self.previous.color, self.previous.release) if self.previous else None,
            new_color=self.new_color,
            reversal_targets=self.reversal_targets,
            plan=self.plan_labels,
            reversible=self.reversible,
            hold=self.hold,
            # Recorded with the deploy they allowed: who may skip a gate must say why, durably.
            exceptions=self.record.exceptions,
            started_ids=self.started_ids,
            backup_manifest=str(self.backup.manifest_path) if self.backup else None,
            switched_at=self.switched_at,
            migrate_writes=self.migrate_writes,
            cache_namespaces={"before": self.cache_namespaces.before, "after": self.cache_namespaces.after}
            if self.cache_namespaces
            else {},
        )

    @property
    def candidate_cache_namespace(self) -> str | None:
        """The namespace the candidate's color caches under: its schema's (None without a cache)."""
        return self.cache_namespaces.after if self.cache_namespaces else None

    def record_in_ledger(self, outcome: str, **extra: object) -> None:
        """Append this deploy's checkpoint to the ledger with ``outcome`` (mirrored under logs/)."""
        detail = {**self.checkpoint().to_json(), **extra}
        rollback = self.record.rollback
        if rollback is not None:  # how far the rollback got, for the next command to say and finish
            detail["rollback"] = {
                "reason": rollback.reason,
                "trigger_ts": rollback.trigger_ts,
                "traffic_on_previous_ts": rollback.traffic_on_previous_ts,
            }
        self.services.ledger.record(
            self.db,
            self.settings.path(self.settings.logs_dir),
            "deploy",
            outcome,
            release=self.candidate.tag,
            image_digest=self.candidate.id,
            detail=detail,
        )

    def resume(self, checkpoint: Checkpoint) -> None:
        """Take over a deploy another (maybe dead) process wrote to the ledger."""
        # self.stamp stays this run's own: its log, export and report must not overwrite the original's.
        self.record.notes.append(f"resumes the deploy of {checkpoint.stamp}")
        self.record.candidate = checkpoint.candidate
        self.candidate = Image(tag=checkpoint.candidate.tag or "", id=checkpoint.candidate.image_id or "", built=False)
        self.previous = Route(checkpoint.previous.color, checkpoint.previous.release) if checkpoint.previous else None
        self.new_color = checkpoint.new_color
        self.reversal_targets = checkpoint.reversal_targets
        self.plan_labels = checkpoint.plan
        self.reversible = checkpoint.reversible
        self.hold = checkpoint.hold
        self.started_ids = checkpoint.started_ids
        self.migrate_writes = checkpoint.migrate_writes
        self.switched_at = checkpoint.switched_at
        if checkpoint.cache_namespaces:
            self.cache_namespaces = Namespaces(**checkpoint.cache_namespaces)
        self.record.exceptions.update(checkpoint.exceptions)
        if checkpoint.backup_manifest and Path(checkpoint.backup_manifest).exists():
            self.backup = self.services.backups.load_backup(Path(checkpoint.backup_manifest))
        self.touched = True


def unfinished(db: DatabaseAddress, the_ledger: Ledger = ledger) -> ledger.Entry | None:
    """The last deploy that touched production and never ended (its process died), if any."""
    deploys = the_ledger.entries(db, "deploy")
    if deploys and deploys[-1].outcome in OPEN_OUTCOMES:
        return deploys[-1]
    return None


def unfinished_notice(db: DatabaseAddress) -> str | None:
    """One line for the start of any command: which deploy is unfinished, since when, where it stopped, and
    what ``rollback`` will do; None when no deploy is open (or the ledger cannot be read: production is down)."""
    try:
        deploys = ledger.entries(db, "deploy")
    except DeployGateError:
        return None
    if not deploys or deploys[-1].outcome not in OPEN_OUTCOMES:
        return None
    last = deploys[-1]
    since = next((e.at for e in deploys if e.detail.get("stamp") == last.detail.get("stamp")), last.at)
    return describe_unfinished(last, since)


def undo_after_traffic(plan: list[str], reversible: bool, new_color: str) -> list[str]:
    """What a rollback does once traffic is back on the previous color, in words."""
    schema = [f"reverse {', '.join(plan)}" if reversible else "restore the backup"] if plan else []
    return [*schema, f"remove {new_color}"]


def _clock(at: dt.datetime | float) -> str:
    moment = at if isinstance(at, dt.datetime) else dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_unfinished(last: ledger.Entry, since: dt.datetime) -> str:
    """The notice for the open deploy whose last ledger entry is ``last`` (pure: unit-tested)."""
    checkpoint = Checkpoint.from_json(last.detail)
    release = checkpoint.candidate.tag or checkpoint.candidate.ref
    previous = checkpoint.previous
    back_to = f"{previous.color} ({previous.release})" if previous else "the previous color"
    where = f"last step {last.detail.get('step') or last.outcome}"
    rollback = last.detail.get("rollback")
    if last.outcome == ROLLING_BACK and rollback:
        traffic = rollback.get("traffic_on_previous_ts")
        where = f"its rollback ({rollback.get('reason')}) stopped after {last.detail.get('step')}" + (
            f", traffic back on {back_to} since {_clock(traffic)}" if traffic else ""
        )
    undo = [f"traffic on {back_to}", *undo_after_traffic(checkpoint.plan, checkpoint.reversible, checkpoint.new_color)]
    return (
        f"!! deploy {checkpoint.stamp} of {release} is unfinished (since {_clock(since)}; {where}): "
        f"`nox -s rollback` will: {'; '.join(undo)}"
    )
