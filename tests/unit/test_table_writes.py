"""Tables proven untouched without reading their rows: relfilenode and the copy's statistics (pure logic)."""

from __future__ import annotations

from deploygate.columns import Column
from deploygate.fingerprint import DjangoBookkeeping, TableFingerprint, compare
from deploygate.table_writes import Proof, by_statistics, combine, describe_writes


def _table(
    oid: int, name: str, *, node: int = 10, hashed: bool = True, row_hash: int = 5, cols: tuple[str, ...] = ("id",)
) -> TableFingerprint:
    columns = {n: Column(n, c, "integer") for n, c in enumerate(cols, start=1)}
    return TableFingerprint(oid=oid, name=name, relfilenode=node, rows=3, columns=columns, row_hash=row_hash, hashed=hashed)


def test_untouched_needs_the_same_storage_and_no_tuple_written() -> None:
    assert by_statistics(1, 10, 1, 10, {}) == Proof(True)
    assert by_statistics(1, 10, 1, 10, {2: (5, 5, 5, 0)}) == Proof(True), "another table's writes"
    assert by_statistics(1, 10, 1, 11, {}).reason == "rewritten or truncated (a new relfilenode)"
    assert by_statistics(1, 10, 2, 12, {}).reason == "re-created (a new OID)"
    assert "PostgreSQL before 15" in by_statistics(1, 10, 1, 10, None).reason
    assert by_statistics(1, 10, 1, 10, {1: (0, 2, 1, 2)}) == Proof(False, reason="2 rows updated, 1 deleted by the migration")
    assert by_statistics(1, 10, 1, 10, {1: (0, 1, 0, 1)}).reason == "1 row updated by the migration"
    # Only inserts and the same relfilenode: every row it had is still there, the inserted ones are added.
    assert by_statistics(1, 10, 1, 10, {1: (4, 0, 0, 0)}) == Proof(True, added=4)


def test_counts_combine_and_read_as_words() -> None:
    assert combine({1: (1, 0, 0, 0)}, {1: (0, 2, 0, 1), 2: (0, 0, 3, 0)}) == {1: (1, 2, 0, 1), 2: (0, 0, 3, 0)}
    assert combine({1: (1, 0, 0, 0)}, None) is None
    assert describe_writes((1, 0, 0, 0)) == "1 row inserted" and describe_writes((0, 0, 0, 0)) == "no row written"


def test_each_table_is_proven_row_by_row_or_by_statistics() -> None:
    before = {
        1: _table(1, "public.shop_item"),
        2: _table(2, "public.shop_category", hashed=False),
        3: _table(3, "public.auth_group", hashed=False),
    }
    after = {
        1: _table(1, "public.shop_item", cols=("id", "stock")),
        2: _table(2, "public.shop_category", hashed=False),
        3: _table(3, "public.auth_group", hashed=False, node=11),
    }
    after[1].projected_hash = 5
    diff = compare(before, after, writes={1: (0, 20, 0, 0)})
    assert diff.proven_by_rows == ["public.shop_item"] and diff.proven_by_statistics == ["public.shop_category"]
    assert diff.problems() == [
        "public.auth_group: rewritten or truncated (a new relfilenode); its rows were never hashed "
        "(the plan's SQL does not name it): content not proven"
    ]
    assert diff.added_columns == [("public.shop_item", "stock")]
    assert diff.proof()[0] == "row by row (1): public.shop_item"


def test_a_data_migration_writing_a_table_the_plan_does_not_name_is_caught() -> None:
    before = {1: _table(1, "public.auth_group", hashed=False), 2: _table(2, "public.django_content_type", hashed=False)}
    after = {1: _table(1, "public.auth_group", hashed=False), 2: _table(2, "public.django_content_type", hashed=False)}
    updated = compare(before, after, writes={1: (0, 3, 0, 0)})
    assert updated.problems() == [
        "public.auth_group: 3 rows updated by the migration; its rows were never hashed "
        "(the plan's SQL does not name it): content not proven"
    ]
    # Rows inserted: every old row provably kept; rows added are a problem unless post_migrate wrote them.
    inserted = compare(
        before, after, writes={1: (1, 0, 0, 0), 2: (2, 0, 0, 0)}, bookkeeping=DjangoBookkeeping(frozenset({"public.django_content_type"}))
    )
    assert inserted.problems() == ["public.auth_group: 1 row added"]
    assert [rows.describe() for rows in inserted.post_migrate_rows] == ["public.django_content_type: 2 rows added by post_migrate"]
    assert inserted.proven_by_statistics == ["public.auth_group", "public.django_content_type"]
    # The same tables hashed (every table, as before PostgreSQL 15): the hashes decide, not the counts.
    hashed = compare({1: _table(1, "public.auth_group")}, {1: _table(1, "public.auth_group")}, writes=None)
    assert hashed.data_intact and hashed.proven_by_rows == ["public.auth_group"]
