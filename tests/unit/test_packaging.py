"""The package's declaration agrees with what this repository tests with and with where its files are."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

import deploygate
from deploygate import pytest_plugin, resources

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_every_dependency_range_holds_the_pin_this_repository_tests_with() -> None:
    pins = _pins()
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower()
        assert name in pins, f"{name} is a dependency of the package but requirements.txt does not pin it"
        assert requirement.specifier.contains(pins[name]), f"requirements.txt pins {name}=={pins[name]}, outside {requirement.specifier}"


def test_the_console_script_and_the_pytest_plugin_are_declared() -> None:
    assert PYPROJECT["project"]["scripts"] == {"deploygate": "deploygate.cli:main"}
    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {"deploygate": "deploygate.pytest_plugin"}
    # The suites turn the plugin off by that name: it would register their fixtures a second time.
    assert "-p no:deploygate" in (ROOT / "pytest.ini").read_text()


def test_the_version_has_one_source() -> None:
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "deploygate/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", deploygate.__version__)


def test_the_wheel_maps_every_top_level_folder_the_suites_need() -> None:
    mapped = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert mapped == {
        name: f"deploygate/_bundle/{name}" for name in ("conftest.py", "pytest.ini", "fixtures", "tests_pre", "tests_post", "images")
    }


def test_in_a_checkout_the_suites_and_images_are_found_beside_the_package() -> None:
    assert resources.bundle_root() == ROOT
    assert resources.suite_dir("post_proxy") == ROOT / "tests_post"
    assert (resources.images_dir() / "postgres" / "Dockerfile").is_file()
    assert resources.fixtures_package() == "fixtures"


def test_the_plugin_lists_the_same_fixture_modules_as_the_root_conftest() -> None:
    tree = ast.parse((ROOT / "conftest.py").read_text())
    listed = next(node.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "pytest_plugins")
    names = [element.value for element in listed.elts]
    # Less the suites' short names (`settings` is pytest-django's there).
    kept = [name.removeprefix("fixtures.") for name in names if name != "fixtures.suite_names"]
    assert kept == list(pytest_plugin.FIXTURE_MODULES)


def test_the_library_never_imports_pytest_or_nox() -> None:
    offenders = []
    for path in (ROOT / "deploygate").rglob("*.py"):
        if "probes" in path.parts:
            continue  # they run inside the app's image (the app checks' runner imports pytest there), never in deploygate's process
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in {"pytest", "_pytest", "nox"}]
    assert not offenders
