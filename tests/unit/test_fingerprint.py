"""Comparing content fingerprints: renames map themselves, real changes do not (pure logic)."""

from __future__ import annotations

from deploygate.columns import Column, match_columns
from deploygate.fingerprint import DjangoBookkeeping, TableFingerprint, compare


def _table(
    oid: int,
    name: str,
    cols: dict[int, str],
    *,
    rows: int = 10,
    row_hash: int = 111,
    node: int = 1,
    projected: int | None = None,
    types: dict[int, str] | None = None,
) -> TableFingerprint:
    types = types or {}
    return TableFingerprint(
        oid=oid,
        name=name,
        relfilenode=node,
        rows=rows,
        row_hash=row_hash,
        projected_hash=projected,
        columns={n: Column(n, c, types.get(n, "integer")) for n, c in cols.items()},
    )


def test_renames_are_mapped_and_content_is_intact() -> None:
    before = {1: _table(1, "public.members_old", {1: "id", 2: "name"}), 2: _table(2, "public.link", {1: "id", 2: "old_id"})}
    after = {1: _table(1, "public.members_new", {1: "id", 2: "name"}), 2: _table(2, "public.link", {1: "id", 2: "new_id"})}
    diff = compare(before, after)
    assert diff.renamed_tables == [("public.members_old", "public.members_new")]
    assert diff.renamed_columns == [("public.link", "old_id", "new_id")]
    assert diff.data_intact and not diff.identical


def test_lost_rows_and_changed_values_are_problems() -> None:
    before = {1: _table(1, "public.t", {1: "id", 2: "v"}, rows=10, row_hash=5)}
    assert compare(before, {1: _table(1, "public.t", {1: "id", 2: "v"}, rows=9, row_hash=4)}).problems() == [
        "public.t: 10 rows before, 9 after",
        "public.t.row content: values changed",
    ]
    assert not compare(before, {1: _table(1, "public.t", {1: "id", 2: "v"}, rows=10, row_hash=6)}).data_intact


def test_added_column_uses_the_projected_hash() -> None:
    before = {1: _table(1, "public.t", {1: "id"}, row_hash=7)}
    intact = compare(before, {1: _table(1, "public.t", {1: "id", 2: "new"}, row_hash=99, projected=7)})
    assert intact.data_intact and intact.added_columns == [("public.t", "new")]
    changed = compare(before, {1: _table(1, "public.t", {1: "id", 2: "new"}, row_hash=99, projected=8)})
    assert not changed.data_intact


def test_dropped_table_and_column() -> None:
    before = {1: _table(1, "public.a", {1: "id", 2: "x"}), 2: _table(2, "public.b", {1: "id"})}
    after = {1: _table(1, "public.a", {1: "id"})}
    diff = compare(before, after)
    assert diff.dropped_tables == ["public.b"] and diff.dropped_columns == [("public.a", "x")]


def test_type_change_is_judged_by_the_values_as_text() -> None:
    before = {1: _table(1, "public.a", {1: "q"}, types={1: "character varying(100)"}, row_hash=5)}
    widened = compare(before, {1: _table(1, "public.a", {1: "q"}, types={1: "character varying(120)"}, row_hash=5)})
    assert widened.data_intact and not widened.changed_columns
    assert widened.retyped_columns == [("public.a", "q (character varying(100) -> character varying(120))")]
    altered = compare(before, {1: _table(1, "public.a", {1: "q"}, types={1: "integer"}, row_hash=6)})
    assert altered.problems() == ["public.a.q (character varying(100) -> integer): values changed"]


def test_rows_added_after_intact_ones_are_listed_by_who_added_them() -> None:
    before = {1: _table(1, "public.django_content_type", {1: "id", 2: "model"}, rows=3, row_hash=30)}

    def grown(kept_hash: int) -> dict[int, TableFingerprint]:
        table = _table(1, "public.django_content_type", {1: "id", 2: "model"}, rows=4, row_hash=41)
        table.kept_rows, table.kept_hash, table.added_sample = 3, kept_hash, ["(4,tag)"]
        return {1: table}

    bookkeeping = DjangoBookkeeping(post_migrate=frozenset({"public.django_content_type"}))
    by_post_migrate = compare(before, grown(30), bookkeeping=bookkeeping)
    assert by_post_migrate.identical and by_post_migrate.problems() == []
    assert [rows.describe() for rows in by_post_migrate.post_migrate_rows] == [
        "public.django_content_type: 1 row added by post_migrate: (4,tag)"
    ]
    by_migration = compare(before, grown(30))
    assert by_migration.problems() == ["public.django_content_type: 1 row added: (4,tag)"]
    # An old row changed as well: the counts and the content are reported, nothing is excused.
    altered = compare(before, grown(31), bookkeeping=bookkeeping)
    assert altered.problems() == [
        "public.django_content_type: 3 rows before, 4 after",
        "public.django_content_type.row content: values changed",
    ]


