"""Reading announced schema changes from Django's rendered SQL (pure logic)."""

from __future__ import annotations

from deploygate.migrations import announced_changes, parse_expected_plan


def test_renames_of_the_seed_change() -> None:
    changes = announced_changes(
        [
            'ALTER TABLE "members_fahaniecaresmember" RENAME TO "members_bmparliamentmember";',
            'SET CONSTRAINTS "x" IMMEDIATE; ALTER TABLE "unified_db_personlink" DROP CONSTRAINT "x";',
            'ALTER TABLE "unified_db_personlink" RENAME COLUMN "fahanie_cares_member_id" TO "bm_parliament_member_id";',
        ]
    )
    assert changes.renamed_tables == {("public.members_fahaniecaresmember", "public.members_bmparliamentmember")}
    assert changes.renamed_columns == {("fahanie_cares_member_id", "bm_parliament_member_id")}
    assert not changes.added_columns and not changes.dropped_tables


def test_adds_drops_and_state_only() -> None:
    changes = announced_changes(
        [
            'ALTER TABLE "t" ADD COLUMN "c" integer NULL;',
            'ALTER TABLE "t" DROP COLUMN "d" CASCADE;',
            'CREATE TABLE "n" ("id" bigint NOT NULL PRIMARY KEY);',
            'DROP TABLE "old" CASCADE;',
            "-- (no-op)",
        ]
    )
    assert changes.added_columns == {"c"} and changes.dropped_columns == {"d"}
    assert changes.created_tables == {"public.n"} and changes.dropped_tables == {"public.old"}
    assert announced_changes(["-- state only"]).empty


def test_parse_expected_plan() -> None:
    assert parse_expected_plan(" a.0001_x , b.0002_y,") == ["a.0001_x", "b.0002_y"]
    assert parse_expected_plan("") == []
