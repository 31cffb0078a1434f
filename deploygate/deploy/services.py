"""Everything a deploy reaches besides the platform, behind one typed seam (``Services``).

The steps never import the ledger, production's data, the backup, the gates, the probe,
the proxy, the traffic probe, the health URL, the lock or the report directly: they ask
``run.services``. ``Services.real()`` wires the real modules (the deploy as it always ran);
a unit test wires in-memory fakes (tests/unit/fakes.py) and runs every step, every abort
point and every rollback path without an engine. Each part is a small Protocol naming only
what the deploy uses of it; a module whose functions already have that shape (``ledger``,
``backup``, ``deploy.gates``) is its own implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from deploygate import window
from deploygate.config import Settings
from deploygate.database import DatabaseAddress, production_identity, wait_connectable
from deploygate.fingerprint import content_checksum
from deploygate.log import Say

if TYPE_CHECKING:
    from deploygate.backup import Backup
    from deploygate.gate_result import GateResult
    from deploygate.health import HealthSample
    from deploygate.ledger import Entry
    from deploygate.log import DeployLog
    from deploygate.platform import Platform
    from deploygate.platform.images import Image
    from deploygate.probe import MigrateResult, MigrationPlan
    from deploygate.proxy import AccessRecord, ProxyCount, Route
    from deploygate.record import DeployRecord
    from deploygate.traffic import Response


class Ledger(Protocol):
    """The deploy ledger in production's database (``deploygate.ledger``)."""

    def record(
        self,
        address: DatabaseAddress,
        mirror_dir: Path | None,
        kind: str,
        outcome: str,
        *,
        release: str | None = None,
        image_digest: str | None = None,
        detail: dict | None = None,
    ) -> Entry: ...

    def entries(self, address: DatabaseAddress, kind: str | None = None) -> list[Entry]: ...


class ProductionData(Protocol):
    """What the deploy reads and writes of production's rows (``window``, ``fingerprint``, ``database``)."""

    def max_ids(self, db: DatabaseAddress) -> dict[str, int]: ...

    def export_rows(
        self, db: DatabaseAddress, floors: dict[str, int], path: Path, migrate_writes: window.MigrateWrites | None = None
    ) -> int: ...

    def migrate_rows(self, db: DatabaseAddress, writes: window.MigrateWrites) -> dict[str, int]: ...

    def reapply_rows(self, db: DatabaseAddress, path: Path) -> int: ...

    def content_checksum(self, db: DatabaseAddress) -> str: ...

    def identity(self, db: DatabaseAddress) -> str: ...

    def wait_connectable(self, db: DatabaseAddress, *, timeout: float = 60) -> None: ...


class Backups(Protocol):
    """Production's dumps (``deploygate.backup``)."""

    def take_backup(self, platform: Platform, settings: Settings, db: DatabaseAddress, *, say: Say = print) -> Backup: ...

    def check_integrity(self, backup: Backup) -> None: ...

    def load_backup(self, manifest_path: Path) -> Backup: ...

    def restore_production(self, platform: Platform, db: DatabaseAddress, backup: Backup) -> None: ...

    def apply_retention(self, settings: Settings) -> list[Path]: ...


class Gates(Protocol):
    """The gate suites run as pytest processes (``deploy.gates``)."""

    def run_gate(self, settings: Settings, gate: str, args: list[str], *, result_path: Path, log: DeployLog) -> GateResult: ...

    def check_names(self, gate: str) -> set[str]: ...


class Probe(Protocol):
    """The probe in one release's image against production (``probe.Prober``)."""

    def plan(self) -> MigrationPlan: ...

    def migrate(self) -> MigrateResult: ...

    def migrate_to(self, targets: dict[str, str | None]) -> MigrateResult: ...


class Switch(Protocol):
    """The proxy, as the deploy switches it (``proxy.Proxy``)."""

    instances: dict

    @property
    def url(self) -> str: ...

    def current(self) -> Route | None: ...

    def route(self, color: str, *, fresh: bool = False) -> None: ...

    def hold(self, color: str) -> None: ...

    def verify(self, color: str) -> None: ...

    def records(self, since: float | None = None) -> Iterator[AccessRecord]: ...

    def counts(self, color: str) -> ProxyCount | None: ...


class Traffic(Protocol):
    """Steady traffic through the proxy while the deploy runs (``traffic.TrafficProbe``)."""

    def start(self) -> Traffic: ...

    def stop(self) -> list[Response]: ...


ProbeFactory = Callable[["Platform", Settings, "Image", Say], Probe]
ReportWriter = Callable[["DeployRecord", Sequence["Response"], Path, str], Path]


@dataclass(frozen=True)
class Services:
    """The seam: each field is one thing a deploy reaches, with only the calls it makes."""

    ledger: Ledger
    data: ProductionData
    backups: Backups
    gates: Gates
    probe: ProbeFactory  # the probe in an image, as settings configure it, saying into the log
    proxy: Callable[[Settings, Platform], Switch]
    traffic: Callable[[Settings, str], Traffic]  # configured, not started
    health: Callable[[str], HealthSample]  # one sample of a health URL
    lock: Callable[[DatabaseAddress, str], AbstractContextManager]  # the deploy lock of a project
    report: ReportWriter  # writes the report; returns its markdown

    @classmethod
    def real(cls) -> Services:
        """The deploy as it runs in production: Postgres, pytest gates, the probe's jobs, HAProxy, HTTP."""
        from deploygate import backup, ledger
        from deploygate.deploy import gates
        from deploygate.lock import DeployLock
        from deploygate.proxy import Proxy
        from deploygate.traffic import configured_probe

        return cls(
            ledger=ledger,
            data=_Postgres(),
            backups=backup,
            gates=gates,
            probe=_probe_in,
            proxy=Proxy,
            traffic=configured_probe,
            health=_health,
            lock=DeployLock,
            report=_write_report,
        )


class _Postgres:
    """``ProductionData`` on production's Postgres."""

    max_ids = staticmethod(window.max_ids)
    export_rows = staticmethod(window.export_rows)
    migrate_rows = staticmethod(window.migrate_rows)
    reapply_rows = staticmethod(window.reapply_rows)
    content_checksum = staticmethod(content_checksum)
    identity = staticmethod(production_identity)
    wait_connectable = staticmethod(wait_connectable)


def _probe_in(platform: Platform, settings: Settings, image: Image, say: Say) -> Probe:
    from deploygate.probe import Prober
    from deploygate.production import app_environment

    return Prober.configured(platform, settings, image, app_environment(platform, settings), say=say)


def _health(url: str) -> HealthSample:
    from deploygate.health import sample

    return sample(url, timeout=3)


def _write_report(record: DeployRecord, responses: Sequence[Response], logs_dir: Path, stamp: str) -> Path:
    from deploygate.report import write_report

    return write_report(record, responses, logs_dir, stamp=stamp).markdown
