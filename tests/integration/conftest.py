"""Integration tests run their own isolated production (project ``dgtest``) and remove it afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploygate import config, production
from deploygate.platform import Platform
from deploygate.platform import connect as connect_platform
from tests.support import free_port, mark_integration, project_name

TEST_PROJECT = project_name("dgtest")
TEST_SEED_ROWS = 5_000
TEST_SEED_MEMBERS = 200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_integration(items, "integration")


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> config.Settings:
    """An isolated production: own project name, free port, temporary state, a small seed."""
    return config.load(
        root=pytestconfig.rootpath,
        environ={},
        overrides={
            "project": TEST_PROJECT,
            "proxy_port": str(free_port()),
            "state_dir": str(tmp_path_factory.mktemp("state")),
            "seed_rows": str(TEST_SEED_ROWS),
            "seed_members": str(TEST_SEED_MEMBERS),
            # Only the gates' own health checks pass its proxy: nothing worth replaying (tests/e2e/test_replay.py does).
            "replay_max_requests": "0",
        },
    )


@pytest.fixture(scope="session")
def dg_settings(settings: config.Settings) -> config.Settings:
    """The gate fixtures (fixtures/) ask for ``dg_settings``: this tier's isolated production, as ``settings``."""
    return settings


@pytest.fixture(scope="session")
def platform(settings: config.Settings) -> Platform:
    """This tier's own platform: session fixtures are cached once, so each tier binds its own settings."""
    return connect_platform(settings, say=print)


@pytest.fixture(scope="session", autouse=True)
def _remove_test_stack(platform: Platform, settings: config.Settings) -> Iterator[None]:
    """Start from nothing and leave nothing: everything of the test project goes."""
    production.down(platform, settings, volumes=True)
    yield
    production.down(platform, settings, volumes=True)