def test_a_content_type_renamed_with_its_model_is_bookkeeping() -> None:
    before = {1: _table(1, "public.django_content_type", {1: "id", 2: "model"}, rows=3, row_hash=30)}
    renamed = {1: _table(1, "public.django_content_type", {1: "id", 2: "model"}, rows=3, row_hash=31)}
    bookkeeping = DjangoBookkeeping(content_type_renames=frozenset({"public.django_content_type"}))
    diff = compare(before, renamed, bookkeeping=bookkeeping)
    assert diff.identical and diff.content_type_renames == ["public.django_content_type"]
    assert compare(before, renamed).problems() == ["public.django_content_type.row content: values changed"]
    # Losing a row is never bookkeeping.
    lost = {1: _table(1, "public.django_content_type", {1: "id", 2: "model"}, rows=2, row_hash=20)}
    assert not compare(before, lost, bookkeeping=bookkeeping).data_intact


def test_rewrite_is_detected_and_ignore_applies() -> None:
    before = {1: _table(1, "public.t", {1: "id"}, node=10), 2: _table(2, "public.django_migrations", {1: "id"}, rows=1)}
    after = {1: _table(1, "public.t", {1: "id"}, node=11), 2: _table(2, "public.django_migrations", {1: "id"}, rows=3)}
    diff = compare(before, after, ignore=frozenset({"public.django_migrations"}))
    assert diff.rewritten_tables == ["public.t"] and diff.identical


def test_a_column_re_created_last_is_matched_by_name_and_reported_as_reordered() -> None:
    # A reversal re-adds the nullable text column the plan dropped: same name and type, a new attnum.
    before = {1: _table(1, "public.t", {1: "id", 2: "note", 3: "name"}, types={2: "text"}, row_hash=5)}
    after = _table(1, "public.t", {1: "id", 3: "name", 4: "note"}, types={4: "text"}, row_hash=9, projected=5)
    diff = compare(before, {1: after})
    assert diff.dropped_columns == [] and diff.added_columns == [] and diff.renamed_columns == []
    assert diff.reordered_columns == [("public.t", ["id", "note", "name"], ["id", "name", "note"])]
    # Every value under each name is the same: no problem, the order is a note.
    assert diff.problems() == [] and diff.identical
    assert diff.notes() == ["public.t: column order changed (id, note, name -> id, name, note); every value is the same under its name"]
    # The values under the re-created column are not those it had: reported as changed content, not a dropped column.
    lost = compare(before, {1: _table(1, "public.t", {1: "id", 3: "name", 4: "note"}, types={4: "text"}, row_hash=9, projected=6)})
    assert lost.problems() == ["public.t.row content: values changed"]


def test_columns_pair_by_name_before_number() -> None:
    old = {1: Column(1, "id", "integer"), 2: Column(2, "code", "text"), 3: Column(3, "note", "text")}
    # code renamed to sku (same attnum, a new name), note re-created as integer at the end, colour added.
    new = {1: Column(1, "id", "integer"), 2: Column(2, "sku", "text"), 4: Column(4, "note", "integer"), 5: Column(5, "colour", "text")}
    match = match_columns(old, new)
    assert [(a.name, b.name, b.attnum) for a, b in match.pairs] == [("id", "id", 1), ("code", "sku", 2), ("note", "note", 4)]
    assert match.renamed == [("code", "sku")] and [c.name for c in match.added] == ["colour"] and not match.reordered
    # A re-created table numbers its columns afresh: only names pair.
    recreated = match_columns(old, {1: Column(1, "id", "integer"), 2: Column(2, "sku", "text")}, same_object=False)
    assert [c.name for c in recreated.dropped] == ["code", "note"] and [c.name for c in recreated.added] == ["sku"]
    # A number whose column keeps an old name is that column's, never a rename of another.
    swapped = match_columns({1: Column(1, "a", "text"), 2: Column(2, "b", "text")}, {1: Column(1, "b", "text"), 3: Column(3, "a", "text")})
    assert [(a.name, b.attnum) for a, b in swapped.pairs] == [("a", 3), ("b", 1)] and swapped.reordered


def test_a_retyped_re_created_column_is_retyped_not_dropped() -> None:
    before = {1: _table(1, "public.t", {1: "id", 2: "q"}, types={2: "integer"}, row_hash=5)}
    after = {1: _table(1, "public.t", {1: "id", 3: "q"}, types={3: "text"}, row_hash=5)}
    diff = compare(before, after)
    assert diff.retyped_columns == [("public.t", "q (integer -> text)")] and not diff.dropped_columns and diff.data_intact
