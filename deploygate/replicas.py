"""Replicas of production's database: which are expected, and whether each has replayed a position of the primary.

After a migration commits on the primary, a streaming standby applies it only when it replays that
WAL. Until then an app that reads there meets the schema before, and a replica behind a long query
("conflict with recovery", up to ``max_standby_streaming_delay``) or a paused replay may stay there.
So the switch waits until every expected replica — named, so that a missing one fails rather than
passes — has replayed the primary's position after migrate (``pg_current_wal_lsn()`` there,
``pg_last_wal_replay_lsn()`` on the replica), within ``gates.replica_lag_max_s``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect
from deploygate.errors import DeployGateError, one_line
from deploygate.log import Say, quiet

_POLL_S = 0.2
_REPLAYED = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
       pg_wal_lsn_diff(%(target)s::pg_lsn, coalesce(pg_last_wal_replay_lsn(), '0/0'::pg_lsn))::bigint
"""


@dataclass(frozen=True)
class Standby:
    """A replica the switch waits for: its name (the standby's application_name) and how this host reaches it."""

    name: str
    address: DatabaseAddress


@dataclass(frozen=True)
class Replay:
    """How far one replica got: replayed the target or not, how long that took (or was waited), how far behind."""

    name: str
    replayed: bool
    waited_s: float
    behind_bytes: int | None = None  # None: never answered
    error: str = ""  # the last reason it could not be asked, or why it is not a replica

    def describe(self) -> str:
        if self.replayed:
            return f"{self.name} replayed it in {self.waited_s:.2f}s"
        behind = f"{self.behind_bytes:,} bytes behind" if self.behind_bytes is not None else "never answered"
        return f"{self.name} {behind} after {self.waited_s:.1f}s" + (f" ({self.error})" if self.error else "")


@dataclass(frozen=True)
class ReplayReport:
    """Every expected replica against the primary's position ``target_lsn``."""

    target_lsn: str
    replays: tuple[Replay, ...]

    @property
    def lagging(self) -> tuple[Replay, ...]:
        return tuple(r for r in self.replays if not r.replayed)

    @property
    def ok(self) -> bool:
        return not self.lagging


def configured(primary: DatabaseAddress, settings: Settings) -> list[Standby]:
    """The team's replicas (``[[database.replicas]]``), reached with the primary's database, user and password."""
    found = []
    for entry in settings.db_replicas:
        port = int(entry.get("port", 5432))
        name = entry.get("application_name") or f"{entry['host']}:{port}"
        found.append(Standby(name=name, address=dataclasses.replace(primary, host=entry["host"], port=port)))
    return found


def ensure_slot(primary: DatabaseAddress, slot: str) -> None:
    """A physical replication slot ``slot`` on the primary, made before its standby first starts: from then on
    the primary keeps every WAL segment the standby has not received, so it never falls off."""
    with connect(primary) as conn:
        conn.execute(
            "SELECT pg_create_physical_replication_slot(%(slot)s) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %(slot)s)",
            {"slot": slot},
        )


def current_lsn(primary: DatabaseAddress) -> str:
    """The primary's WAL position now: everything committed before is at or before it."""
    with connect(primary) as conn:
        return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def _ask(standby: Standby, target: str) -> tuple[bool, int | None, str]:
    """(replayed, bytes behind, problem) of one replica now."""
    try:
        with connect(standby.address) as conn:
            in_recovery, _replayed_at, behind = conn.execute(_REPLAYED, {"target": target}).fetchone()
    except DeployGateError as exc:
        return False, None, str(exc)
    except psycopg.Error as exc:  # connected, then the replica went away mid-query (stopped, shutting down)
        return False, None, f"{standby.name} broke off: {one_line(exc)}"
    if not in_recovery:
        return False, None, "it is not in recovery: a promoted replica, or the primary itself"
    return behind <= 0, int(behind), ""


