"""The targets' release trees: release 1 is app/, later releases are patches applied in order (no engine)."""

from __future__ import annotations

import ast
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


def _migrations(files: dict[str, bytes]) -> set[str]:
    return {name.removeprefix("app/") for name in files if "/migrations/0" in name}


def test_bigapp_release_2_squashes_its_history_and_removes_what_the_squash_replaces() -> None:
    """Release 1 is the original history (what production applies); release 2 replaces it with squashes
    carrying ``replaces`` and adds the index rebuild; release 3 renames a column release 2 reads."""
    first, second, third = (BIGAPP.source(release).files for release in (1, 2, 3))
    assert BIGAPP.releases() == [1, 2, 3]
    originals, squashes = _migrations(first), _migrations(second)
    assert len(originals) == 13 and not [name for name in originals if "squashed" in name]
    assert not originals & squashes, "release 2 keeps none of the migrations its squashes replace"
    added = squashes - {"catalog/migrations/0005_product_cat_status_created_at.py"}
    assert len(added) == 4 and all("_squashed_" in name for name in added)
    replaced = set()
    for name in added:
        text = second[f"app/{name}"].decode()
        assert "replaces = [" in text, name
        replaced |= {f"{app}/migrations/{migration}.py" for app, migration in _replaces(text)}
    assert replaced == originals
    index = second["app/catalog/migrations/0005_product_cat_status_created_at.py"].decode()
    assert "RemoveIndex" in index and "AddIndex" in index and "AddField" not in index and "AlterField" not in index
    assert _migrations(third) - squashes == {"sales/migrations/0004_rename_order_reference_number.py"}
    assert b"RenameField" in third["app/sales/migrations/0004_rename_order_reference_number.py"]


def _replaces(text: str) -> list[tuple[str, str]]:
    line = next(line for line in text.splitlines() if line.strip().startswith("replaces = "))
    return ast.literal_eval(line.split("=", 1)[1].strip())
