"""An in-memory production for unit tests of the deploy: a fake Platform and fakes of every other ``Services`` part.

``World`` is the one state they share: the colors, where the proxy routes, the ledger, the
applied migrations, and the calls every fake took in order. A test injects a failure with
``world.fail("platform.start_color", error)`` and an action (a stop signal, an abort request)
with ``world.on("proxy.route", action)``; each fake names its calls the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from deploygate import config
from deploygate.backup import Backup
from deploygate.config import Settings
from deploygate.database import DatabaseAddress
from deploygate.deploy.services import Services
from deploygate.errors import StackError
from deploygate.gate_result import FAILED, CheckResult, GateResult, now_iso
from deploygate.health import HealthSample
from deploygate.ledger import Entry
from deploygate.platform.base import ColorState, Platform, Replica
from deploygate.platform.images import Image
from deploygate.probe import MigrateResult, MigrationPlan, parse_migrate, parse_plan
from deploygate.proxy import AccessRecord, ProxyCount, Route
from deploygate.record import DeployRecord
from deploygate.window import MigrateWrites

# Each release's migration graph, in order: v2 adds one migration to v1's.
RELEASES = {
    "v1": ["catalog.0001_initial"],
    "v2": ["catalog.0001_initial", "catalog.0002_price"],
    "v3": ["catalog.0001_initial", "catalog.0002_price", "catalog.0003_stock"],
}
DB = DatabaseAddress(host="db.fake", port=5432, name="app", user="app", password="fake-password")


def settings(root: Path, **overrides: object) -> Settings:
    """Settings of a production under ``root``: no traffic probe, an instant monitoring window (which, with no
    traffic to judge, is accepted as inconclusive)."""
    values = {
        "db_password": "fake-password",
        "traffic_rate": 0,
        "monitor_window_s": 0,
        "on_inconclusive": "accept",
        "health_timeout": 1,
        **overrides,
    }
    return config.load(root=root, environ={}, overrides=values)


def stop_signal(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """An action sending this process a stop signal (what CI's cancel or a Ctrl-C does)."""
    return lambda: os.kill(os.getpid(), signum)


@dataclass
class World:
    """Production as the fakes hold it, and what happened to it."""

    applied: list[str] = field(default_factory=lambda: list(RELEASES["v1"]))
    ledger: list[Entry] = field(default_factory=list)
    route: Route | None = None  # release is not kept here: the proxy reads it from the color
    colors: dict[str, ColorState] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    faults: dict[str, BaseException] = field(default_factory=dict)
    actions: dict[str, Callable[[], None]] = field(default_factory=dict)
    gate_failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # gate -> (check, category)
    migrate_fails_at: str | None = None  # the migration whose apply fails (the ones before it stay applied)
    unhealthy: set[str] = field(default_factory=set)  # colors whose replicas never become healthy
    access: list[AccessRecord] = field(default_factory=list)
    unlogged_5xx: dict[str, int] = field(default_factory=dict)  # color -> 5xx the proxy counted but did not log
    output: dict[str, str] = field(default_factory=dict)  # color -> its output, as ``docker logs --timestamps`` gives it
    health_ok: bool = True
    checksum_moves: bool = False  # production's content changes under a dry run
    reports: list[DeployRecord] = field(default_factory=list)

    def fail(self, call: str, error: BaseException) -> None:
        self.faults[call] = error

    def on(self, call: str, action: Callable[[], None]) -> None:
        """``action`` runs once, the next time ``call`` is made (before the call does anything)."""
        self.actions[call] = action

    def touch(self, call: str) -> None:
        self.calls.append(call)
        action = self.actions.pop(call, None)
        if action is not None:
            action()
        if call in self.faults:
            raise self.faults[call]

    # --- what a test asserts on
    @property
    def serving(self) -> str | None:
        """The color users reach ("hold" during a maintenance hold)."""
        if self.route is None:
            return None
        return "hold" if self.route.hold else self.route.color

    def deploy_outcomes(self) -> list[str]:
        return [e.outcome for e in self.ledger if e.kind == "deploy"]

    def steps_of(self, call: str) -> list[str]:
        return [c for c in self.calls if c.startswith(call)]


def _release(image: Image) -> str:
    return image.tag.rsplit(":", 1)[-1]


def _replicas(color: str, state: str, health: str) -> tuple[Replica, ...]:
    return (Replica(name=f"app_{color}_1", state=state, health=health, address=f"10.0.0.{len(color)}"),)


class FakePlatform:
    """The ``Platform`` interface in memory: colors are ``ColorState``s in the world."""

    kind = "fake"
    network_name = "app_net"
    proxy_name = "app_proxy"

    def __init__(self, world: World, settings: Settings) -> None:
        self.world, self.settings = world, settings

    def color_name(self, color: str) -> str:
        return f"app_{color}"

    def wait_ready(self, timeout: float) -> None:
        self.world.touch("platform.wait_ready")

    def resolve_image(self, reference: str, say) -> Image:
        self.world.touch("platform.resolve_image")
        if reference not in RELEASES:
            raise StackError(f"no image {reference}")
        return Image(tag=f"app:{reference}", id=f"sha256:{reference}", built=False)

    def prune_releases(self, keep: set[str], ours: set[str]) -> list[str]:
        self.world.touch("platform.prune_releases")
        return []

    def database(self) -> DatabaseAddress:
        self.world.touch("platform.database")
        return DB

    def database_endpoint(self) -> tuple[str, int]:
        return DB.host, DB.port

    def database_image(self) -> str:
        return "sha256:postgres"

    def color(self, color: str) -> ColorState | None:
        return self.world.colors.get(color)

    def _set(self, color: str, release: str, image_id: str, state: str, processes: Mapping[str, str]) -> ColorState:
        health = "unhealthy" if color in self.world.unhealthy else "healthy"
        self.world.colors[color] = ColorState(color, release, image_id, _replicas(color, state, health), dict(processes))
        return self.world.colors[color]

    def start_color(
        self, color: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str] | None = None
    ) -> ColorState:
        self.world.touch(f"platform.start_color {color}")
        return self._set(color, _release(image), image.id, "running", {name: "running" for name in processes or {}})

    def start_processes(self, color: str, image: Image, environment: Mapping[str, str], processes: Mapping[str, str]) -> None:
        self.world.touch(f"platform.start_processes {color}")
        state = self.world.colors[color]
        self.world.colors[color] = ColorState(color, state.release, state.image_id, state.replicas, {n: "running" for n in processes})

    def stop_processes(self, color: str) -> None:
        self.world.touch(f"platform.stop_processes {color}")
        state = self.world.colors[color]
        self.world.colors[color] = ColorState(color, state.release, state.image_id, state.replicas, {n: "exited" for n in state.processes})

    def resume_color(self, color: str, *, processes: bool = True) -> ColorState:
        self.world.touch(f"platform.resume_color {color}")
        state = self.world.colors[color]
        return self._set(
            color, state.release, state.image_id, "running", {n: "running" if processes else s for n, s in state.processes.items()}
        )

    def stop_color(self, color: str) -> None:
        self.world.touch(f"platform.stop_color {color}")
        state = self.world.colors[color]
        self._set(color, state.release, state.image_id, "exited", {n: "exited" for n in state.processes})

    def remove_color(self, color: str) -> None:
        self.world.touch(f"platform.remove_color {color}")
        self.world.colors.pop(color, None)

    def wait_healthy(self, color: str, timeout: float) -> ColorState:
        self.world.touch(f"platform.wait_healthy {color}")
        state = self.world.colors.get(color)
        if state is None or not state.healthy:
            raise StackError(f"app_{color} did not become healthy")
        return state

    def upstreams(self, color: str) -> list[str]:
        return [f"app_{color}:8000"]

    def color_output(self, color: str, since: float, until: float | None = None) -> str:
        return self.world.output.get(color, "")

    def proxy_instances(self) -> list[str]:
        return [""]

    def proxy_urls(self) -> list[str]:
        return ["http://proxy.fake"]

    def proxy_running(self, instance: str = "") -> bool:
        return True

    def standbys(self) -> list:
        self.world.touch("platform.standbys")
        return []  # the fake production has no replica: the step that waits for them has nothing to wait for

    def cache_urls(self) -> None:
        return None  # the fake production has no cache: nothing is namespaced, nothing dropped

    def __getattr__(self, name: str):
        raise NotImplementedError(f"the fake platform has no {name}: the deploy should not need it")


