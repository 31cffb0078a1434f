"""Which models the ORM exercises cover: those whose tables or columns the plan changes (pure, unit-tested).

A release that rebuilds an index or changes a field's choices changes no table or column:
nothing of what the release serving now or the candidate asks of the database can break
during the overlap, so no model is exercised and the verdict takes seconds. Otherwise the
tables come from the plan's SQL (schema changes and data changes, RunSQL included), the
models a state-only operation (SeparateDatabaseAndState) touches, and the models changed
without a migration; a migration whose effect its SQL does not show (RunPython, a
statement we cannot read) brings in every model of its app. The probe adds the models
whose foreign keys reach these (``deploygate_exercise.in_scope``).

``gates.compat_scope = "all"`` exercises every model instead (the full sweep).

The content check is proportional the same way (``content_tables``): the rows of the
tables the plan changes are hashed, every other table is proven untouched from the copy's
statistics without reading its rows (``deploygate.table_writes``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from deploygate.migrations import qualify
from deploygate.probe import MigrationPlan, PlanStep

CHANGED = "changed"
ALL = "all"

_NAME = r'(?:"((?:[^"]|"")+)"|([\w$]+))'
_QUALIFIED = rf"(?:{_NAME}\.)?{_NAME}"
# Statements that change what a table holds or accepts (anywhere in a statement: RunSQL may chain several).
_TABLE_CHANGES = re.compile(
    rf"\b(?:ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?|CREATE\s+(?:UNLOGGED\s+)?TABLE(?:\s+IF\s+NOT\s+EXISTS)?"
    rf"|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|TRUNCATE(?:\s+TABLE)?(?:\s+ONLY)?|INSERT\s+INTO|UPDATE(?:\s+ONLY)?"
    rf"|DELETE\s+FROM(?:\s+ONLY)?|CREATE\s+UNIQUE\s+INDEX(?:\s+CONCURRENTLY)?(?:\s+IF\s+NOT\s+EXISTS)?"
    rf"(?:\s+{_NAME})?\s+ON(?:\s+ONLY)?)\s+{_QUALIFIED}",
    re.I,
)
_RENAMED_TO = re.compile(rf"^ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?\s+{_QUALIFIED}\s+RENAME\s+TO\s+{_NAME}", re.I)
# Statements that change no table's shape or the rows it accepts: a plain index, a comment, deferral.
_NO_TABLE_CHANGE = re.compile(
    r"^(?:CREATE\s+INDEX|DROP\s+INDEX|ALTER\s+INDEX|REINDEX|COMMENT\s+ON|SET\s+CONSTRAINTS|ANALYZE|VACUUM)\b", re.I
)
# Operations whose effect on the database is code, not SQL we can read.
_OPAQUE_OPERATIONS = frozenset({"RunPython"})
# Django's own bookkeeping on every migrate: post_migrate adds ContentTypes and Permissions,
# RenameContentType renames one. Small tables, hashed always, so the rows added are shown.
BOOKKEEPING_TABLES = frozenset({"public.django_content_type", "public.auth_permission"})


@dataclass(frozen=True)
class Scope:
    """The tables (unqualified, as Django's models name them) and apps whose models are exercised."""

    tables: frozenset[str] = field(default_factory=frozenset)
    apps: frozenset[str] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not self.tables and not self.apps

    def as_spec(self) -> dict[str, list[str]]:
        """The probe's ``scope`` argument."""
        return {"tables": sorted(self.tables), "apps": sorted(self.apps)}

    def describe(self) -> str:
        """In words, e.g. "the models of tables a, b; every model of app x; and those whose foreign keys reach them"."""
        parts = [
            f"the models of tables {', '.join(sorted(self.tables))}" if self.tables else "",
            f"every model of {', '.join(sorted(self.apps))}" if self.apps else "",
        ]
        found = "; ".join(p for p in parts if p)
        return f"{found}, and the models whose foreign keys reach them" if found else "nothing (no table or column changes)"


def _unquote(quoted: str | None, bare: str | None) -> str:
    return quoted.replace('""', '"') if quoted is not None else bare or ""


def _statements(text: str) -> list[str]:
    """A collected statement split at semicolons outside quotes and $$ bodies, comments dropped."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    parts, current, quote = [], [], None
    body = "\n".join(lines)
    i = 0
    while i < len(body):
        if body.startswith("$$", i):
            quote = None if quote == "$$" else quote or "$$"
            current.append("$$")
            i += 2
            continue
        ch = body[i]
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote == ch else ch
        if ch == ";" and quote is None:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def tables_of(statement: str) -> tuple[set[str], bool]:
    """The tables one collected SQL text changes, and whether all of it was understood (False: some
    statement is neither a known table change nor known to change no table)."""
    tables: set[str] = set()
    understood = True
    for part in _statements(statement):
        found = {_unquote(m[5], m[6]) for m in _TABLE_CHANGES.finditer(part)}
        if renamed := _RENAMED_TO.match(part):
            found.add(_unquote(renamed[5], renamed[6]))
        if found:
            tables |= found
        elif not _NO_TABLE_CHANGE.match(part):
            understood = False
    return tables, understood


def _step_scope(step: PlanStep, *, state_only: bool = True) -> Scope:
    """What ``step`` changes: the tables its SQL names (and, with ``state_only``, those its state-only
    operations name: their models' ORM names change), or its app when its effect is code."""
    tables: set[str] = set(step.state_only_tables) if state_only else set()
    opaque = any(op in _OPAQUE_OPERATIONS for op in step.operation_types)
    for statement in step.sql:
        found, understood = tables_of(statement)
        tables |= found
        # Django writes a comment where an operation has no SQL (RunPython); the probe, where rendering failed.
        opaque = opaque or not understood or "CANNOT BE WRITTEN AS SQL" in statement or "SQL not renderable" in statement
    # Unique sets dropped through DROP INDEX do not name their table: the app's models stand in for it.
    opaque = opaque or any(change.unique_removed for change in step.changes)
    return Scope(tables=frozenset(tables), apps=frozenset({step.app} if opaque else ()))


def changed_by(plan: MigrationPlan) -> Scope:
    """What the plan changes (and what the release changes without a migration), as a ``Scope``."""
    tables, apps = set(plan.unmigrated_tables), set()
    for step in plan.steps:
        step_scope = _step_scope(step)
        tables |= step_scope.tables
        apps |= step_scope.apps
    return Scope(tables=frozenset(t.split(".", 1)[-1] if t.startswith("public.") else t for t in tables), apps=frozenset(apps))


def probe_scope(plan: MigrationPlan, setting: str) -> dict[str, list[str]] | None:
    """The probe's ``scope`` argument for ``gates.compat_scope``: None (every model) for "all"."""
    return None if setting == ALL else changed_by(plan).as_spec()


def post_check_args(plan: MigrationPlan | None, setting: str) -> list[str]:
    """The post gate's ``--plan-scope`` for a deploy's ``plan`` (none without a plan, or for "all": every model).

    Production is migrated by the time the post checks run: only the deploy still knows what its plan changed.
    """
    if plan is None or setting == ALL:
        return []
    return ["--plan-scope", json.dumps(changed_by(plan).as_spec())]


def content_tables(plan: MigrationPlan, setting: str = CHANGED) -> frozenset[str] | None:
    """The tables (schema-qualified) whose rows the content check hashes: those the plan's SQL changes,
    every table of the app of a migration whose effect is code (RunPython, SQL we cannot read: a data
    migration writes its own app's tables), and Django's bookkeeping tables. None for every table
    (``gates.compat_scope = "all"``).

    Any other table is proven untouched from statistics; a data migration writing one is caught there.
    A table only a state-only operation names is one of them: its rows are not the operation's to change.
    """
    if setting == ALL:
        return None
    tables = set(BOOKKEEPING_TABLES)
    for step in plan.steps:
        step_scope = _step_scope(step, state_only=False)
        tables |= {qualify(t) for t in step_scope.tables}
        if step_scope.apps:
            tables |= {qualify(t) for t in step.app_tables}
    return frozenset(tables)
