"""End to end, as a new team: the shop in a repository of its own, deploygate from the wheel alone.

The shop (tests/targets/shop, without its deploy.toml) is copied into a temporary git
repository; a fresh venv gets only the wheel built from this checkout (its dependencies
from the index, not requirements.txt); `deploygate init` writes the team's files there;
`nox -s up`, `nox -s predeploy` and `nox -s deploy` run from that repository and deploy
the shop's release 2. The images are the team's CI's business: built here beforehand as
dgshop:1 and dgshop:2 (tests/targets/build.py). What differs from a team's production
(names, ports, a window open all day) comes through the environment, as a CI job would.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploygate import config
from deploygate.platform import connect as connect_platform
from tests.e2e.conftest import ROOT
from tests.support import free_port, project_name
from tests.targets.build import SHOP, build_target

PROJECT = project_name("dgteam")


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
    print(f"$ {' '.join(argv)}  -> exit {done.returncode} in {time.monotonic() - started:.1f}s\n{tail}\n")
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this checkout and what the wheel depends on, nothing else."""
    work = tmp_path_factory.mktemp("newteam_venv")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"), str(ROOT)], ROOT, dict(os.environ)
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("deploygate-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    installed = _run([str(work / "venv" / "bin" / "pip"), "install", "--quiet", str(wheel)], work, env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return work / "venv"


@pytest.fixture(scope="module")
def shop_images() -> None:
    """dgshop:1 and dgshop:2, as the team's CI tags them (built offline here)."""
    settings = config.load(SHOP.directory / "deploy.toml", environ={}, root=ROOT)
    platform = connect_platform(settings, say=print)
    for release in (1, 2):
        build_target(platform.client, settings, SHOP, release, say=print)


@pytest.fixture(scope="module")
def team_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop as its own git repository, without deploygate's configuration of it."""
    repo = tmp_path_factory.mktemp("newteam") / "shop"
    shutil.copytree(SHOP.directory, repo, ignore=shutil.ignore_patterns("deploy.toml", "__pycache__"))
    for argv in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=team", "-c", "user.email=team@example.com", "commit", "-qm", "shop"],
    ):
        subprocess.run(argv, cwd=repo, check=True)
    return repo


@pytest.fixture(scope="module")
def team_env(venv: Path, team_repo: Path) -> Iterator[dict[str, str]]:
    """The environment of the team's CI job: the venv on PATH, nothing of this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        {
            "PATH": f"{venv / 'bin'}:{env['PATH']}",
            "SECRET_KEY": secrets.token_urlsafe(32),  # init made SECRET_KEY an "env:SECRET_KEY" secret
            "DEPLOYGATE_PROJECT": PROJECT,
            "DEPLOYGATE_MIN_HOURS_BETWEEN_DEPLOYS": "0",
            "DEPLOYGATE_MONITOR_WINDOW_S": "10",
            "DEPLOYGATE_TRAFFIC_RATE": "20",
        }
    )
    yield env
    _run([str(venv / "bin" / "deploygate"), "down", "--volumes"], team_repo, env, timeout=300)


def test_a_new_team_deploys_the_shop_from_the_wheel(venv, shop_images, team_repo, team_env) -> None:
    where = _run([str(venv / "bin" / "python"), "-c", "import deploygate; print(deploygate.__file__)"], team_repo, team_env)
    assert where.stdout.strip().startswith(str(venv / "lib")) and "site-packages" in where.stdout, where.stdout
    init = _run(
        [
            "deploygate",
            "init",
            "--release",
            "dgshop:1",
            "--proxy-port",
            str(free_port()),
            "--env",
            "ALLOWED_HOSTS=*",
            "--process",
            "worker=python manage.py process_queue",
            "--window",
            "00:00-24:00",
        ],
        team_repo,
        team_env,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert "health path: /healthz (from app/shop/urls.py)" in init.stdout
    assert _run(["deploygate", "init", "--release", "dgshop:1", "--proxy-port", "1"], team_repo, team_env).returncode == 1, (
        "a second init with other answers must keep the files"
    )
    up = _run(["nox", "-s", "up"], team_repo, team_env)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    predeploy = _run(["nox", "-s", "predeploy", "--", "--candidate", "dgshop:2"], team_repo, team_env)
    assert predeploy.returncode == 0, predeploy.stdout[-4000:] + predeploy.stderr[-2000:]
    assert (
        "test_app_check[test_deploy_checks.py::test_every_migration_of_the_release_is_applied]" in predeploy.stdout
        or "passed" in predeploy.stdout
    )
    deploy = _run(["nox", "-s", "deploy", "--", "--candidate", "dgshop:2"], team_repo, team_env)
    assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-2000:]
    status = _run(["nox", "-s", "status"], team_repo, team_env)
    assert status.returncode == 0 and "green (release 2)" in status.stdout, status.stdout[-2000:]
    # Everything the run wrote stayed in the team's repository, nothing in site-packages.
    assert (team_repo / "reports" / "predeploy").is_dir() and (team_repo / "logs").is_dir()
    assert not list((venv / "lib").glob("python3*/site-packages/deploygate/_bundle/reports"))
