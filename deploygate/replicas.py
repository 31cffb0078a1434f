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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deploygate.config import Settings
from deploygate.database import DatabaseAddress, connect
from deploygate.errors import DeployGateError
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
