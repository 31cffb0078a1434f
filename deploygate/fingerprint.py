"""Fingerprints of a database's content, to prove that no row was lost or altered.

Tables are matched by OID, which survives renames: a RenameModel maps itself, with no
knowledge of the app. Columns are matched by name first, then a column whose name is gone
by its attribute number when the column there has a name the table did not have (a
RenameField keeps the number). A column dropped and re-created keeps its name and type but
not its number: a reversal that re-adds a dropped column puts it last, which is a changed
column order (``ContentDiff.reordered_columns``), not a lost column. Each table gets an
order-independent checksum of its rows' text (``t::text``), which names no column, so a
rename leaves it unchanged while a changed cell or a lost row does not. Values are
compared as text, so a column whose type changed (varchar(100) -> varchar(120), integer
-> varchar) still matches when no value changed, and does not when one did. When a
migration adds columns, the table after it is also hashed over just the columns it had
before, in their old order (``ROW(...)::text`` of those equals the old ``t::text``), so
old content is still proven; so is a table whose columns changed order. Where the primary key is an integer, the rows that existed before (key up to the
old maximum) are hashed apart from the rest, so rows added since (such as the ContentType
and Permission rows Django's post_migrate creates) are listed instead of hiding the proof.
One scan per table, one hash per row: cheap enough at millions of rows.

With ``rows_of`` only the tables named are hashed (the rehearsal names those its plan
changes: ``scope.content_tables``); every other table is fingerprinted from the catalog
alone (OID, relfilenode, columns; its row count is the statistics' estimate) and proven
untouched from the copy's statistics (``deploygate.table_writes``). Statistics can prove
that only on PostgreSQL 15 and later, so an older server has every table hashed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from psycopg import sql

from deploygate.columns import Column, match_columns
from deploygate.database import DatabaseAddress, connect
from deploygate.table_writes import Writes, by_statistics

_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relfilenode, pg_stat_get_live_tuples(c.oid),
       (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1
          AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)) AS integer_pk
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND n.nspname = ANY(%s)
ORDER BY n.nspname, c.relname
"""
_COLUMNS_SQL = """
SELECT attnum, attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum
"""
# Rows added since the reference, shown as their text: enough to recognise them, never the whole table.
ADDED_SAMPLE = 10


@dataclass
class TableFingerprint:
    """One table's identity, size and content checksum."""

    oid: int
    name: str  # schema.table
    relfilenode: int
    rows: int
    columns: dict[int, Column]
    row_hash: int = 0
    # The content hashed over only the columns a reference fingerprint had, in its order (set when
    # columns were added or changed order).
    projected_hash: int | None = None
    max_pk: int | None = None  # the largest integer primary key (None: no rows, or no single integer key)
    # With a reference that had max_pk: its rows (key up to that maximum), counted and hashed as it hashed them,
    # and the first rows added after them.
    kept_rows: int | None = None
    kept_hash: int | None = None
    added_sample: list[str] = field(default_factory=list)
    # False: the rows were not read (catalog only; ``rows`` is the statistics' estimate, ``row_hash`` 0).
    hashed: bool = True