class FakeProxy:
    """The proxy's routing as the deploy switches it; ``verify`` asks whether the world routes as expected."""

    def __init__(self, world: World, platform: Platform) -> None:
        self.world, self.platform = world, platform
        self.instances = {"": None}

    @property
    def url(self) -> str:
        return "http://proxy.fake"

    def current(self) -> Route | None:
        route = self.world.route
        if route is None:
            return None
        color = self.platform.color(route.color)
        return Route(route.color, color.release if color else "", route.hold)

    def route(self, color: str, *, fresh: bool = False) -> None:
        self.world.touch(f"proxy.route {color}")
        self.world.route = Route(color, "")

    def hold(self, color: str) -> None:
        self.world.touch(f"proxy.hold {color}")
        self.world.route = Route(color, "", hold=True)

    def verify(self, color: str) -> None:
        self.world.touch(f"proxy.verify {color}")
        state = self.platform.color(color)
        if self.world.serving != color or state is None or not state.running:
            raise StackError(f"through the proxy /health/ is not answered by {color}")

    def records(self, since: float | None = None) -> Iterator[AccessRecord]:
        return iter([r for r in self.world.access if since is None or r.ts >= since])

    def counts(self, color: str) -> ProxyCount:
        """What the proxy's counters say: every logged request of ``color`` and the 5xx it did not log."""
        logged = [r for r in self.world.access if r.color == color]
        unlogged = self.world.unlogged_5xx.get(color, 0)
        return ProxyCount(len(logged) + unlogged, sum(r.status >= 500 for r in logged) + unlogged)


