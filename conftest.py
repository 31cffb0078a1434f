"""Root conftest: lists the fixture plugins (one module per concern)."""

pytest_plugins = [
    "fixtures.config",
    "fixtures.engine",
    "fixtures.stack",
]
