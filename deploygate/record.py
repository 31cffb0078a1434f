"""The record of one deploy or rollback: what was decided, what ran, what it measured.

The deploy builds it as it goes; the report renders it and writes it as JSON. Its schema
is these dataclasses, nothing else: the report never guesses at keys or spellings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class Outcome(str, Enum):
    """How a deploy (or a rollback) ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the candidate serves
    ROLLED_BACK = "rolled_back"  # production is back on the previous release
    REFUSED = "refused"  # stopped before production was touched
    FAILED = "failed"  # the rollback itself failed: the ledger keeps the deploy open
    ABORTED = "aborted"  # stopped by a signal or an abort request: rolled back if production was touched
    DRY_RUN = "dry_run"


@dataclass
class ImageRecord:
    ref: str
    tag: str | None = None
    image_id: str | None = None


@dataclass
class RouteRecord:
    """Where traffic went before the deploy."""

    color: str
    release: str


@dataclass
class GateRow:
    """One check of a gate: the measured value against its threshold, and the verdict."""

    gate: str
    name: str
    category: str
    threshold: str
    value: str
    verdict: str
    message: str = ""


@dataclass
class StageRecord:
    name: str
    started: float
    finished: float | None = None
    outcome: str = "running"  # ok | failed | running
    detail: str = ""


@dataclass
class BackupRecord:
    path: str
    size: int
    sha256: str
    restore_verified: str


@dataclass
class PlanRecord:
    label: str
    operations: list[str]
    sql: list[str]


@dataclass
class LockRecord:
    table: str
    mode: str
    held_s: float


@dataclass
class MigrationRecord:
    """A migration as production (or the copy) applied it: its time and its strongest lock per table."""

    label: str
    duration_s: float
    locks: list[LockRecord] = field(default_factory=list)
    error: str | None = None


@dataclass
class TrafficRecord:
    """One color's requests over a period, as the proxy logged them (the monitor's own health polls left out)."""

    requests: int
    errors: int
    error_rate_pct: float
    p50_ms: float | None
    p95_ms: float | None  # of a typical 5 s interval (window_judge.typical_p95), as judged


@dataclass
class SignatureRecord:
    """An error group of the app's output (exception type and innermost app frame), its count per color, one sample."""

    signature: str
    counts: dict[str, int]
    new: bool  # the new color showed it, the baseline did not
    sample: str  # secrets redacted


@dataclass
class SeriesRecord:
    """One color over one interval of the baseline and the window: requests, 5xx rate, p95."""

    start: float
    color: str
    requests: int
    error_rate_pct: float
    p95_ms: float | None


@dataclass
class MonitoringRecord:
    window_s: float
    threshold: int
    requests_by_color: dict[str, int]
    errors_by_color: dict[str, int]
    health_failures: int
    decision: str
    verdict: str = ""  # pass | fail | inconclusive (an accepted inconclusive window has decision "ok")
    reason: str = ""
    baseline_color: str = ""
    baseline_s: float = 0.0
    baseline: TrafficRecord | None = None
    new: TrafficRecord | None = None
    limits: dict[str, float] = field(default_factory=dict)
    signatures: list[SignatureRecord] = field(default_factory=list)
    series: list[SeriesRecord] = field(default_factory=list)
    extended_s: float = 0.0
    # The new color over the window by HAProxy's own counters: requests, errors, dropped_logs, unlogged_errors.
    proxy_counted: dict[str, int] = field(default_factory=dict)


@dataclass
class ReplicaLagRecord:
    """One replica at one moment of the deploy: bytes behind the primary (None: unanswered), the primary's replay_lag."""

    ts: float
    name: str
    behind_bytes: int | None
    lag_s: float | None = None


@dataclass
class RollbackRecord:
    reason: str
    trigger_ts: float
    traffic_on_previous_ts: float | None = None
    rows_exported: int | None = None
    export_path: str | None = None
    method: str | None = None
    error: str | None = None  # set when the rollback itself failed (the first error stays ``reason``)


@dataclass
class DeployRecord:
    """Everything a report shows about one deploy or rollback."""

    kind: str  # deploy | rollback
    outcome: Outcome
    candidate: ImageRecord | None = None
    previous: RouteRecord | None = None
    new_color: str | None = None
    gates: list[GateRow] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)
    backup: BackupRecord | None = None
    plan: list[PlanRecord] = field(default_factory=list)
    migrations: list[MigrationRecord] = field(default_factory=list)  # as applied to production
    monitoring: MonitoringRecord | None = None
    rollback: RollbackRecord | None = None
    exceptions: dict[str, str] = field(default_factory=dict)  # gates overridden or skipped, with the reason given
    notes: list[str] = field(default_factory=list)
    replica_lag: list[ReplicaLagRecord] = field(default_factory=list)  # sampled from the window's opening to the end
    # What the traffic probe wrote: every one must survive a rollback (JSON only, not the markdown).
    traffic_created_ids: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data
