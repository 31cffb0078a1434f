"""End-to-end: real deploys and rollbacks on an isolated production (project ``dge2e``), removed afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from deploygate import config, production
from deploygate.database import connect
from deploygate.platform import Platform
from deploygate.platform import connect as connect_platform
from deploygate.platform.images import Image
from deploygate.probe import Prober
from deploygate.production import app_environment
from deploygate.proxy import Proxy
from deploygate.traffic import TrafficProbe, body_template
from tests.support import free_port, mark_integration, project_name, stacks_on_failure

ROOT = Path(__file__).resolve().parents[2]
E2E_PROJECT = project_name("dge2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_integration(items, "e2e")


@pytest.fixture(scope="session")
def e2e_overrides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("e2e")
    return {
        "project": E2E_PROJECT,
        "proxy_port": str(free_port()),
        "state_dir": str(state / "state"),
        "backup_dir": str(state / "backups"),
        "reports_dir": str(state / "reports"),
        "logs_dir": str(state / "logs"),
        "seed_rows": "5000",
        "seed_members": "200",
        "monitor_window_s": "10",
        "health_timeout": "20",
        "traffic_rate": "20",
        # Deploys follow each other within minutes here; the 48 h rule has its own unit tests.
        "min_hours_between_deploys": "0",
        # The error burst these tests cause on purpose would (rightly) block deploys for 24 h.
        "max_error_rate_pct": "100",
        # Recorded, never replayed by these deploys (five app starts each): test_replay.py turns it on for its own.
        "replay_max_requests": "0",
    }


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config, e2e_overrides: dict[str, str]) -> config.Settings:
    return config.load(root=pytestconfig.rootpath, environ={}, overrides=e2e_overrides)


@pytest.fixture(scope="session")
def platform(settings: config.Settings) -> Platform:
    """This tier's own platform: session fixtures are cached once, so each tier binds its own settings."""
    return connect_platform(settings, say=print)


@pytest.fixture(scope="session")
def e2e_stack(platform: Platform, settings: config.Settings) -> Iterator[config.Settings]:
    """Production at v1 on blue, fresh for this run, and nothing left of it afterwards."""
    production.down(platform, settings, volumes=True)
    production.up(platform, settings, say=lambda message: None)
    yield settings
    production.down(platform, settings, volumes=True)


@pytest.fixture(scope="session")
def proxy(platform: Platform, e2e_stack: config.Settings) -> Proxy:
    return Proxy(e2e_stack, platform)


@dataclass
class CliRun:
    code: int
    output: str


class Deploygate:
    """Runs ``python -m deploygate`` as the user does: a configuration file (``--config``, after the
    command as a user of nox writes it), the tests' overrides, and the environment given."""

    def __init__(self, overrides: dict[str, str], *, config_file: Path | None = None, environ: dict[str, str] | None = None) -> None:
        self.overrides = overrides
        self.config_file = config_file
        self.environ = environ or {}

    def argv(self, *args: str, **extra: str) -> list[str]:
        argv = [sys.executable, "-m", "deploygate"]
        for name, value in {**self.overrides, **extra}.items():
            argv += ["--set", f"{name}={value}"]
        config_file = ["--config", str(self.config_file)] if self.config_file else []
        return [*argv, *args[:1], *config_file, *args[1:]]

    def env(self) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("DEPLOYGATE_")}, **self.environ}

    def run(self, *args: str, **extra: str) -> CliRun:
        done = subprocess.run(self.argv(*args, **extra), cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=900)
        return CliRun(done.returncode, done.stdout + done.stderr)

    def start(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args, **extra), cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def act_on(self, cues: list[tuple[str, Callable[[subprocess.Popen], None]]], *args: str, **extra: str) -> CliRun:
        """Run a command; as each cue's marker appears in its output (in order), call its action with the
        process (to signal it, or to act beside it); then let the command finish."""
        process = self.start(*args, **extra)
        seen, pending = [], list(cues)
        with stacks_on_failure(process, seen):
            for line in process.stdout:
                seen.append(line)
                if pending and pending[0][0] in line:
                    pending.pop(0)[1](process)
            process.wait(timeout=900)
        return CliRun(process.returncode, "".join(seen))

    def act_after(self, marker: str, action: Callable[[], None], *args: str, **extra: str) -> CliRun:
        """Run a command, call ``action`` once ``marker`` appears in its output, and let it finish."""
        return self.act_on([(marker, lambda process: action())], *args, **extra)

    def kill_after(self, marker: str, *args: str, **extra: str) -> str:
        """Start a command and SIGKILL it as soon as ``marker`` appears in its output; returns the output so far."""
        process = self.start(*args, **extra)
        seen = []
        with stacks_on_failure(process, seen):
            for line in process.stdout:
                seen.append(line)
                if marker in line:
                    process.send_signal(signal.SIGKILL)
                    break
            process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
        return "".join(seen)