def fingerprint(
    address: DatabaseAddress,
    schemas: tuple[str, ...] = ("public",),
    *,
    reference: dict[int, TableFingerprint] | None = None,
    rows_of: frozenset[str] | None = None,
) -> dict[int, TableFingerprint]:
    """Every table of ``schemas`` with its row count and content hash, keyed by OID.

    With ``reference`` (an earlier fingerprint of the same database; tables found by OID,
    else by name), a table that has gained columns or whose columns changed order since is
    also hashed over the reference's columns in the reference's order, and a table with an
    integer primary key has its reference rows hashed apart from rows added since.
    With ``rows_of`` (schema.table names), only those tables and those the reference hashed
    have their rows read; None reads every table.
    """
    result: dict[int, TableFingerprint] = {}
    by_name = {t.name: t for t in reference.values()} if reference else {}
    with connect(address) as conn:
        if rows_of is not None and int(conn.execute("SHOW server_version_num").fetchone()[0]) < 150000:
            rows_of = None  # the probe cannot count writes before 15 (no pg_stat_force_next_flush)
        for oid, schema, table, relfilenode, live, pk in conn.execute(_TABLES_SQL, [list(schemas)]).fetchall():
            columns = {n: Column(n, name, typ) for n, name, typ in conn.execute(_COLUMNS_SQL, [oid]).fetchall()}
            old = (reference.get(oid) or by_name.get(f"{schema}.{table}")) if reference else None
            if not (rows_of is None or f"{schema}.{table}" in rows_of or (old is not None and old.hashed)):
                result[oid] = TableFingerprint(oid, f"{schema}.{table}", relfilenode, live, columns, hashed=False)
                continue
            match = match_columns(old.columns, columns, same_object=old.oid == oid) if old is not None else None
            projected = match is not None and not match.dropped and bool(match.added or match.reordered)
            row_text = (
                sql.SQL("ROW({})::text").format(sql.SQL(", ").join(sql.Identifier(new.name) for _, new in match.pairs))
                if projected
                else sql.SQL("t::text")
            )
            # hashtext is Postgres' own fast 32-bit hash; summed as bigint it ignores row order. Each row
            # is hashed once in the inner query (twice only when columns were added) and every sum reuses it.
            inner = [sql.SQL("hashtext(t::text)::bigint AS h")]
            pieces = [sql.SQL("count(*)"), sql.SQL("coalesce(sum(h), 0)")]
            if projected:
                inner.append(sql.SQL("hashtext({})::bigint AS hp").format(row_text))
                pieces.append(sql.SQL("coalesce(sum(hp), 0)"))
            if pk:
                inner.append(sql.SQL("{} AS pk").format(sql.Identifier(pk)))
                pieces.append(sql.SQL("max(pk)"))
            split = pk is not None and old is not None and old.max_pk is not None
            if split:
                kept = sql.SQL("FILTER (WHERE pk <= {})").format(sql.Literal(old.max_pk))
                pieces.append(sql.SQL("count(*) {}").format(kept))
                pieces.append(sql.SQL("coalesce(sum({}) {}, 0)").format(sql.SQL("hp" if projected else "h"), kept))
            query = sql.SQL("SELECT {} FROM (SELECT {} FROM {} t) rows").format(
                sql.SQL(", ").join(pieces), sql.SQL(", ").join(inner), sql.Identifier(schema, table)
            )
            values = list(conn.execute(query).fetchone())
            rows, row_hash = values.pop(0), int(values.pop(0))
            fingerprinted = TableFingerprint(
                oid=oid,
                name=f"{schema}.{table}",
                relfilenode=relfilenode,
                rows=rows,
                columns=columns,
                row_hash=row_hash,
                projected_hash=int(values.pop(0)) if projected else None,
                max_pk=values.pop(0) if pk else None,
            )
            if split:
                fingerprinted.kept_rows, fingerprinted.kept_hash = values.pop(0), int(values.pop(0))
                if fingerprinted.kept_rows < rows:
                    added = sql.SQL("SELECT t::text FROM {} t WHERE {} > {} ORDER BY {} LIMIT {}").format(
                        sql.Identifier(schema, table),
                        sql.Identifier(pk),
                        sql.Literal(old.max_pk),
                        sql.Identifier(pk),
                        sql.Literal(ADDED_SAMPLE),
                    )
                    fingerprinted.added_sample = [text for (text,) in conn.execute(added).fetchall()]
            result[oid] = fingerprinted
    return result


