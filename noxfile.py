"""deploygate's sessions. Thin on purpose: each calls the library's CLI or a pytest suite.

All sessions share one environment, the interpreter nox runs in (``python=False``), with
requirements.txt satisfied: no per-session virtualenv is built, so a warm session starts
its work at once. Sessions that change production are ``default=False``.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import time
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"
ROOT = Path(__file__).parent
REQUIREMENTS = ROOT / "requirements.txt"


def _missing_requirements() -> list[str]:
    """Pinned requirements the current interpreter does not have at their pinned version."""
    missing = []
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if not match:
            continue
        name, version = match.groups()
        try:
            if importlib.metadata.version(name) != version:
                missing.append(f"{name}=={version}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{name}=={version}")
    return missing


def _shared_env(session: nox.Session) -> None:
    """Make sure the one shared environment has requirements.txt (installs only what is missing)."""
    missing = _missing_requirements()
    if missing:
        session.log(f"installing {len(missing)} missing requirement(s): {', '.join(missing)}")
        session.run(sys.executable, "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS), external=True)


def _deploygate(session: nox.Session, *args: str) -> None:
    session.run(sys.executable, "-m", "deploygate", *args, external=True)


def _deploygate_to_the_end(session: nox.Session, *args: str) -> None:
    """A command that changes production: every stop signal nox gets is passed on to it, and nox waits
    for its rollback (nox's own 0.3 s before SIGTERM and SIGKILL would cut the rollback short)."""
    if str(ROOT) not in sys.path:  # nox does not put the noxfile's folder on the path; the checkout's library is there
        sys.path.insert(0, str(ROOT))
    from deploygate.signal_relay import relaying_signals  # standard library only: safe before requirements

    with relaying_signals():
        session.run(sys.executable, "-m", "deploygate", *args, external=True, interrupt_timeout=None, terminate_timeout=None)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run deploygate's own checks: lint, unit (no engine), integration and end-to-end (real engine), e2e on a 2-node swarm of their own."""
    _shared_env(session)
    _lint(session)
    _deploygate(session, "engine")
    # Built here, with progress on screen, rather than silently inside pytest's captured fixtures.
    releases = ("v1", "v2", "v2-safe", "v2-broken-migration", "v2-raw-sql")
    _deploygate(session, "images", *(arg for release in releases for arg in ("--release", release)))
    # --durations: the CI log names the slowest tests (the run must stay well under 30 minutes).
    # --timeout (pytest-timeout, this repository's own requirement, not the gates'): a test that hangs fails after
    # 20 minutes, setup included (the longest measured is under 3), and the suite goes on, rather than the whole
    # run ending at CI's limit with no word of where it waited.
    timeout = ["--timeout=1200", "--timeout-method=signal"]
    session.run(sys.executable, "-m", "pytest", "--durations=25", *timeout, *session.posargs, external=True)


def _lint(session: nox.Session) -> None:
    session.run(sys.executable, "-m", "ruff", "format", "--check", ".", external=True)
    session.run(sys.executable, "-m", "ruff", "check", ".", external=True)


@nox.session(python=False, default=False)
def lint(session: nox.Session) -> None:
    """The formatter and the linter, as configured in pyproject.toml (`ruff format` fixes what --check finds)."""
    _shared_env(session)
    _lint(session)


@nox.session(python=False, default=False)
def predeploy(session: nox.Session) -> None:
    """Pre-deploy gate: `-- --candidate v2-safe` (+ pytest args: -k, -x, a test id). Production is not changed."""
    _shared_env(session)
    _deploygate(session, "engine")
    # The same command a team's noxfile runs (deploygate init): it hands the request's flags to the suite.
    _deploygate(session, "predeploy", *session.posargs)


@nox.session(python=False, default=False)
def plan(session: nox.Session) -> None:
    """The reviewer's view of the predeploy gate: `-- --candidate v2-safe --format markdown [--output FILE]`."""
    _shared_env(session)
    _deploygate(session, "engine")
    _deploygate(session, "plan", *session.posargs)


@nox.session(python=False, default=False)
def deploy(session: nox.Session) -> None:
    """Gated blue-green deploy: `-- --candidate v2-safe` [--dry-run] [--accept-incompatible --reason "why"]."""
    _shared_env(session)
    _deploygate_to_the_end(session, "deploy", *session.posargs)


@nox.session(python=False, default=False)
def rollback(session: nox.Session) -> None:
    """Roll back an unfinished deploy, or the last one (`-- --force` past the forward-fix threshold)."""
    _shared_env(session)
    _deploygate_to_the_end(session, "rollback", *session.posargs)


@nox.session(python=False, default=False)
def abort(session: nox.Session) -> None:
    """Stop the deploy another process or CI job runs (it rolls back): `-- --reason "why"`."""
    _shared_env(session)
    _deploygate(session, "abort", *session.posargs)


@nox.session(python=False, default=False)
def demo(session: nox.Session) -> None:
    """The whole story on the embedded production: reset to v1, users' requests recorded, show why v2, v2-shared-cache
    and v2-raw-sql are stopped, deploy v2-safe."""
    _shared_env(session)
    _deploygate(session, "down", "--volumes")
    _deploygate(session, "up")
    _deploygate(session, "traffic", "--seconds", "8")  # users: their requests are what the replay checks replay
    _why_stopped(session, "v2", "compat", "the seed's plain rename: the compatibility checks")
    _why_stopped(session, "v2-shared-cache", "cache", "v2-safe caching under v1's prefix: the cache checks")
    _why_stopped(session, "v2-raw-sql", "replay", "v2-safe with raw SQL naming the renamed column: production's requests replayed")
    _deploygate_to_the_end(session, "deploy", "--candidate", "v2-safe", *session.posargs)


def _why_stopped(session: nox.Session, candidate: str, keyword: str, why: str) -> None:
    """The predeploy's checks selected by ``keyword`` on ``candidate``, which they stop (their failure is the point)."""
    session.log(f"why the gates stop {candidate} ({why})")
    session.run(
        sys.executable,
        "-m",
        "pytest",
        "tests_pre",
        "-q",
        "-p",
        "no:cacheprovider",
        "--candidate",
        candidate,
        "-k",
        keyword,
        "--no-header",
        "--tb=line",
        "--show-capture=no",
        external=True,
        success_codes=[0, 1],
    )


@nox.session(python=False, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks against a same-run baseline: `-- predeploy [--rows 100000 1000000]`, `-- switch [--clients 16 64]`, `-- soak`."""
    _shared_env(session)
    # The benchmarks are this repository's tools (bench/, beside the noxfile), not the library's.
    session.run(sys.executable, "-m", "bench", *(session.posargs or ["predeploy"]), external=True)


@nox.session(python=False, default=False)
def unit(session: nox.Session) -> None:
    """Run only the unit tests (no Docker engine needed; every deploy and rollback path on fakes), timed: they must stay under a minute."""
    _shared_env(session)
    started = time.monotonic()
    session.run(sys.executable, "-m", "pytest", "tests/unit", *session.posargs, external=True)
    session.log(f"unit tests: {time.monotonic() - started:.1f}s wall time")


@nox.session(python=False, default=False)
def up(session: nox.Session) -> None:
    """Bring the demo production up (idempotent): Postgres, app v1 as blue, HAProxy on 127.0.0.1:8080."""
    _shared_env(session)
    _deploygate(session, *session.posargs, "up")


@nox.session(python=False, default=False)
def down(session: nox.Session) -> None:
    """Remove production's containers and network; `-- --volumes` also drops the database volume."""
    _shared_env(session)
    _deploygate(session, "down", *session.posargs)


@nox.session(python=False, default=False)
def status(session: nox.Session) -> None:
    """Print the live release and color, every container's state and the app's health."""
    _shared_env(session)
    _deploygate(session, "status", *session.posargs)


@nox.session(python=False, default=False)
def images(session: nox.Session) -> None:
    """Build (or find up to date) every image; `-- --release v2-safe` adds releases."""
    _shared_env(session)
    _deploygate(session, "images", *session.posargs)
