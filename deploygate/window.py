"""The rows users wrote during a deploy window: found by id, exported, and put back after a restore.

A deploy records, per table with a single integer primary key, the largest id at its
start; rows above it are the window's. They are exported before any rollback (so nothing
users wrote can be lost) as one CSV of (table, id, row as a JSON array in column order),
which goes back positionally even when a rename changed the column names.
"""

from __future__ import annotations

import csv
import json
import os
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


def max_ids(db: DatabaseAddress) -> dict[str, int]:
    """Per public table with a single integer primary key, its largest id now."""
    with connect(db) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(sql.Identifier(column), sql.Identifier(table))
            ).fetchone()[0]
            for table, column in conn.execute(_INTEGER_PKS).fetchall()
        }


def export_rows(db: DatabaseAddress, floors: dict[str, int], path: Path) -> int:
    """Write every row above its table's floor to ``path`` (mode 0600); returns how many."""
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
                # json (not jsonb) keeps the columns in table order.
                query = sql.SQL(
                    "SELECT {pk}, (SELECT json_agg(e.value) FROM json_each(row_to_json(t)) e) FROM {t} t WHERE {pk} > %s ORDER BY {pk}"
                ).format(pk=pk, t=ident)
                for row_id, values in conn.execute(query, [floor]).fetchall():
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
