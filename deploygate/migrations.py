"""What a migration plan's SQL says it will do to the schema (pure parsing, unit-tested).

Django renders each migration's SQL; from it we read the table and column renames,
additions and drops it announces, to check the copy changed exactly as planned. When a
statement fails on production's rows, its text and the database's diagnostics say which
query counts the rows in the way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from psycopg import sql

from deploygate.probe import MigrationFailure

# Django's record of applied migrations changes by design when migrations run.
RECORDER_TABLES = frozenset({"public.django_migrations"})

_IDENT = r'"((?:[^"]|"")+)"'
_RENAME_TABLE = re.compile(rf"^ALTER TABLE {_IDENT} RENAME TO {_IDENT}", re.I)
_RENAME_COLUMN = re.compile(rf"^ALTER TABLE {_IDENT} RENAME COLUMN {_IDENT} TO {_IDENT}", re.I)
_ADD_COLUMN = re.compile(rf"^ALTER TABLE {_IDENT} ADD COLUMN {_IDENT}", re.I)
_DROP_COLUMN = re.compile(rf"^ALTER TABLE {_IDENT} DROP COLUMN {_IDENT}", re.I)
_CREATE_TABLE = re.compile(rf"^CREATE TABLE {_IDENT}", re.I)
_DROP_TABLE = re.compile(rf"^DROP TABLE {_IDENT}", re.I)


def qualify(name: str) -> str:
    """``t`` -> ``public.t`` (the schema Django's unqualified SQL lands in); ``s.t`` unchanged."""
    return name if "." in name else f"public.{name}"


@dataclass
class SchemaChanges:
    """Renames are (old, new); columns are named by the table as it is called at that statement."""

    renamed_tables: set[tuple[str, str]] = field(default_factory=set)
    renamed_columns: set[tuple[str, str]] = field(default_factory=set)
    added_columns: set[str] = field(default_factory=set)
    dropped_columns: set[str] = field(default_factory=set)
    created_tables: set[str] = field(default_factory=set)
    dropped_tables: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not any(vars(self).values())


def announced_changes(statements: Iterable[str]) -> SchemaChanges:
    """The schema changes a list of SQL statements announces."""
    changes = SchemaChanges()
    for statement in statements:
        text = statement.strip()
        if match := _RENAME_COLUMN.match(text):
            changes.renamed_columns.add((match[2], match[3]))
        elif match := _RENAME_TABLE.match(text):
            changes.renamed_tables.add((qualify(match[1]), qualify(match[2])))
        elif match := _ADD_COLUMN.match(text):
            changes.added_columns.add(match[2])
        elif match := _DROP_COLUMN.match(text):
            changes.dropped_columns.add(match[2])
        elif match := _CREATE_TABLE.match(text):
            changes.created_tables.add(qualify(match[1]))
        elif match := _DROP_TABLE.match(text):
            changes.dropped_tables.add(qualify(match[1]))
    return changes


def parse_expected_plan(text: str) -> list[str]:
    """``"a.0002_x, b.0023_y"`` -> ``["a.0002_x", "b.0023_y"]`` (empty: no expectation)."""
    return [item.strip() for item in text.split(",") if item.strip()]


# SQLSTATEs of a statement that fails because of rows already in the table.
NOT_NULL_VIOLATION = "23502"
UNIQUE_VIOLATION = "23505"
CHECK_VIOLATION = "23514"
FOREIGN_KEY_VIOLATION = "23503"
VALUE_TOO_LONG = "22001"

_KEY_COLUMNS = re.compile(r"Key \((?P<columns>[^)]*)\)=")
_ALTER_TO_VARCHAR = re.compile(rf"ALTER TABLE {_IDENT} ALTER COLUMN {_IDENT} TYPE (?:varchar|character varying)\((\d+)\)", re.I)
_ADD_CHECK = re.compile(rf"ALTER TABLE {_IDENT} ADD CONSTRAINT {_IDENT} CHECK \((?P<check>.*)\)\s*;?\s*$", re.I | re.S)
_ADD_FOREIGN_KEY = re.compile(
    rf"ALTER TABLE {_IDENT} ADD CONSTRAINT {_IDENT} FOREIGN KEY \({_IDENT}\) REFERENCES {_IDENT} \({_IDENT}\)", re.I
)


def _unquote(name: str) -> str:
    return name.replace('""', '"')


def offending_rows_query(failure: MigrationFailure) -> sql.Composed | None:
    """The query counting the rows that make ``failure``'s statement fail, from what the database
    reported (SQLSTATE, table, column, key) and the statement itself; None when the kind of failure
    names no countable condition."""
    statement = failure.statement or ""
    if failure.sqlstate == NOT_NULL_VIOLATION and failure.table and failure.column:
        return sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(sql.Identifier(failure.table), sql.Identifier(failure.column))
    if failure.sqlstate == UNIQUE_VIOLATION and failure.table and (key := _KEY_COLUMNS.search(failure.detail or "")):
        columns = [sql.Identifier(c.strip().strip('"')) for c in key["columns"].split(",")]
        # Rows sharing a key with another row; NULLs never collide in a unique index.
        return sql.SQL(
            "SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {table} WHERE {present} GROUP BY {columns} HAVING count(*) > 1) d"
        ).format(
            table=sql.Identifier(failure.table),
            present=sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in columns),
            columns=sql.SQL(", ").join(columns),
        )
    if failure.sqlstate == VALUE_TOO_LONG and (alter := _ALTER_TO_VARCHAR.search(statement)):
        return sql.SQL("SELECT count(*) FROM {} WHERE char_length({}) > {}").format(
            sql.Identifier(_unquote(alter[1])), sql.Identifier(_unquote(alter[2])), sql.Literal(int(alter[3]))
        )
    if failure.sqlstate == CHECK_VIOLATION and (check := _ADD_CHECK.search(statement)):
        # The migration's own condition, as Django rendered it for this table.
        return sql.SQL("SELECT count(*) FROM {} WHERE NOT ({})").format(sql.Identifier(_unquote(check[1])), sql.SQL(check["check"]))
    if failure.sqlstate == FOREIGN_KEY_VIOLATION and (fk := _ADD_FOREIGN_KEY.search(statement)):
        table, column, target, target_column = (_unquote(fk[i]) for i in (1, 3, 4, 5))
        return sql.SQL("SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} WHERE {p}.{pc} = {t}.{c})").format(
            t=sql.Identifier(table), c=sql.Identifier(column), p=sql.Identifier(target), pc=sql.Identifier(target_column)
        )
    return None
