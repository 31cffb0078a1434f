"""Applied migrations outside a release's graph, sorted by why (pure logic): only the unexplained are a mismatch."""

from __future__ import annotations

from deploygate.migration_history import classify, squashed_elsewhere
from deploygate.probe_results import parse_plan

# A squash of catalog's first three migrations; "legacy" was uninstalled; "catalog.0009_other" is another release's.
REPLACES = {"catalog.0001_squashed_0003_x": ["catalog.0001_initial", "catalog.0002_a", "catalog.0003_x"]}
OUTSIDE = ["catalog.0001_initial", "catalog.0002_a", "catalog.0003_x", "legacy.0001_initial", "catalog.0009_other"]


def test_replaced_removed_and_unknown_are_told_apart() -> None:
    outside = classify(OUTSIDE, REPLACES, installed_apps=["auth", "catalog", "contenttypes"])
    assert outside.replaced_by_squash == ["catalog.0001_initial", "catalog.0002_a", "catalog.0003_x"]
    assert outside.of_removed_apps == ["legacy.0001_initial"]
    assert outside.unknown == ["catalog.0009_other"]
    assert outside.describe() == "replaced by squash: 3, of apps no longer installed: 1, unknown: 1 (catalog.0009_other)"


def test_a_replaced_name_of_an_uninstalled_app_counts_as_replaced() -> None:
    outside = classify(["old.0001_initial"], {"old.0001_squashed": ["old.0001_initial"]}, installed_apps=[])
    assert outside.replaced_by_squash == ["old.0001_initial"] and not outside.of_removed_apps


def test_without_installed_apps_no_app_counts_as_removed() -> None:
    outside = classify(["legacy.0001_initial"], {}, installed_apps=None)
    assert outside.unknown == ["legacy.0001_initial"]


def _payload(**extra) -> dict:
    return {"plan": [], "applied_leaves": {"catalog": "0001_squashed_0003_x"}, "applied": OUTSIDE, **extra}


def test_a_database_at_a_squashed_release_is_at_release() -> None:
    plan = parse_plan(_payload(outside_graph=OUTSIDE[:4], squash_replaces=REPLACES, installed_apps=["catalog"]))
    assert plan.at_release and plan.unknown_applied == [] and plan.mismatch() == ""
    assert len(plan.outside.replaced_by_squash) == 3 and plan.outside.of_removed_apps == ["legacy.0001_initial"]


def test_an_unexplained_name_is_a_mismatch_that_says_the_rest() -> None:
    plan = parse_plan(_payload(outside_graph=OUTSIDE, squash_replaces=REPLACES, installed_apps=["catalog"]))
    assert not plan.at_release and plan.unknown_applied == ["catalog.0009_other"]
    assert plan.mismatch() == (
        "pending [], unknown ['catalog.0009_other'] (not a mismatch: replaced by squash: 3, of apps no longer installed: 1)"
    )


def test_a_squash_the_candidate_recorded_over_the_previous_releases_migrations_is_history() -> None:
    # Release 1 has sales.0001..0003; release 2 squashed them and its migrate recorded the squash's name.
    outside = classify(["sales.0001_squashed_0003", "sales.0004_other"], {}, installed_apps=["sales"])
    judged = squashed_elsewhere(outside, {"sales.0001_squashed_0003": ["sales.0001_initial", "sales.0002_a", "sales.0003_b"]})
    assert judged.squashes_of_its_own == ["sales.0001_squashed_0003"] and judged.unknown == ["sales.0004_other"]
    assert "squashes of its own migrations recorded by another release: 1" in judged.explained()
    # A squash over a migration the previous release does not have either stays a mismatch.
    mixed = squashed_elsewhere(outside, {"sales.0001_squashed_0003": ["sales.0004_other"]})
    assert mixed.unknown == ["sales.0001_squashed_0003", "sales.0004_other"]
