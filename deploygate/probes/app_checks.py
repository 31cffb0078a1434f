"""A pytest plugin run INSIDE the release's image, beside the app's own checks (``-p app_checks``).

deploygate mounts pytest and pytest-django (a pure-Python wheelhouse) and this directory
into a one-off container of the release, then runs the app's checks with it. The plugin:
- puts the image's working directory (the Django project) on the path, as manage.py would;
- makes pytest-django use the database the container is pointed at (the rehearsal copy, or
  production) as it is, never a test database: ``django_db_setup`` does nothing, so each
  ``django_db`` test runs in a transaction that is rolled back (pytest-django's documented
  way of testing against an existing database);
- writes every collected check and every outcome to the JSON file named by
  ``DEPLOYGATE_APP_CHECKS_RESULT``, for deploygate to read.

Standard library, pytest and pytest-django only: it runs on the image's own Python.
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.getcwd())  # the image's WORKDIR holds the Django project

_RESULT_ENV = "DEPLOYGATE_APP_CHECKS_RESULT"
_collected = []
_results = {}


class ExistingDatabase:
    """pytest-django's ``django_db_setup`` overridden: the database is the one configured, as it is.

    No test database is created or destroyed; a ``django_db`` test's transaction is rolled back.
    """

    @pytest.fixture(scope="session")
    def django_db_setup(self):
        yield


def pytest_configure(config):
    # Registered now, after pytest-django's own plugin: of two plugins' fixtures the later one wins
    # (the checks' directory is the team's, read-only: no conftest of ours can go there).
    config.pluginmanager.register(ExistingDatabase(), "deploygate_existing_database")


def pytest_collection_finish(session):
    _collected.extend(item.nodeid for item in session.items)


def _message(report):
    text = getattr(report, "longreprtext", "") or ""
    lines = [line for line in text.splitlines() if line.strip()]
    # pytest's last "E ..." lines carry the assertion's own message; keep them, and only them.
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    return "\n".join(errors[:20]) if errors else "\n".join(lines[-5:])


def pytest_runtest_logreport(report):
    entry = _results.setdefault(report.nodeid, {"outcome": "passed", "message": "", "duration_s": 0.0})
    entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
    if report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
        entry["message"] = _message(report)
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        longrepr = report.longrepr
        entry["message"] = str(longrepr[-1]) if isinstance(longrepr, tuple) else ""


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get(_RESULT_ENV)
    if path:
        with open(path, "w") as handle:
            json.dump({"collected": _collected, "results": _results, "exitstatus": int(exitstatus)}, handle)
