"""The app's own checks (app.checks), run in the candidate's image on the migrated copy of production.

This module sorts before test_rehearsal.py, whose reversal check migrates the copy back:
the app's checks see the schema the candidate will run on.
"""

from __future__ import annotations

import pytest

from deploygate import app_checks
from fixtures import app_checks as checks

pytestmark = pytest.mark.app


@pytest.fixture(scope="session")
def app_check_results(request, platform, settings, candidate_image, rehearsed, db_copy, progress):
    applied = db_copy.prober(platform, settings, candidate_image).plan()
    assert applied.at_release, (
        f"the copy is not at {candidate_image.tag}'s migrations (pending {applied.labels}): the checks would judge the wrong schema"
    )
    return app_checks.run(
        platform,
        settings,
        candidate_image,
        db_copy.app_environment(settings),
        network=db_copy.scratch.database.network,
        selected=checks.selected(request.session),
        say=progress,
    )


def test_app_check(app_check, app_check_results, gate_measure) -> None:
    checks.judge(app_check, app_check_results, gate_measure)