class FakeLedger:
    def __init__(self, world: World) -> None:
        self.world = world

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
    ) -> Entry:
        self.world.touch(f"ledger.record {outcome}")
        # As the real ledger stores it: JSON, so a checkpoint read back is what another process would read.
        entry = Entry(dt.datetime.now(dt.UTC), kind, outcome, release, image_digest, json.loads(json.dumps(detail or {})))
        self.world.ledger.append(entry)
        return entry

    def entries(self, address: DatabaseAddress, kind: str | None = None) -> list[Entry]:
        return [e for e in self.world.ledger if kind is None or e.kind == kind]


class FakeData:
    """Production's rows: 10 rows before the deploy, 3 more written during its window."""

    def __init__(self, world: World) -> None:
        self.world = world

    def max_ids(self, db: DatabaseAddress) -> dict[str, int]:
        self.world.touch("data.max_ids")
        return {"catalog_product": 10}

    def export_rows(self, db: DatabaseAddress, floors: dict[str, int], path: Path, migrate_writes: MigrateWrites | None = None) -> int:
        self.world.touch("data.export_rows")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("table,id,row\n" + "".join(f"catalog_product,{i},[]\n" for i in (11, 12, 13)))
        return 3

    def migrate_rows(self, db: DatabaseAddress, writes: MigrateWrites) -> dict[str, int]:
        return {}

    def reapply_rows(self, db: DatabaseAddress, path: Path) -> int:
        self.world.touch("data.reapply_rows")
        return len(path.read_text().splitlines()) - 1

    def content_checksum(self, db: DatabaseAddress) -> str:
        self.world.touch("data.content_checksum")
        return f"checksum-{len(self.world.calls) if self.world.checksum_moves else 0}"

    def identity(self, db: DatabaseAddress) -> str:
        return "fake-production"

    def wait_connectable(self, db: DatabaseAddress, *, timeout: float = 60) -> None:
        self.world.touch("data.wait_connectable")


class FakeBackups:
    """A backup is a file holding the applied migrations; restoring it puts them back."""

    def __init__(self, world: World) -> None:
        self.world = world

    def take_backup(self, platform, settings: Settings, db: DatabaseAddress, *, say=print) -> Backup:
        self.world.touch("backups.take_backup")
        path = settings.path(settings.backup_dir) / "backup_fake.dump"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.world.applied))
        backup = Backup(path, path.stat().st_size, "0" * 64, "17", "17", now_iso(), {"catalog_product": 10}, 0.0)
        backup.manifest_path.write_text(json.dumps(backup.to_json()))
        return backup

    def check_integrity(self, backup: Backup) -> None:
        self.world.touch("backups.check_integrity")

    def load_backup(self, manifest_path: Path) -> Backup:
        data = json.loads(manifest_path.read_text())
        return Backup(**{**data, "path": Path(data["path"])})

    def restore_production(self, platform, db: DatabaseAddress, backup: Backup) -> None:
        self.world.touch("backups.restore_production")
        self.world.applied = json.loads(backup.path.read_text())

    def apply_retention(self, settings: Settings) -> list[Path]:
        return []