def content_checksum(address: DatabaseAddress) -> str:
    """One hash over every table's row count and content hash: equal means the data is unchanged."""
    prints = fingerprint(address)
    text = json.dumps(sorted((t.name, t.rows, t.row_hash) for t in prints.values()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class DjangoBookkeeping:
    """Tables (schema.table) Django's own bookkeeping wrote to while migrating: post_migrate handlers
    add rows (ContentType, Permission, ...), contenttypes' RenameContentType renames a ContentType
    with its model. Neither is user data."""

    post_migrate: frozenset[str] = frozenset()
    content_type_renames: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AddedRows:
    """Rows a table gained while every row it had stayed as it was; ``sample`` shows the first few."""

    table: str
    count: int
    sample: tuple[str, ...]
    by_post_migrate: bool  # written by Django's post_migrate handlers, not by the migrations

    def describe(self) -> str:
        who = "added by post_migrate" if self.by_post_migrate else "added"
        if not self.sample:  # counted from statistics, rows not read
            return f"{self.table}: {self.count} row{'s' if self.count != 1 else ''} {who}"
        more = f" (+{self.count - len(self.sample)} more)" if self.count > len(self.sample) else ""
        return f"{self.table}: {self.count} row{'s' if self.count != 1 else ''} {who}: {', '.join(self.sample)}{more}"


@dataclass
class ContentDiff:
    """How ``after`` differs from ``before``: renames (harmless), and losses or changes (not)."""

    renamed_tables: list[tuple[str, str]] = field(default_factory=list)
    renamed_columns: list[tuple[str, str, str]] = field(default_factory=list)  # table, old, new
    added_tables: list[str] = field(default_factory=list)
    dropped_tables: list[str] = field(default_factory=list)
    added_columns: list[tuple[str, str]] = field(default_factory=list)
    dropped_columns: list[tuple[str, str]] = field(default_factory=list)
    # table, its columns' order before, after: every column kept under its name, one re-created after others
    # (a reversal re-adds a dropped column last). Not a problem when every value under each name matches:
    # Django names each column it reads and writes; only SQL relying on column order (SELECT *, INSERT
    # without a column list) would notice.
    reordered_columns: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    row_count_changes: list[tuple[str, int, int]] = field(default_factory=list)
    changed_columns: list[tuple[str, str]] = field(default_factory=list)
    retyped_columns: list[tuple[str, str]] = field(default_factory=list)  # table, "column (old -> new)"
    added_rows: list[AddedRows] = field(default_factory=list)
    # Tables whose rows contenttypes' RenameContentType changed (a ContentType follows its renamed model).
    content_type_renames: list[str] = field(default_factory=list)
    rewritten_tables: list[str] = field(default_factory=list)
    # How each table's rows were proven: hashed row by row, or untouched by the copy's statistics (rows
    # not read); and the tables neither proves, with why (a problem).
    proven_by_rows: list[str] = field(default_factory=list)
    proven_by_statistics: list[str] = field(default_factory=list)
    unproven: list[tuple[str, str]] = field(default_factory=list)

    def proof(self) -> list[str]:
        """Which tables were proven which way, in words."""
        lines = [f"row by row ({len(self.proven_by_rows)}): {', '.join(self.proven_by_rows) or '-'}"]
        lines.append(
            f"untouched by the copy's statistics, rows not read ({len(self.proven_by_statistics)}; same relfilenode, "
            f"no tuple updated or deleted): {', '.join(self.proven_by_statistics) or '-'}"
        )
        return lines

    @property
    def post_migrate_rows(self) -> list[AddedRows]:
        return [rows for rows in self.added_rows if rows.by_post_migrate]

    @property
    def data_intact(self) -> bool:
        """No table, column or row lost, no value changed, no row added except by post_migrate."""
        return not self.problems()

    @property
    def identical(self) -> bool:
        """Same tables, columns, names and rows (renames included); only Django's bookkeeping may differ
        (rows post_migrate added, a ContentType renamed with its model)."""
        return self.data_intact and not (self.renamed_tables or self.renamed_columns or self.added_tables or self.added_columns)

    def notes(self) -> list[str]:
        """What differs without being a problem: a changed column order."""
        return [
            f"{t}: column order changed ({', '.join(a)} -> {', '.join(b)}); every value is the same under its name"
            for t, a, b in self.reordered_columns
        ]

    def problems(self) -> list[str]:
        lines = [f"table {t} dropped" for t in self.dropped_tables]
        lines += [f"column {t}.{c} dropped" for t, c in self.dropped_columns]
        lines += [f"{t}: {a} rows before, {b} after" for t, a, b in self.row_count_changes]
        lines += [f"{t}.{c}: values changed" for t, c in self.changed_columns]
        lines += [rows.describe() for rows in self.added_rows if not rows.by_post_migrate]
        lines += [
            f"{t}: {why}; its rows were never hashed (the plan's SQL does not name it): content not proven" for t, why in self.unproven
        ]
        return lines


def _match(before: dict[int, TableFingerprint], after: dict[int, TableFingerprint]) -> dict[int, TableFingerprint]:
    """Pair tables by OID, falling back to name (a table dropped and re-created gets a new OID)."""
    by_name = {t.name: t for t in after.values()}
    return {oid: after.get(oid) or by_name.get(table.name) for oid, table in before.items() if after.get(oid) or by_name.get(table.name)}


def compare(
    before: dict[int, TableFingerprint],
    after: dict[int, TableFingerprint],
    *,
    ignore: frozenset[str] = frozenset(),
    bookkeeping: DjangoBookkeeping = DjangoBookkeeping(),
    writes: Writes | None = None,
) -> ContentDiff:
    """What changed between two fingerprints of the same database (tables named in ``ignore`` left out).

    ``after`` should be taken with ``reference=before``. Django's ``bookkeeping`` is listed
    but no problem: rows added after intact ones in a table post_migrate wrote to, rows
    changed in one RenameContentType wrote to (as long as none is lost). A table whose rows
    either side did not hash is judged by ``writes`` (the tuples written per OID meanwhile,
    None when not counted: ``table_writes.by_statistics``).
    """
    before = {oid: t for oid, t in before.items() if t.name not in ignore}
    after = {oid: t for oid, t in after.items() if t.name not in ignore}
    diff = ContentDiff()
    pairs = _match(before, after)
    matched_after = {t.oid for t in pairs.values()}
    diff.dropped_tables = [t.name for oid, t in before.items() if oid not in pairs]
    diff.added_tables = [t.name for t in after.values() if t.oid not in matched_after]
    for oid, old in before.items():
        new = pairs.get(oid)
        if new is None:
            continue
        if new.name != old.name:
            diff.renamed_tables.append((old.name, new.name))
        if new.relfilenode != old.relfilenode and new.oid == old.oid:
            diff.rewritten_tables.append(new.name)
        if not (old.hashed and new.hashed):
            _by_statistics(diff, old, new, writes, bookkeeping)
            continue
        diff.proven_by_rows.append(new.name)
        comparable = new.projected_hash if new.projected_hash is not None else new.row_hash
        renamed_by_django = new.name in bookkeeping.content_type_renames and comparable != old.row_hash and new.rows >= old.rows
        # Every old row still there as it was, and more rows after them.
        grown = new.rows > old.rows and new.kept_rows == old.rows and new.kept_hash == old.row_hash
        if renamed_by_django:
            diff.content_type_renames.append(new.name)
        if grown or renamed_by_django and new.rows > old.rows:
            sample = tuple(new.added_sample)
            diff.added_rows.append(AddedRows(new.name, new.rows - old.rows, sample, by_post_migrate=new.name in bookkeeping.post_migrate))
        elif new.rows != old.rows:
            diff.row_count_changes.append((new.name, old.rows, new.rows))
        # Columns by name, then by attnum for a rename (match_columns).
        match = match_columns(old.columns, new.columns, same_object=new.oid == old.oid)
        diff.dropped_columns += [(new.name, column.name) for column in match.dropped]
        diff.renamed_columns += [(new.name, before, after) for before, after in match.renamed]
        retyped = [f"{b.name} ({a.type} -> {b.type})" for a, b in match.pairs if a.type != b.type]
        diff.retyped_columns += [(new.name, text) for text in retyped]
        if match.reordered and not match.dropped:
            diff.reordered_columns.append((new.name, match.order(0), match.order(1)))
        # (Grown: the old rows were compared above. With a dropped column the rest cannot be
        # compared: the drop itself is reported.)
        if not (grown or match.dropped or renamed_by_django) and comparable != old.row_hash:
            diff.changed_columns.append((new.name, ", ".join(retyped) if retyped else "row content"))
        diff.added_columns += [(new.name, column.name) for column in match.added]
    return diff


def _by_statistics(
    diff: ContentDiff, old: TableFingerprint, new: TableFingerprint, writes: Writes | None, bookkeeping: DjangoBookkeeping
) -> None:
    """A table whose rows were not hashed: its columns from the catalog, its rows from the statistics."""
    match = match_columns(old.columns, new.columns, same_object=new.oid == old.oid)
    diff.dropped_columns += [(new.name, column.name) for column in match.dropped]
    diff.renamed_columns += [(new.name, before, after) for before, after in match.renamed]
    diff.retyped_columns += [(new.name, f"{b.name} ({a.type} -> {b.type})") for a, b in match.pairs if a.type != b.type]
    diff.added_columns += [(new.name, column.name) for column in match.added]
    proof = by_statistics(old.oid, old.relfilenode, new.oid, new.relfilenode, writes)
    if not proof.kept:
        diff.unproven.append((new.name, proof.reason))
        return
    diff.proven_by_statistics.append(new.name)
    if proof.added:
        diff.added_rows.append(AddedRows(new.name, proof.added, (), by_post_migrate=new.name in bookkeeping.post_migrate))
