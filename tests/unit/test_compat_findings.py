"""Failures grouped by root cause: one NOT NULL column without a default is one finding, not one per field (pure logic)."""

from __future__ import annotations

from deploygate import compat
from deploygate.probe import ExerciseCheck, MigrationPlan, ModelExercise, PlanStep

NOT_NULL = 'IntegrityError: null value in column "unit" of relation "shop_item" violates not-null constraint'
PLAN = MigrationPlan(steps=[PlanStep("shop", "0002_unit", ["Add field unit to item"], ["AddField"], True, True, [])], applied_leaves={})


def _refused(field: str | None, value: str) -> ExerciseCheck:
    """An insert the new NOT NULL column refuses, as the probe reports it (the database names table and column)."""
    return ExerciseCheck(
        op="insert", field=field, value=value, ok=False, error=NOT_NULL, sqlstate="23502", table="shop_item", column="unit"
    )


# What the release serving now meets on the migrated schema of shop.0002_add_not_null_without_db_default:
# its fresh row and every boundary row of every field fail on the one column it does not know.
REFUSED = [
    ("barcode", "max_length=32"),
    ("category", "null"),
    ("code", "max_length=20"),
    ("name", "max_length=100"),
    ("price", "null"),
    ("price", "max=999999.99"),
    ("quantity", "min=-2147483648"),
    (None, "fresh"),
]
ITEM_ON_NEW = ModelExercise("shop.Item", "public.shop_item", [ExerciseCheck(op="select", ok=True)] + [_refused(*r) for r in REFUSED])


def test_a_not_null_column_without_default_is_one_finding() -> None:
    items = compat.incompatibilities([ITEM_ON_NEW], compat.PRODUCTION_ON_NEW)
    assert len(items) == 7, "one item per field and error, as before"
    assert {(i.named_table, i.named_column) for i in items} == {("shop_item", "unit")}
    (finding,) = compat.by_cause(items)
    assert finding.models == ["shop.Item"] and finding.operations == ["insert"] and len(finding.items) == 7
    assert finding.describe() == (
        f"{NOT_NULL} — 7 failures of shop.Item: insert; insert barcode with max_length=32; insert category with null; and 4 more"
    )
    facts = finding.facts()
    assert facts["count"] == 7 and (facts["table"], facts["column"]) == ("shop_item", "unit")
    assert facts["whole_tables"] == ["public.shop_item"] and facts["fresh_values"]
    assert facts["fields"] == [None, "barcode", "category", "code", "name", "price", "quantity"]


def test_the_verdict_names_the_cause_once() -> None:
    verdict = compat.Verdict(
        production_on_new=compat.incompatibilities([ITEM_ON_NEW], compat.PRODUCTION_ON_NEW), advice=["add it nullable"]
    )
    lines = verdict.explain(PLAN).splitlines()
    failing = [line for line in lines if line.startswith("    - ") and "not-null" in line]
    assert len(failing) == 1 and failing[0].count(NOT_NULL) == 1, lines
    assert lines[1] == "  once shop.0002_unit has run, until traffic switches, the release serving now fails on:"


def test_distinct_causes_stay_apart() -> None:
    too_long = "DataError: value too long for type character varying(80)"
    item = compat.Incompatibility(
        compat.PRODUCTION_ON_NEW, "shop.Item", "public.shop_item", "name", ("insert",), too_long, ("max_length=100",)
    )
    # The same words on another table (the database names neither) are another cause...
    other_table = compat.Incompatibility(
        compat.PRODUCTION_ON_NEW, "shop.Tag", "public.shop_tag", "label", ("insert",), too_long, ("max_length=100",)
    )
    # ...as is the same failure in the other direction, and another message on the same table.
    other_direction = compat.Incompatibility(compat.CANDIDATE_ON_OLD, "shop.Item", "public.shop_item", "name", ("insert",), too_long)
    gone = "ProgrammingError: column shop_item.code does not exist"
    missing = compat.Incompatibility(compat.PRODUCTION_ON_NEW, "shop.Item", "public.shop_item", "code", ("filter",), gone)
    findings = compat.by_cause([item, other_table, other_direction, missing])
    assert [len(f.items) for f in findings] == [1, 1, 1, 1]
    # A cause with one failure reads as before.
    assert findings[0].describe() == item.describe()


def test_one_cause_across_models_names_each_model() -> None:
    # Two models writing one table (multi-table inheritance, a proxy): the database names that table for both.
    parent = compat.Incompatibility(
        compat.PRODUCTION_ON_NEW, "shop.Item", "shop_item", None, ("insert",), NOT_NULL, named_table="shop_item"
    )
    named = {"named_table": "shop_item", "named_column": "unit"}
    child = compat.Incompatibility(
        compat.PRODUCTION_ON_NEW, "shop.Gadget", "shop_gadget", "size", ("insert",), NOT_NULL, ("max=9",), **named
    )
    (finding,) = compat.by_cause([parent, child])
    assert finding.describe() == f"{NOT_NULL} — 2 failures of shop.Item, shop.Gadget: insert shop.Item; insert shop.Gadget.size with max=9"


def test_a_missing_column_is_one_cause_for_every_model_reaching_it() -> None:
    # The database names no table for an undefined column, its words do: the model and the one joining it fail on it.
    gone = "ProgrammingError: column unified_db_personlink.fahanie_cares_member_id does not exist"
    link = compat.Incompatibility(compat.PRODUCTION_ON_NEW, "unified_db.PersonLink", "unified_db_personlink", None, ("select",), gone)
    audit = compat.Incompatibility(
        compat.PRODUCTION_ON_NEW, "unified_db.LinkAudit", "unified_db_linkaudit", None, ("select_related",), gone
    )
    (finding,) = compat.by_cause([link, audit])
    assert finding.models == ["unified_db.PersonLink", "unified_db.LinkAudit"] and finding.facts()["table"] == "unified_db_personlink"
