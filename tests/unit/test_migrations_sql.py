"""Reading announced schema changes from Django's rendered SQL (pure logic)."""

from __future__ import annotations

import pytest

from deploygate.migrations import announced_changes, offending_rows_query, parse_expected_plan
from deploygate.probe import MigrationFailure


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


@pytest.mark.parametrize(
    ("failure", "query"),
    [
        (
            MigrationFailure(
                "a.0002", "contains null values", 'ALTER TABLE "t" ALTER COLUMN "c" SET NOT NULL', sqlstate="23502", table="t", column="c"
            ),
            'SELECT count(*) FROM "t" WHERE "c" IS NULL',
        ),
        (
            MigrationFailure(
                "a.0002",
                "could not create unique index",
                'ALTER TABLE "t" ADD CONSTRAINT "u" UNIQUE ("a", "b")',
                sqlstate="23505",
                table="t",
                detail="Key (a, b)=(1, x) is duplicated.",
            ),
            'SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM "t" WHERE "a" IS NOT NULL AND "b" IS NOT NULL '
            'GROUP BY "a", "b" HAVING count(*) > 1) d',
        ),
        (
            MigrationFailure(
                "a.0002",
                "value too long",
                'ALTER TABLE "t" ALTER COLUMN "name" TYPE varchar(80) USING "name"::varchar(80)',
                sqlstate="22001",
            ),
            'SELECT count(*) FROM "t" WHERE char_length("name") > 80',
        ),
        (
            MigrationFailure(
                "a.0002",
                "violated by some row",
                'ALTER TABLE "t" ADD CONSTRAINT "q_gte_0" CHECK ("q" >= 0)',
                sqlstate="23514",
                table="t",
                constraint="q_gte_0",
            ),
            'SELECT count(*) FROM "t" WHERE NOT ("q" >= 0)',
        ),
        (
            MigrationFailure(
                "a.0002",
                "violates foreign key constraint",
                'ALTER TABLE "t" ADD CONSTRAINT "t_p_fk" FOREIGN KEY ("p_id") REFERENCES "p" ("id") DEFERRABLE INITIALLY DEFERRED',
                sqlstate="23503",
                table="t",
            ),
            'SELECT count(*) FROM "t" WHERE "p_id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "p" WHERE "p"."id" = "t"."p_id")',
        ),
        (MigrationFailure("a.0002", "fails halfway by design", "DO $$ BEGIN RAISE EXCEPTION 'x'; END $$;", sqlstate="P0001"), None),
    ],
    ids=["not_null", "unique", "too_long", "check", "foreign_key", "raise"],
)
def test_offending_rows_query(failure: MigrationFailure, query: str | None) -> None:
    built = offending_rows_query(failure)
    assert (built.as_string(None) if built is not None else None) == query
