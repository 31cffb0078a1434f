"""The app's own checks (app.checks), run in the new color's image against production (each rolled back)."""

from __future__ import annotations

import pytest

from deploygate import app_checks
from deploygate.production import app_environment
from fixtures import app_checks as checks

pytestmark = pytest.mark.post


@pytest.fixture(scope="session")
def app_check_results(request, platform, settings, target, progress):
    return app_checks.run(
        platform, settings, target.image, app_environment(platform, settings), selected=checks.selected(request.session), say=progress
    )


def test_app_check(app_check, app_check_results, gate_measure) -> None:
    checks.judge(app_check, app_check_results, gate_measure)
