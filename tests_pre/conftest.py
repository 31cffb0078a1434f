"""Helpers shared by the pre-deploy checks."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

import pytest

from fixtures.gate_report import GateResults


@pytest.fixture(scope="session")
def now() -> dt.datetime:
    """The policy clock: the real time, or DEPLOYGATE_NOW (ISO 8601) to rehearse a decision at a given time."""
    fixed = os.environ.get("DEPLOYGATE_NOW")
    if fixed:
        parsed = dt.datetime.fromisoformat(fixed)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def policy_gate(policy_overrides: dict[str, str], gate_results: GateResults) -> Callable[[str, bool, str], None]:
    """``policy_gate(name, ok, message)``: pass, pass as an explicit recorded override, or fail with ``message``."""

    def judge(name: str, ok: bool, message: str) -> None:
        if ok:
            return
        if name in policy_overrides:
            gate_results.overrides[name] = policy_overrides[name]
            gate_results.notes.append(f"{name} overridden: {message}")
            return
        pytest.fail(f'{message} (to go ahead anyway: --override {name} --reason "...")', pytrace=False)

    return judge


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``app_check``: the ids of the app's own checks, as the candidate's image collects them."""
    if "app_check" not in metafunc.fixturenames:
        return
    from deploygate.production import app_environment
    from fixtures import app_checks

    def candidate(config: pytest.Config, platform):
        ref = config.getoption("--candidate") or os.environ.get("DEPLOYGATE_CANDIDATE")
        if not ref:
            raise pytest.UsageError("no candidate: pass --candidate <release|image>")
        return platform.resolve_image(ref, say=lambda message: None)

    app_checks.parametrize(metafunc, candidate, app_environment)