@pytest.fixture(scope="session")
def dg(e2e_stack: config.Settings, e2e_overrides: dict[str, str]) -> Deploygate:
    return Deploygate(e2e_overrides)


@pytest.fixture
def traffic(e2e_stack: config.Settings, proxy: Proxy) -> Iterator[TrafficProbe]:
    """The test's own steady reads and writes through the proxy, independent of the deploy process."""
    probe = TrafficProbe(
        proxy.url,
        rate_per_s=20,
        read_paths=["/api/links/?page_size=20", "/api/links/{id}/"],
        write_path="/api/links/",
        write_body=body_template(e2e_stack.traffic_write_body),
        max_duration_s=900,
    ).start()
    yield probe
    probe.stop()


@pytest.fixture
def assert_back_on_v1(platform: Platform, e2e_stack: config.Settings, proxy: Proxy):
    """After a rollback: blue serves v1 through the proxy, the schema is v1's, green is gone, rows kept."""

    def check(created_ids: list[int]) -> None:
        live = proxy.current()
        assert live is not None and (live.color, live.release, live.hold) == ("blue", "v1", False), live
        body = requests.get(f"{proxy.url}/health/detailed/", timeout=10).json()
        assert body["status"] == "healthy" and body["release"]["name"] == "v1"
        assert body["migrations"]["pending"] == 0 and body["migrations"]["unknown_applied"] == [], body["migrations"]
        assert platform.color("green") is None
        db = platform.database()
        with connect(db) as conn:
            columns = {
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'unified_db_personlink'"
                ).fetchall()
            }
            assert "fahanie_cares_member_id" in columns and "bm_parliament_member_id" not in columns
            assert conn.execute("SELECT to_regclass('members_fahaniecaresmember') IS NOT NULL").fetchone()[0]
            if created_ids:
                found = conn.execute("SELECT count(*) FROM unified_db_personlink WHERE id = ANY(%s)", [created_ids]).fetchone()[0]
                assert found == len(set(created_ids)), f"{len(set(created_ids)) - found} rows written during the deploy are gone"

    return check


@pytest.fixture
def assert_converged(platform: Platform, e2e_stack: config.Settings, proxy: Proxy):
    """Whatever the deploy decided: one healthy color serves, the schema is its release's, no written row lost.

    Returns the color that serves.
    """

    def check(created_ids: list[int]) -> str:
        live = proxy.current()
        assert live is not None and not live.hold, live
        proxy.verify(live.color)
        serving = platform.color(live.color)
        image = Image(tag=serving.release, id=serving.image_id, built=False)
        plan = Prober.configured(platform, e2e_stack, image, app_environment(platform, e2e_stack)).plan()
        # Names a squash replaces, or of apps no longer installed, are history: at_release ignores them.
        assert plan.at_release, f"schema does not match {live.color} ({serving.release}): {plan.mismatch()}"
        with connect(platform.database()) as conn:
            found = conn.execute("SELECT count(*) FROM unified_db_personlink WHERE id = ANY(%s)", [created_ids]).fetchone()[0]
        assert found == len(set(created_ids)), f"{len(set(created_ids)) - found} rows written during the deploy are gone"
        return live.color

    return check


def report_of(output: str) -> dict:
    """The JSON report of the run whose output is given (its path is printed as the markdown's)."""
    line = next(line for line in reversed(output.splitlines()) if "report: " in line)
    return json.loads(Path(line.split("report: ", 1)[1].strip()).with_suffix(".json").read_text())