def wait_replayed(
    primary: DatabaseAddress,
    standbys: Sequence[Standby],
    *,
    timeout_s: float,
    say: Say = quiet,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayReport:
    """Wait until each of ``standbys`` has replayed the primary's current position, or ``timeout_s`` passed.

    Asked again every 0.2 s; a replica that cannot be reached is asked again too (it may be restarting).
    """
    target = current_lsn(primary)
    started = clock()
    done: dict[str, Replay] = {}
    last: dict[str, tuple[int | None, str]] = {}
    while True:
        for standby in standbys:
            if standby.name in done:
                continue
            replayed, behind, problem = _ask(standby, target)
            if replayed:
                done[standby.name] = Replay(standby.name, True, round(clock() - started, 3), 0)
                say(f"   {done[standby.name].describe()}")
            else:
                last[standby.name] = (behind, problem)
        elapsed = clock() - started
        if len(done) == len(standbys) or elapsed >= timeout_s:
            break
        sleep(_POLL_S)
    replays = tuple(done.get(s.name) or Replay(s.name, False, round(elapsed, 1), *last.get(s.name, (None, ""))) for s in standbys)
    return ReplayReport(target_lsn=target, replays=replays)


@dataclass(frozen=True)
class LagSample:
    """One replica at one moment: bytes behind the primary's position then, and the primary's ``replay_lag``
    for it (None when the primary does not stream to it directly, or it is caught up and idle)."""

    ts: float
    name: str
    behind_bytes: int | None  # None: it could not be asked
    lag_s: float | None = None
    error: str = ""


# The primary's position and its own measure of each directly attached standby's replay lag, in one round trip.
_PRIMARY_LAG = """
SELECT pg_current_wal_lsn()::text,
       coalesce(json_object_agg(application_name, extract(epoch FROM replay_lag)) FILTER (WHERE application_name <> ''), '{}')
FROM pg_stat_replication
"""


def sample_lag(primary: DatabaseAddress, standbys: Sequence[Standby], clock: Callable[[], float] = time.time) -> list[LagSample]:
    """Every replica's lag now (one connection each, closed again); an unreachable one is a sample with its error."""
    try:
        with connect(primary) as conn:
            target, lags = conn.execute(_PRIMARY_LAG).fetchone()
    except (DeployGateError, psycopg.Error) as exc:
        return [LagSample(clock(), s.name, None, None, f"the primary: {one_line(exc)}") for s in standbys]
    samples = []
    for standby in standbys:
        _replayed, behind, problem = _ask(standby, target)
        # The primary's position is read first: a replica that replayed past it meanwhile is not behind (not "-160 kB").
        behind = None if behind is None else max(0, behind)
        lag = lags.get(standby.name)
        samples.append(LagSample(clock(), standby.name, behind, None if lag is None else round(float(lag), 3), problem))
    return samples


class LagSampler:
    """Samples every replica's lag in the background from ``start`` to ``stop``, for the report's timeline and the
    monitoring window: how far behind each replica was while the migration replayed and while users read there.

    A thread of its own (as the traffic probe is): the deploy's steps never wait for it. Bounded: one sample of
    each replica every ``every_s``, at most ``max_samples`` kept.
    """

    def __init__(self, primary: DatabaseAddress, standbys: Sequence[Standby], *, every_s: float = 1.0, max_samples: int = 20_000) -> None:
        self.primary, self.standbys, self.every_s, self.max_samples = primary, list(standbys), every_s, max_samples
        self._samples: list[LagSample] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-lag", daemon=True)

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.is_set() and len(self._samples) < self.max_samples:
            try:
                self._samples.extend(sample_lag(self.primary, self.standbys))
            except Exception as exc:  # noqa: BLE001 - a thread that died here would leave the timeline silently empty
                self._samples.extend(LagSample(time.time(), s.name, None, None, one_line(exc)) for s in self.standbys)
            self._stopping.wait(self.every_s)

    def samples(self, since: float = 0.0) -> list[LagSample]:
        """What was sampled so far, from ``since`` (epoch seconds)."""
        return [s for s in list(self._samples) if s.ts >= since]

    def stop(self) -> list[LagSample]:
        self._stopping.set()
        self._thread.join(timeout=10)
        return self.samples()


def lag_summary(samples: Sequence[LagSample]) -> list[str]:
    """Per replica: the most it was behind (bytes, and seconds where the primary measures it), or that it never answered."""
    lines = []
    for name in dict.fromkeys(s.name for s in samples):
        mine = [s for s in samples if s.name == name]
        answered = [s.behind_bytes for s in mine if s.behind_bytes is not None]
        if not answered:
            lines.append(f"{name} never answered ({mine[-1].error})")
            continue
        seconds = [s.lag_s for s in mine if s.lag_s is not None]
        unanswered = len(mine) - len(answered)
        lines.append(
            f"{name} at most {max(answered):,} bytes behind"
            + (f", replay lag at most {max(seconds):.2f}s" if seconds else "")
            + (f", {unanswered} of {len(mine)} samples unanswered" if unanswered else "")
        )
    return lines
