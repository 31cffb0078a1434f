"""The targets' release trees: release 1 is app/, later releases are patches applied in order (no engine)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deploygate.errors import ConfigError, ImageBuildError
from tests.targets.build import BIGAPP, SHOP

MIGRATION_2 = "app/catalog/migrations/0002_stock_and_reviews.py"


def test_release_2_is_release_1_with_its_patch() -> None:
    first, second = SHOP.source(1).files, SHOP.source(2).files
    assert SHOP.releases() == [1, 2]
    assert "app/manage.py" in first and MIGRATION_2 not in first
    assert set(second) - set(first) == {MIGRATION_2}
    assert sorted(name for name in first if first[name] != second[name]) == [
        "app/catalog/admin.py",
        "app/catalog/models.py",
        "app/catalog/views.py",
    ]
    assert b"stock = models.PositiveIntegerField(db_default=0)" in second["app/catalog/models.py"]


def test_unknown_release_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the shop has no release 3"):
        SHOP.source(3)


def test_a_patch_that_no_longer_applies_names_itself(tmp_path: Path) -> None:
    """Release 1 changed under release 2's patch: the build stops instead of shipping half a release."""
    shop = tmp_path / "shop"
    (shop / "app" / "catalog").mkdir(parents=True)
    (shop / "app" / "catalog" / "models.py").write_text("# rewritten since the patch was made\n")
    (shop / "releases").mkdir()
    (shop / "releases" / "2.patch").write_bytes((SHOP.directory / "releases" / "2.patch").read_bytes())
    changed = dataclasses.replace(SHOP, directory=shop)
    with pytest.raises(ImageBuildError, match=r"releases/2.patch does not apply"):
        changed.source(2)
