"""Root conftest: lists the fixture plugins (one module per concern)."""

pytest_plugins = [
    "fixtures.gate_report",
    "fixtures.progress",
    "fixtures.stopping",
    "fixtures.config",
    "fixtures.engine",
    "fixtures.stack",
    "fixtures.live",
    "fixtures.backup",
    "fixtures.copy_db",
    "fixtures.replay",
    "fixtures.suite_names",  # not in the installed plugin: `settings` is pytest-django's there
]