class FakeGates:
    """Every gate passes its one check unless ``world.gate_failures`` names failing ones."""

    def __init__(self, world: World) -> None:
        self.world = world

    def run_gate(self, settings: Settings, gate: str, args: list[str], *, result_path: Path, log) -> GateResult:
        self.world.touch(f"gates.run_gate {gate}")
        failures = self.world.gate_failures.get(gate, [])
        checks = [CheckResult(f"{gate}::{name}", name, category, FAILED, message="fails") for name, category in failures]
        checks = checks or [CheckResult(f"{gate}::test_ok", "test_ok", "health")]
        return GateResult(gate, now_iso(), now_iso(), passed=not failures, complete=True, checks=checks)

    def check_names(self, gate: str) -> set[str]:
        return {"test_ok", "test_compat"}


def _plan_step(label: str) -> dict:
    app, name = label.split(".")
    return {
        "app": app,
        "name": name,
        "operations": ["AddField"],
        "operation_types": ["AddField"],
        "reversible": True,
        "atomic": True,
        "sql": [f"-- {label}"],
    }


class FakeProbe:
    """The probe in one release: its plan is its graph against ``world.applied``; migrate applies it."""

    def __init__(self, world: World, image: Image) -> None:
        self.world, self.graph = world, RELEASES[_release(image)]

    def plan(self) -> MigrationPlan:
        self.world.touch("probe.plan")
        pending = [label for label in self.graph if label not in self.world.applied]
        leaves: dict[str, str | None] = {"catalog": None}
        for label in self.world.applied:
            leaves[label.split(".")[0]] = label.split(".")[1]
        steps = [_plan_step(label) for label in pending]
        outside = [label for label in self.world.applied if label not in self.graph]
        payload = {"plan": steps, "applied_leaves": leaves, "applied": list(self.world.applied), "outside_graph": outside}
        return parse_plan({**payload, "installed_apps": ["catalog"]})

    def migrate(self) -> MigrateResult:
        self.world.touch("probe.migrate")
        done: list[dict] = []
        for label in [label for label in self.graph if label not in self.world.applied]:
            if label == self.world.migrate_fails_at:
                return parse_migrate({"migrations": done, "error": f"{label}: lock timeout"}, exit_code=1)
            self.world.applied.append(label)
            app, name = label.split(".")
            done.append(
                {"app": app, "name": name, "direction": "forwards", "duration_s": 0.01, "statements": 1, "locks": {}, "error": None}
            )
        return parse_migrate({"migrations": done, "error": None})

    def migrate_to(self, targets: dict[str, str | None]) -> MigrateResult:
        self.world.touch("probe.migrate_to")
        for app, target in targets.items():
            mine = [label for label in self.world.applied if label.startswith(f"{app}.")]
            keep = mine[: mine.index(f"{app}.{target}") + 1] if target is not None else []
            self.world.applied = [label for label in self.world.applied if label not in mine or label in keep]
        return parse_migrate({"migrations": [], "error": None})


def services(world: World) -> Services:
    """Every part of the deploy's seam, in memory, over ``world``."""

    def report(record: DeployRecord, responses: Sequence, logs_dir: Path, stamp: str) -> Path:
        world.reports.append(record)
        return logs_dir / f"deployment_report_{stamp}.md"

    def health(url: str) -> HealthSample:
        world.touch("health.sample")
        return HealthSample(url, 200 if world.health_ok else 503, 1.0, None)

    return Services(
        ledger=FakeLedger(world),
        data=FakeData(world),
        backups=FakeBackups(world),
        gates=FakeGates(world),
        probe=lambda platform, settings, image, say: FakeProbe(world, image),
        proxy=lambda settings, platform: FakeProxy(world, platform),
        traffic=_no_traffic,
        health=health,
        lock=lambda db, project: nullcontext(),
        report=report,
    )


def _no_traffic(settings: Settings, url: str):
    raise AssertionError("the traffic probe is off in unit tests (traffic_rate 0)")


@dataclass
class Production:
    """A production on v1 served by blue, with the fakes over it: what a test deploys to."""

    root: Path
    world: World = field(default_factory=World)

    def __post_init__(self) -> None:
        self.settings = settings(self.root)
        self.platform = FakePlatform(self.world, self.settings)
        self.services = services(self.world)
        self.platform._set("blue", "v1", "sha256:v1", "running", {})
        self.world.route = Route("blue", "")
        self.world.calls.clear()

    def configure(self, **overrides: object) -> None:
        self.settings = settings(self.root, **overrides)
        self.platform.settings = self.settings
