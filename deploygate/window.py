"""The rows users wrote during a deploy window: found by id, exported, and put back after a restore.

A deploy records, per table with a single integer primary key, the largest id at its
start; rows above it are the window's. They are exported before any rollback (so nothing
users wrote can be lost) as one CSV of (table, id, row as a JSON array in column order),
which goes back positionally even when a rename changed the column names.

Rows the release's own migrate inserted (content types, permissions, a data migration's
rows) are bookkeeping, not the window's: a restore puts the schema back to before them,
and re-applying them would give the old release rows of models it does not have. They
are told from users' rows written meanwhile by their transaction (``MigrateWrites``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from deploygate.database import DatabaseAddress, connect

# django_migrations is left out: its rows are the migration itself, which a restore undoes;
# re-applying them would tell Django the old schema is the new one.
_INTEGER_PKS = """
SELECT c.relname, a.attname FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
WHERE i.indisprimary AND i.indnatts = 1 AND n.nspname = 'public' AND a.atttypid IN (20, 21, 23)
  AND c.relname <> 'django_migrations'
"""
_COLUMNS = """
SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum
"""


@dataclass(frozen=True)
class MigrateWrites:
    """Where migrate's own rows are: per table, above ``floors`` (its ids just before migrate) with an
    xmin among ``xids`` (the transactions migrate inserted there in, as the probe saw them).

    Both are needed: a migration that rewrites a table (ALTER ... TYPE) gives every row its
    own xmin, users' rows from before migrate too; those stay below the floor.
    """

    floors: dict[str, int] = field(default_factory=dict)
    xids: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def taken(cls, floors: dict[str, int], xids: dict[str, list[int]]) -> MigrateWrites:
        """The tables migrate inserted into, each with its floor: its ids just before migrate (``floors``),
        0 for a table migrate created. A table without an xid (written outside a transaction) is left out."""
        found: dict[str, set[int]] = {}
        for table, ids in xids.items():
            found.setdefault(table.removeprefix("public."), set()).update(ids)
        tables = sorted(table for table, ids in found.items() if ids)
        return cls(floors={t: floors.get(t, 0) for t in tables}, xids={t: sorted(found[t]) for t in tables})

    @classmethod
    def from_json(cls, data: dict | None) -> MigrateWrites:
        data = data or {}
        return cls(floors=dict(data.get("floors", {})), xids={t: list(x) for t, x in data.get("xids", {}).items()})

    def excluded(self, table: str, pk: sql.Identifier) -> tuple[sql.Composable, list]:
        """The condition (and its parameters) that leaves migrate's own rows of ``table`` out of a query on it."""
        if table not in self.floors:
            return sql.SQL("TRUE"), []
        return sql.SQL("NOT ({} > %s AND xmin::text::bigint = ANY(%s))").format(pk), [self.floors[table], self.xids[table]]


def describe_counts(counts: dict[str, int]) -> str:
    """``5 rows (auth_permission 4, django_content_type 1)``; ``0 rows`` when there are none."""
    total = sum(counts.values())
    detail = ", ".join(f"{table} {n}" for table, n in sorted(counts.items()) if n)
    return f"{total} rows" + (f" ({detail})" if detail else "")


def migrate_rows(db: DatabaseAddress, writes: MigrateWrites) -> dict[str, int]:
    """Per table, how many rows the release's migrate inserted (and still there)."""
    counts = {}
    with connect(db) as conn:
        pks = dict(conn.execute(_INTEGER_PKS).fetchall())
        for table in sorted(set(writes.floors) & set(pks)):
            condition, params = writes.excluded(table, sql.Identifier(pks[table]))
            query = sql.SQL("SELECT count(*) FROM {} WHERE NOT ({})").format(sql.Identifier(table), condition)
            counts[table] = conn.execute(query, params).fetchone()[0]
    return counts


def max_ids(db: DatabaseAddress) -> dict[str, int]:
    """Per public table with a single integer primary key, its largest id now."""
    with connect(db) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(sql.Identifier(column), sql.Identifier(table))
            ).fetchone()[0]
            for table, column in conn.execute(_INTEGER_PKS).fetchall()
        }


def export_rows(db: DatabaseAddress, floors: dict[str, int], path: Path, migrate_writes: MigrateWrites | None = None) -> int:
    """Write every row above its table's floor to ``path`` (mode 0600), but those ``migrate_writes``
    says migrate inserted; returns how many."""
    migrate_writes = migrate_writes or MigrateWrites()
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with connect(db) as conn:
        pks = dict(conn.execute(_INTEGER_PKS).fetchall())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["table", "id", "row"])
            for table, floor in sorted(floors.items()):
                if table not in pks:  # renamed or dropped since: its rows are under its new name
                    continue
                pk, ident = sql.Identifier(pks[table]), sql.Identifier(table)
                mine, params = migrate_writes.excluded(table, pk)
                # json (not jsonb) keeps the columns in table order.
                query = sql.SQL(
                    "SELECT {pk}, (SELECT json_agg(e.value) FROM json_each(row_to_json(t)) e) FROM {t} t "
                    "WHERE {pk} > %s AND {mine} ORDER BY {pk}"
                ).format(pk=pk, t=ident, mine=mine)
                for row_id, values in conn.execute(query, [floor, *params]).fetchall():
                    writer.writerow([table, row_id, json.dumps(values)])
                    count += 1
    return count


def reapply_rows(db: DatabaseAddress, path: Path) -> int:
    """Insert the exported rows again (existing ones are left alone); returns how many were offered."""
    count, tables = 0, set()
    # One transaction: foreign keys (deferrable, as Django makes them) are checked at commit,
    # so rows go back in any order, and either all of them do or none.
    with connect(db) as conn, conn.transaction(), path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            values = json.loads(record["row"])
            columns = [r[0] for r in conn.execute(_COLUMNS, [f'public."{record["table"]}"']).fetchall()][: len(values)]
            query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
                sql.Identifier(record["table"]),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            )
            conn.execute(query, [json.dumps(v) if isinstance(v, (dict, list)) else v for v in values[: len(columns)]])
            tables.add(record["table"])
            count += 1
        # The restore put each id sequence back to the backup's value: move it past the
        # re-applied rows, or the next insert collides with one of them.
        pks = dict(conn.execute(_INTEGER_PKS).fetchall())
        for table in sorted(tables & set(pks)):
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence(%s, %s), (SELECT max({}) FROM {}))").format(
                    sql.Identifier(pks[table]), sql.Identifier(table)
                ),
                [f'public."{table}"', pks[table]],
            )
    return count
