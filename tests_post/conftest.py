"""Post-deploy checks run against the new color directly (before the switch) or through the proxy (after)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from deploygate.config import Settings
from deploygate.platform import ColorState, Platform
from deploygate.platform.images import Image
from deploygate.probe import Prober
from deploygate.production import app_environment
from deploygate.proxy import Proxy


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deploygate")
    group.addoption("--target", choices=("green", "proxy"), default="proxy", help="check the new color directly or via the proxy")
    group.addoption("--deploy-color", default=None, help="the new color (default: the color the proxy routes to)")
    group.addoption("--since", type=float, default=None, help="epoch seconds the error count starts at (the switch)")
    group.addoption(
        "--plan-scope",
        default=None,
        metavar="JSON",
        help='the models the ORM check exercises, {"tables": [...], "apps": [...]} as the deploy\'s plan changed them '
        "(set by the deploy; absent: every model)",
    )


@dataclass(frozen=True)
class Target:
    """What the post checks look at: the new color and the URL requests go to (``urls``: every replica, or every running proxy)."""

    color: str
    state: ColorState
    image: Image
    url: str
    via_proxy: bool
    urls: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config, platform: Platform, settings: Settings, proxy: Proxy) -> Target:
    live = proxy.current()
    color = pytestconfig.getoption("--deploy-color") or (live.color if live else None)
    if color is None:
        pytest.fail("no color to check: the proxy routes nowhere and --deploy-color was not given", pytrace=False)
    state = platform.color(color)
    if state is None or not state.running:
        pytest.fail(f"{platform.color_name(color)} is not running", pytrace=False)
    via_proxy = pytestconfig.getoption("--target") == "proxy"
    # On a cluster: each of the color's replicas, or each node's proxy that runs (one whose node is down serves nobody).
    urls = proxy.serving_urls() if via_proxy else state.urls(settings.app_port)
    if not urls:
        pytest.fail(f"no address reaches {platform.color_name(color)}" + (" (no proxy runs)" if via_proxy else ""), pytrace=False)
    image = Image(tag=state.release, id=state.image_id, built=False)
    return Target(color=color, state=state, image=image, url=urls[0], via_proxy=via_proxy, urls=tuple(urls))


@pytest.fixture(scope="session")
def plan_scope(pytestconfig: pytest.Config) -> dict | None:
    """The probe's scope for the ORM check: what the deploy's plan changed, or None (every model)."""
    given = pytestconfig.getoption("--plan-scope")
    if not given:
        return None
    try:
        return json.loads(given)
    except ValueError:
        raise pytest.UsageError(f"--plan-scope expects a JSON object, got {given!r}") from None


@pytest.fixture(scope="session")
def production_probe(platform: Platform, settings: Settings, target: Target) -> Prober:
    """The probe in the new color's image against production (reads, or writes rolled back)."""
    return Prober.configured(platform, settings, target.image, app_environment(platform, settings))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``app_check``: the ids of the app's own checks, as the new color's image collects them."""
    if "app_check" not in metafunc.fixturenames:
        return
    from fixtures import app_checks

    def new_color(config: pytest.Config, platform: Platform) -> Image:
        color = config.getoption("--deploy-color") or Proxy(platform.settings, platform).current().color
        state = platform.color(color)
        if state is None:
            raise pytest.UsageError(f"{platform.color_name(color)} does not exist")
        return Image(tag=state.release, id=state.image_id, built=False)

    app_checks.parametrize(metafunc, new_color, app_environment)
