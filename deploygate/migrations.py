"""What a migration plan's SQL says it will do to the schema (pure parsing, unit-tested).

Django renders each migration's SQL; from it we read the table and column renames,
additions and drops it announces, to check the copy changed exactly as planned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

# Django's record of applied migrations changes by design when migrations run.
RECORDER_TABLES = frozenset({"public.django_migrations"})

_IDENT = r'"((?:[^"]|"")+)"'
_RENAME_TABLE = re.compile(rf"^ALTER TABLE {_IDENT} RENAME TO {_IDENT}", re.I)
_RENAME_COLUMN = re.compile(rf"^ALTER TABLE {_IDENT} RENAME COLUMN {_IDENT} TO {_IDENT}", re.I)
_ADD_COLUMN = re.compile(rf"^ALTER TABLE {_IDENT} ADD COLUMN {_IDENT}", re.I)
_DROP_COLUMN = re.compile(rf"^ALTER TABLE {_IDENT} DROP COLUMN {_IDENT}", re.I)
_CREATE_TABLE = re.compile(rf"^CREATE TABLE {_IDENT}", re.I)
_DROP_TABLE = re.compile(rf"^DROP TABLE {_IDENT}", re.I)


def _qualify(name: str) -> str:
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
            changes.renamed_tables.add((_qualify(match[1]), _qualify(match[2])))
        elif match := _ADD_COLUMN.match(text):
            changes.added_columns.add(match[2])
        elif match := _DROP_COLUMN.match(text):
            changes.dropped_columns.add(match[2])
        elif match := _CREATE_TABLE.match(text):
            changes.created_tables.add(_qualify(match[1]))
        elif match := _DROP_TABLE.match(text):
            changes.dropped_tables.add(_qualify(match[1]))
    return changes


def parse_expected_plan(text: str) -> list[str]:
    """``"a.0002_x, b.0023_y"`` -> ``["a.0002_x", "b.0023_y"]`` (empty: no expectation)."""
    return [item.strip() for item in text.split(",") if item.strip()]
