"""The pytest plugin (entry point ``pytest11`` named ``deploygate``): the gate fixtures in a team's own pytest.

Installed with deploygate, it offers a team's tests what the gates use — ``dg_settings``
(pytest-django's ``settings`` keeps its name),
``platform``, ``production`` (the release serving now and its URL), ``production_db``,
``backup_archive``, ``db_copy`` (a copy restored from that backup), ``candidate_image``
and ``rehearsed`` (the release's image with its migrations applied on the copy), with the
``--dg-config`` / ``--dg-set`` / ``--candidate`` options (declared once, for the CLI too, in
``deploygate.request_flags``). Like pytest-django's plugin.py,
this module holds no fixture of its own: it lists the fixture modules (pytest imports them,
so the library itself never imports pytest). The gate suites load the same modules through
their conftest.py and turn this plugin off (``-p no:deploygate`` in their pytest.ini), so
nothing is registered twice.
"""

from __future__ import annotations

from deploygate.resources import fixtures_package

# The root conftest.py's list, without suite_names (`settings` is pytest-django's in a team's pytest).
FIXTURE_MODULES = ("gate_report", "progress", "stopping", "config", "engine", "stack", "live", "backup", "copy_db", "replay")

pytest_plugins = [f"{fixtures_package()}.{name}" for name in FIXTURE_MODULES]
