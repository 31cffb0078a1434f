"""Where deploygate's own files are: the gate suites and the Dockerfiles, in a checkout or in the installed package.

The repository keeps ONE copy of them at its top level (conftest.py, pytest.ini,
fixtures/, tests_pre/, tests_post/, images/: the product's shape); the wheel carries the
same files under ``deploygate/_bundle/`` (mapped there at build time by pyproject.toml's
``force-include``). Everything that needs them asks here, so nothing else assumes a layout.
"""

from __future__ import annotations

from pathlib import Path

from deploygate.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
# Inside an installed wheel: the build put the top-level folders here.
BUNDLE_DIR = PACKAGE_DIR / "_bundle"
# In a checkout: the package sits beside them.
CHECKOUT_DIR = PACKAGE_DIR.parent
# Gate name -> the suite that implements it (one suite can serve several gates).
SUITES = {"predeploy": "tests_pre", "post_green": "tests_post", "post_proxy": "tests_post"}


def _holds_suites(folder: Path) -> bool:
    return (folder / "conftest.py").is_file() and (folder / "tests_pre").is_dir() and (folder / "images").is_dir()


def bundle_root() -> Path:
    """The folder holding conftest.py, pytest.ini, fixtures/, tests_pre/, tests_post/ and images/.

    The installed bundle wins over a checkout around the package (an editable or a
    checkout's own run has no bundle). Raises ``ConfigError`` when neither is complete: a
    wheel built without its data.
    """
    for folder in (BUNDLE_DIR, CHECKOUT_DIR):
        if _holds_suites(folder):
            return folder
    raise ConfigError(
        f"deploygate's gate suites and images are missing: neither {BUNDLE_DIR} (an installed wheel) "
        f"nor {CHECKOUT_DIR} (a checkout) holds conftest.py, tests_pre/ and images/; reinstall deploygate"
    )


def suite_dir(gate: str) -> Path:
    """The suite of ``gate`` (predeploy, post_green, post_proxy) as an absolute path."""
    return bundle_root() / SUITES[gate]


def pytest_ini() -> Path:
    """The suites' pytest.ini: given with ``-c`` so a team's own pytest configuration never applies to a gate."""
    return bundle_root() / "pytest.ini"


def images_dir() -> Path:
    """The Dockerfiles of the images deploygate builds (postgres, haproxy, nginx, python)."""
    return bundle_root() / "images"


def fixtures_package() -> str:
    """The import name of the fixture modules: inside the installed package, or the checkout's top-level ``fixtures``."""
    if (BUNDLE_DIR / "fixtures" / "__init__.py").is_file():
        return "deploygate._bundle.fixtures"
    return "fixtures"
