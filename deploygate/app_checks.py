"""The app's own checks: ordinary pytest-django tests a team writes, run INSIDE the release's image.

The checks come from a directory next to the configuration (``app.checks``, mounted into
the container) or a path inside the image (``app.checks_in_image``). pytest and
pytest-django are deploygate's, not the image's: pure-Python wheels of the versions the
image's own Python supports, downloaded once on this host and unpacked into a directory
that is mounted and put on the path, so the user's image needs nothing extra. The
plugin ``probes/app_checks.py`` makes them use the database the container is pointed at
(the rehearsal copy, or production), each test in a transaction that is rolled back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploygate.config import Settings
from deploygate.errors import DeployGateError
from deploygate.log import Say
from deploygate.probe import PROBE_DIR_IN_CONTAINER
from deploygate.probe import mounts as probe_mounts

if TYPE_CHECKING:
    from deploygate.platform.base import Platform
    from deploygate.platform.images import Image

CHECKS_IN_CONTAINER = "/deploygate_checks"
PYTEST_IN_CONTAINER = "/deploygate_pytest"
OUT_IN_CONTAINER = "/deploygate_out"
RESULT_NAME = "app_checks.json"
PACKAGES = ("pytest", "pytest-django")
PASSED = "passed"


class AppChecksError(DeployGateError):
    """The app's checks could not be collected or run at all (as opposed to running and failing)."""


@dataclass(frozen=True)
class AppCheckResult:
    """One of the app's checks as it ran in the release's image."""

    nodeid: str
    outcome: str  # passed | failed | error | skipped
    message: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED


def configured(settings: Settings) -> bool:
    return bool(settings.app_checks or settings.app_checks_in_image)


def _checks_path(settings: Settings) -> tuple[str, dict[str, str]]:
    """Where the checks are inside the container, and the mount that puts them there (if any)."""
    if settings.app_checks_in_image:
        return settings.app_checks_in_image, {}
    host = settings.path(settings.app_checks)
    if not host.is_dir():
        raise AppChecksError(f"app.checks: {host} is not a directory")
    return CHECKS_IN_CONTAINER, {str(host): CHECKS_IN_CONTAINER}


def image_python(platform: Platform, settings: Settings, image: Image) -> str:
    """The ``major.minor`` of the image's own Python (asked once per image, remembered)."""
    cache = settings.path(settings.cache_dir) / "app-checks" / "pythons.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if image.id not in known:
        done = platform.run_job(image.id, [settings.app_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], environment={})
        version = done.last_line.strip()
        if done.exit_code != 0 or not version.replace(".", "").isdigit():
            raise AppChecksError(f"cannot run {settings.app_python} in {image.tag}: {done.last_line}")
        known[image.id] = version
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known, indent=1))
    return known[image.id]


def wheelhouse(settings: Settings, python: str, say: Say) -> Path:
    """pytest and pytest-django for Python ``python``, unpacked into a directory to put on the path.

    Pure-Python wheels only (they run on any platform); downloaded once per Python version.
    Raises ``AppChecksError`` when PyPI cannot give them.
    """
    target = settings.path(settings.cache_dir) / "app-checks" / f"py{python}"
    if (target / ".complete").exists():
        return target
    say(f"downloading pytest and pytest-django for Python {python} (pure-Python wheels)...")
    with tempfile.TemporaryDirectory(prefix="deploygate-pytest-") as tmp:
        argv = [
            "python3",
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "py",
            "-d",
            tmp,
            *PACKAGES,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()][-1:] or ["no output"]
            raise AppChecksError(f"pip download of {', '.join(PACKAGES)} for Python {python} failed: {tail[0]}")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        # A pure-Python wheel is a zip of what site-packages would hold: unpacking it is installing it.
        for wheel in sorted(Path(tmp).glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(partial)
    for path in partial.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (partial / ".complete").write_text(python)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _run(
    platform: Platform,
    settings: Settings,
    image: Image,
    environment: Mapping[str, str],
    *,
    network: str | None,
    args: Sequence[str],
    say: Say | None,
) -> dict:
    path, checks_mount = _checks_path(settings)
    site = wheelhouse(settings, image_python(platform, settings, image), say or (lambda line: None))
    with tempfile.TemporaryDirectory(prefix="deploygate-app-checks-") as out:
        os.chmod(out, 0o777)  # the image may run as any user: it writes its result here
        env = {
            **environment,
            "PYTHONPATH": f"{PROBE_DIR_IN_CONTAINER}:{PYTEST_IN_CONTAINER}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "DEPLOYGATE_APP_CHECKS_RESULT": f"{OUT_IN_CONTAINER}/{RESULT_NAME}",
        }
        argv = [settings.app_python, "-m", "pytest", path, "-p", "app_checks", "-p", "no:cacheprovider", "-q", "--rootdir", path, *args]
        mounts = {**probe_mounts(), str(site): PYTEST_IN_CONTAINER, **checks_mount, out: OUT_IN_CONTAINER}
        done = platform.run_job(image.id, argv, environment=env, mounts=mounts, writable=[out], network=network, say=say)
        result = Path(out) / RESULT_NAME
        if not result.exists():
            raise AppChecksError(f"the app's checks did not run in {image.tag} (exit {done.exit_code}): {done.last_line}")
        return json.loads(result.read_text())


def collect(platform: Platform, settings: Settings, image: Image, environment: Mapping[str, str], network: str | None = None) -> list[str]:
    """The ids of the app's checks, as pytest collects them in ``image``. Raises ``AppChecksError``."""
    return _run(platform, settings, image, environment, network=network, args=["--collect-only"], say=None)["collected"]


def run(
    platform: Platform,
    settings: Settings,
    image: Image,
    environment: Mapping[str, str],
    *,
    network: str | None = None,
    selected: Sequence[str] = (),
    say: Say | None = None,
) -> dict[str, AppCheckResult]:
    """Run the app's checks (``selected`` ids, or all) in ``image`` against the database of ``environment``.

    Returns each check's result by id. Raises ``AppChecksError`` when they could not run at all.
    """
    path, _ = _checks_path(settings)
    targets = [f"{path}/{nodeid}" for nodeid in selected]
    payload = _run(platform, settings, image, environment, network=network, args=targets, say=say)
    return {
        nodeid: AppCheckResult(nodeid=nodeid, outcome=r["outcome"], message=r["message"], duration_s=r["duration_s"])
        for nodeid, r in payload["results"].items()
    }
