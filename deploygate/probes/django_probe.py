"""deploygate's probe, run inside the candidate image against a database copy.

Usage: python django_probe.py <command> [json-argument]
  plan                 the migrations this code would apply, what each does, and production's leaves
  migrate              apply them with Django's own `migrate`, recording time and table locks per migration
  migrate-to TARGETS   migrate to {"app": "name" | null} (used to reverse the plan)
  safe-migrations LABELS  the given migrations with renames made state-only (db_column / db_table kept), as files
  batch STEPS          [[command, argument], ...] in one process (Django set up once)
  exercise SPEC        run select / filter / insert / update / delete for models, all rolled back; inserts
                       write fresh values, then each field's boundary values and a duplicate row;
                       SPEC {"state": "current"} (this code's models), {"state": "applied"} (the historical
                       models at what the database has applied: the release serving it) or
                       {"state": {"app": "name"}} (at those migrations), "apps": [...], "reads": false
                       (only the writes: the reference boundary values are judged against)

Standalone on purpose: it runs in whatever Python and Django the target ships, so it
imports nothing but the standard library and Django. It prints one line
"DEPLOYGATE_RESULT <json>" for deploygate to read; everything else is Django's own output.
"""

import datetime
import decimal
import importlib.util
import ipaddress
import itertools
import json
import os
import re
import sys
import time
import uuid

sys.path.insert(0, os.getcwd())  # the image's WORKDIR holds manage.py and the project

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.apps import apps as django_apps  # noqa: E402
from django.core.management.commands import migrate as migrate_command  # noqa: E402
from django.core.management.sql import emit_pre_migrate_signal  # noqa: E402
from django.core.validators import MaxValueValidator, MinValueValidator  # noqa: E402
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, migrations, models, transaction  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.db.migrations.loader import MigrationLoader  # noqa: E402
from django.utils import timezone  # noqa: E402


def _beside(name):
    """A module of this script's directory, loaded by its path: the project's modules (first on the path) cannot shadow it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"deploygate_probe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


InsertTracker = _beside("migrate_writes").InsertTracker

MARKER = "DEPLOYGATE_RESULT "
connection = connections[DEFAULT_DB_ALIAS]
# User tables by OID. Taken before each statement: a table the statement drops is gone
# from pg_class right after it, while its lock stays until commit.
TABLES_SQL = """
SELECT c.oid::bigint, c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
"""
# The relation locks this connection holds; name and is_table are NULL for a relation dropped meanwhile.
LOCKS_SQL = """
SELECT l.relation::bigint, l.mode, c.oid::regclass::text,
       c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
"""
# The table an INSERT / UPDATE / DELETE writes to (to tell which tables post_migrate handlers fill).
WRITTEN_TABLE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?([\w.]+)"?', re.I)
FIELD_CHANGES = (migrations.AddField, migrations.AlterField, migrations.RemoveField)
LOCK_STRENGTH = [
    "AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
    "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
]  # fmt: skip


def emit(result):
    # A newline first: Django's migrate may have left its "Applying ..." line unfinished.
    print("\n" + MARKER + json.dumps(result, default=str), flush=True)


def one_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def describe(operation):
    try:
        return operation.describe()
    except Exception:  # noqa: BLE001 - a third-party operation may not describe itself
        return type(operation).__name__


def applied_leaves(loader):
    """Per app, the latest applied migration in the graph's order (what production runs on)."""
    leaves = {}
    for app, name in loader.graph.leaf_nodes():
        applied = [node for node in loader.graph.forwards_plan((app, name)) if node in loader.applied_migrations and node[0] == app]
        leaves[app] = applied[-1][1] if applied else None
    return leaves


def _field_facts(field):
    """A field's column type, NULL and uniqueness, as the advice needs them (None: no such field)."""
    if field is None:
        return None
    try:
        db_type = field.db_type(connection)
    except Exception:  # noqa: BLE001 - an unbound relation cannot name its column type
        db_type = None
    return {"db_type": db_type, "null": bool(field.null), "unique": bool(field.unique)}


def _unique_sets(model_state):
    """The field-name sets a model state declares unique together (unique_together and UniqueConstraint)."""
    together = model_state.options.get("unique_together") or ()
    if together and all(isinstance(name, str) for name in together):
        together = [together]  # the one-set shorthand unique_together = ("a", "b")
    sets = {tuple(sorted(names)) for names in together}
    constraints = model_state.options.get("constraints") or ()
    return sets | {tuple(sorted(c.fields)) for c in constraints if isinstance(c, models.UniqueConstraint) and c.fields}


def operation_changes(migration, state):
    """Per operation of ``migration`` (``state``: the project state before it, consumed here), the field it
    alters before and after, and how many unique sets it adds or removes on an existing model."""
    changes = []
    for op in migration.operations:
        before = state.clone()
        change = {"type": type(op).__name__}
        changes.append(change)
        try:
            op.state_forwards(migration.app_label, state)
        except Exception:  # noqa: BLE001 - a third-party operation: no facts, the advice falls back to its type
            continue
        model = getattr(op, "model_name_lower", None) or getattr(op, "name_lower", None)
        old, new = before.models.get((migration.app_label, model)), state.models.get((migration.app_label, model))
        if isinstance(op, FIELD_CHANGES):
            change["before"] = _field_facts(old.fields.get(op.name) if old else None)
            change["after"] = _field_facts(new.fields.get(op.name) if new else None)
        if old is not None and new is not None:
            change["unique_added"] = len(_unique_sets(new) - _unique_sets(old))
            change["unique_removed"] = len(_unique_sets(old) - _unique_sets(new))
    return changes


def cmd_plan(_arg):
    executor = MigrationExecutor(connection)
    loader = executor.loader
    plan = executor.migration_plan(loader.graph.leaf_nodes())
    steps = []
    for migration, backwards in plan:
        sql = []
        state = loader.project_state((migration.app_label, migration.name), at_end=False)
        changes = operation_changes(migration, state.clone())
        try:
            with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
                migration.apply(state, editor, collect_sql=True)
            sql = editor.collected_sql
        except Exception as exc:  # noqa: BLE001 - RunPython and friends cannot always render SQL
            sql = [f"-- SQL not renderable: {one_line(exc)}"]
        steps.append(
            {
                "app": migration.app_label,
                "name": migration.name,
                "atomic": migration.atomic,
                "operations": [describe(op) for op in migration.operations],
                "operation_types": [type(op).__name__ for op in migration.operations],
                "reversible": all(op.reversible for op in migration.operations),
                "sql": sql,
                "changes": changes,
            }
        )
    # Applied names the graph lacks are sorted by the host (deploygate.migration_history): a squash
    # that replaces them, or an app no longer installed, explains them; anything else is a mismatch.
    outside = sorted(f"{app}.{name}" for app, name in loader.applied_migrations if (app, name) not in loader.graph.nodes)
    return {
        "plan": steps,
        "applied_leaves": applied_leaves(loader),
        "leaves": dict(loader.graph.leaf_nodes()),
        "outside_graph": outside,
        "squash_replaces": {
            f"{app}.{name}": [f"{a}.{n}" for a, n in migration.replaces] for (app, name), migration in loader.replacements.items()
        },
        "installed_apps": sorted(config.label for config in django_apps.get_app_configs()),
        "applied": sorted(f"{app}.{name}" for app, name in loader.applied_migrations),
    }, 0


def database_error(exc):
    """What the database said about ``exc`` (Django wraps the driver's error; psycopg 2 and 3 both carry ``diag``)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    diag = getattr(cause, "diag", None)

    def get(name):
        return getattr(diag, name, None) if diag is not None else None

    return {
        "message": one_line(exc),
        "sqlstate": get("sqlstate") or getattr(cause, "pgcode", None),
        "table": get("table_name"),
        "column": get("column_name"),
        "constraint": get("constraint_name"),
        "detail": get("message_detail"),
    }


class LockRecorder:
    """Django execute wrapper: after each statement of a migration, the table locks this connection holds.

    It also keeps the statement that failed (with the database's diagnostics), and the
    tables Django's own bookkeeping writes to, by who writes: "post_migrate" (handlers of
    contenttypes, auth and any app) and "content_type_rename" (the RenameContentType that
    contenttypes slips in after each RenameModel).
    """

    def __init__(self):
        self.current = None
        self.migrations = []
        self.bookkeeper = None
        self.bookkeeping = {"post_migrate": set(), "content_type_rename": set()}
        # Where migrate's own inserts went: the host tells its rows from users' by their xmin.
        self.inserts = InsertTracker()

    def begin(self, migration, direction):
        self.current = {
            "app": migration.app_label, "name": migration.name, "direction": direction,
            "started": time.monotonic(), "statements": 0, "first_seen": {}, "failure": None,
        }  # fmt: skip

    def end(self, error=None):
        done = self.current
        self.current = None
        if done is None:
            return
        done["finished"] = time.monotonic()
        done["duration_s"] = round(done["finished"] - done["started"], 4)
        done["error"] = error
        self.migrations.append(done)

    def finalize(self, committed_at=None):
        """Turn first-seen times into hold times. Locks are held until commit: the migration's own
        end, or ``committed_at`` when the whole plan ran in one transaction."""
        for done in self.migrations:
            released = committed_at if committed_at is not None else done["finished"]
            locks = {}
            for (table, mode), seen in done.pop("first_seen").items():
                best = locks.get(table)
                if best is None or LOCK_STRENGTH.index(mode) > LOCK_STRENGTH.index(best["mode"]):
                    locks[table] = {"mode": mode, "held_s": round(released - seen, 4)}
            done["locks"] = locks
            del done["started"], done["finished"]
        return self.migrations

    def failure(self):
        """The first failed statement of the run, with its migration's label (None: no statement failed)."""
        for done in self.migrations:
            if done.get("failure"):
                return dict(done["failure"], migration=f"{done['app']}.{done['name']}")
        return None

    def __call__(self, execute, sql, params, many, context):
        if self.bookkeeper is not None:
            written = WRITTEN_TABLE.match(sql)
            if written:
                self.bookkeeping[self.bookkeeper].add(written.group(1))
        raw = context["connection"].connection
        if self.current is None:
            if self.bookkeeper is None:
                return execute(sql, params, many, context)
            self.inserts.before(sql, raw)
            result = execute(sql, params, many, context)
            self.inserts.after(sql, raw, self.current)
            return result
        self.inserts.before(sql, raw)
        names = dict(_query(raw, TABLES_SQL) or [])
        started = time.monotonic()
        try:
            result = execute(sql, params, many, context)
            self.inserts.after(sql, raw, self.current)
            return result
        except Exception as exc:
            if not self.current["failure"]:
                self.current["failure"] = dict(database_error(exc), statement=sql)
            raise
        finally:
            self.current["statements"] += 1
            for held in _table_locks(raw, names):
                self.current["first_seen"].setdefault(held, started)


def _table_locks(raw_connection, names):
    """(table, mode) of every table lock the connection holds; ``names`` (OID -> name, taken before
    the statement) names the tables it dropped."""
    held = set()
    for oid, mode, name, is_table in _query(raw_connection, LOCKS_SQL) or []:
        table = names.get(oid) if name is None else (name if is_table else None)
        if table is not None:
            held.add((table, mode))
    return held


def _query(raw_connection, sql):
    """Rows of ``sql`` on the driver's connection, or None once the transaction is aborted
    (the statement's own error is what gets reported)."""
    try:
        with raw_connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    except Exception:  # noqa: BLE001 - see the docstring
        return None


_ORIGINAL_APPLY = MigrationExecutor.apply_migration
_ORIGINAL_UNAPPLY = MigrationExecutor.unapply_migration
_ORIGINAL_POST_MIGRATE = migrate_command.emit_post_migrate_signal
if django_apps.is_installed("django.contrib.contenttypes"):
    from django.contrib.contenttypes.management import RenameContentType  # noqa: E402

    _ORIGINAL_RENAME_CONTENT_TYPE = RenameContentType._rename
else:
    RenameContentType = None


def _as_bookkeeper(recorder, name, function):
    """``function`` wrapped so the recorder knows its writes are Django's bookkeeping of kind ``name``."""

    def wrapped(*args, **kwargs):
        recorder.bookkeeper = name
        try:
            return function(*args, **kwargs)
        finally:
            recorder.bookkeeper = None

    return wrapped


def _recording(recorder):
    """Wrap Django's executor so every applied/unapplied migration is timed (commit included),
    and Django's bookkeeping (post_migrate, RenameContentType) so the recorder knows when it writes."""
    original_apply = _ORIGINAL_APPLY
    original_unapply = _ORIGINAL_UNAPPLY

    def apply_migration(self, state, migration, fake=False, fake_initial=False):
        recorder.begin(migration, "forwards")
        try:
            result = original_apply(self, state, migration, fake=fake, fake_initial=fake_initial)
        except Exception as exc:
            recorder.end(one_line(exc))
            raise
        recorder.end()
        return result

    def unapply_migration(self, state, migration, fake=False):
        recorder.begin(migration, "backwards")
        try:
            result = original_unapply(self, state, migration, fake=fake)
        except Exception as exc:
            recorder.end(one_line(exc))
            raise
        recorder.end()
        return result

    MigrationExecutor.apply_migration = apply_migration
    MigrationExecutor.unapply_migration = unapply_migration
    migrate_command.emit_post_migrate_signal = _as_bookkeeper(recorder, "post_migrate", _ORIGINAL_POST_MIGRATE)
    if RenameContentType is not None:
        RenameContentType._rename = _as_bookkeeper(recorder, "content_type_rename", _ORIGINAL_RENAME_CONTENT_TYPE)


def cmd_migrate(_arg):
    """Django's own `migrate`, the whole plan in ONE transaction when every migration allows it.

    Postgres has transactional DDL: a plan that fails halfway then leaves nothing applied,
    so the release still serving never meets a half-migrated schema. The price is that
    locks are held until the plan commits, which is what the recorded hold times show.
    """
    recorder = LockRecorder()
    _recording(recorder)
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    whole_plan = bool(plan) and connection.features.can_rollback_ddl and all(m.atomic for m, _ in plan)
    error = None
    with connection.execute_wrapper(recorder):
        try:
            if whole_plan:
                with transaction.atomic():
                    call_command("migrate", interactive=False, verbosity=1)
                    recorder.inserts.own_xids(connection.connection)
            else:
                call_command("migrate", interactive=False, verbosity=1)
        except Exception as exc:  # noqa: BLE001 - reported to the host, which fails the gate
            error = one_line(exc)
    migrations = recorder.finalize(committed_at=time.monotonic() if whole_plan else None)
    return {
        "migrations": migrations,
        "error": error,
        "failure": recorder.failure(),
        "atomic_plan": whole_plan,
        # Rolled back with the plan when it failed: only a committed run wrote them.
        "bookkeeping": {name: sorted(tables) if error is None else [] for name, tables in recorder.bookkeeping.items()},
        "inserted_xids": recorder.inserts.result() if error is None else {},
    }, (1 if error else 0)


def cmd_migrate_to(arg):
    """Migrate to the given targets, with the pre_migrate signal Django's `migrate` sends first: through it
    contenttypes renames a model's ContentType back when a RenameModel is unapplied."""
    targets = [(app, name) for app, name in json.loads(arg).items()]
    recorder = LockRecorder()
    _recording(recorder)
    error = None
    with connection.execute_wrapper(recorder):
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(targets)
            leaves = applied_leaves(executor.loader)
            state = executor.loader.project_state(nodes=[(app, name) for app, name in leaves.items() if name], at_end=True)
            emit_pre_migrate_signal(0, False, connection.alias, apps=state.apps, plan=plan)
            executor.migrate(targets, plan=plan)
        except Exception as exc:  # noqa: BLE001 - IrreversibleError among others: reported, not raised
            error = one_line(exc)
    return {"migrations": recorder.finalize(), "error": error, "failure": recorder.failure()}, (1 if error else 0)


# --- exercising models the way an ORM user would ---------------------------------------------


class Unfillable(Exception):
    """The probe has no value for a field or a row: reported as unchecked with this reason, never as a failure."""


# Fresh values that must not collide are built from a random token or from this counter.
_SERIAL = itertools.count(1)


def _padded(prefix, suffix, length):
    """A unique string of exactly ``length`` characters: prefix, a random token padded with x's, suffix
    (only the padded token when prefix and suffix leave too little room for it)."""
    room = length - len(prefix) - len(suffix)
    token = ("dg" + uuid.uuid4().hex).ljust(max(room, length), "x")
    return prefix + token[:room] + suffix if room >= 8 else token[:length]


def _short(field, prefix, suffix):
    """A unique string that fits the field: the 34-character token with prefix and suffix, cut to max_length."""
    natural = 34 + len(prefix) + len(suffix)
    return _padded(prefix, suffix, min(field.max_length or natural, natural))


def _ip(field):
    """A random address of the documentation ranges' kind: IPv4 when the field takes only that."""
    if getattr(field, "protocol", "both").lower() == "ipv4":
        return "10." + ".".join(str(b) for b in uuid.uuid4().bytes[:3])
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | uuid.uuid4().int >> 64))


def _range(field):
    """A range over the field's base type: numbers, dates or datetimes."""
    base = _kind(field.base_field)
    if base == "IntegerField":
        bounds = (1, 10)
    elif base == "DecimalField":
        bounds = (decimal.Decimal("1.5"), decimal.Decimal("2.5"))
    elif base == "DateTimeField":
        bounds = (timezone.now(), timezone.now() + datetime.timedelta(hours=1))
    elif base == "DateField":
        bounds = (datetime.date.today(), datetime.date.today() + datetime.timedelta(days=1))
    else:
        raise Unfillable(f"no range of {type(field.base_field).__name__}")
    return field.range_type(*bounds)


# String kinds, with what a value of theirs looks like around the unique token (a file name, an address).
AFFIXES = {
    "EmailField": ("", "@example.invalid"),
    "URLField": ("https://example.invalid/", ""),
    "CharField": ("", ""),
    "TextField": ("", ""),
    "FileField": ("dg/", ".txt"),
    "FilePathField": ("dg/", ""),
}
# By the name of the nearest known class in the field's MRO, so subclasses (EmailField of
# CharField, CICharField, an app's own MoneyField(DecimalField)) take their parent's value.
# Names, not classes: django.contrib.postgres is imported only by apps that use it.
FRESH = {
    **{kind: lambda f, affixes=affixes: _short(f, *affixes) for kind, affixes in AFFIXES.items()},
    "UUIDField": lambda f: uuid.uuid4(),
    "GenericIPAddressField": _ip,
    "BooleanField": lambda f: False,
    "IntegerField": lambda f: 1,
    "FloatField": lambda f: 1.0,
    "DecimalField": lambda f: decimal.Decimal(0),
    "DateTimeField": lambda f: timezone.now(),
    "DateField": lambda f: datetime.date.today(),
    "TimeField": lambda f: datetime.time(12, 0),
    "DurationField": lambda f: datetime.timedelta(seconds=1),
    "BinaryField": lambda f: b"dg",
    "JSONField": lambda f: {"dg": uuid.uuid4().hex[:8]},
    "HStoreField": lambda f: {"dg": uuid.uuid4().hex[:8]},
    "ArrayField": lambda f: [fresh_value(f.base_field)],
    "RangeField": _range,
}
# Kinds whose fresh value, where it must be unique, is taken above the column's maximum.
ORDERED = {
    "IntegerField": 1, "FloatField": 1.0, "DecimalField": decimal.Decimal(1),
    "DateField": datetime.timedelta(days=1), "DateTimeField": datetime.timedelta(seconds=1),
}  # fmt: skip


def _kind(field):
    for cls in type(field).__mro__:
        if cls.__name__ in FRESH:
            return cls.__name__
    return None


def _db_type(field):
    try:
        return field.db_type(connection)
    except Exception:  # noqa: BLE001 - only used to explain why a field is unchecked
        return "?"


def fresh_value(field, model=None, tops=None):
    """A short value the field accepts; with ``model``, one no row of it has (for fields it declares unique).

    ``tops`` caches column maxima per field. Raises ``Unfillable`` for a type the probe does not know.
    """
    kind = _kind(field)
    if kind is None:
        raise Unfillable(f"no value for a {type(field).__name__} (column type {_db_type(field)})")
    if field.choices:
        return field.flatchoices[0][0]
    if model is not None and kind in ORDERED:
        if field.name not in tops:
            tops[field.name] = model._default_manager.aggregate(top=models.Max(field.name))["top"]
        top = tops[field.name]
        step = ORDERED[kind] * next(_SERIAL)
        return step if top is None else top + step
    return FRESH[kind](field)


def _limit(field, validator_type, pick):
    limits = [v.limit_value() if callable(v.limit_value) else v.limit_value for v in field.validators if isinstance(v, validator_type)]
    return pick(limits) if limits else None


def boundary_values(field):
    """(value class, value) pairs at the limits of what the field allows: NULL, every choice,
    the longest string, the smallest and largest number."""
    values = []
    if field.null:
        values.append(("null", None))
    if field.is_relation:
        return values
    if field.choices:
        return values + [(f"choice {value!r}", value) for value, _ in field.flatchoices if value is not None]
    kind = _kind(field)
    if kind in AFFIXES and field.max_length:
        values.append((f"max_length={field.max_length}", _padded(*AFFIXES[kind], field.max_length)))
    elif kind == "IntegerField":
        # IntegerField's validators carry the backend's range for its exact type (small, positive, big...).
        low, high = _limit(field, MinValueValidator, max), _limit(field, MaxValueValidator, min)
        values += [(f"min={low}", low)] if low is not None else []
        values += [(f"max={high}", high)] if high is not None else []
    elif kind == "DecimalField" and field.max_digits is not None and field.decimal_places is not None:
        step = decimal.Decimal(1).scaleb(-field.decimal_places)
        high = decimal.Decimal(1).scaleb(field.max_digits - field.decimal_places) - step
        values += [(f"min={-high}", -high), (f"max={high}", high)]
    return values


class _Rollback(Exception):
    pass


def _step(checks, entry, func, keep=True):
    """Run one ORM operation in a savepoint; record ok or the database's message in ``entry``, append it
    to ``checks`` and return the error (None: ok). Without ``keep`` the savepoint is rolled back even
    on success (the row was only there to be tried)."""
    error = None
    try:
        with transaction.atomic():
            func()
            if not keep:
                raise _Rollback
    except _Rollback:
        pass
    except Exception as exc:  # noqa: BLE001 - any error is an incompatibility to report
        error = exc
        entry["error"] = one_line(exc)
        entry["sqlstate"] = database_error(exc)["sqlstate"]
    entry["ok"] = error is None
    checks.append(entry)
    return error


def writable_fields(model):
    """The concrete fields an insert sets (not the auto primary key, auto_now dates or generated columns)."""
    return [
        f for f in model._meta.concrete_fields
        if not (f.primary_key and f.auto_created or isinstance(f, models.AutoField))
        and not (getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) or getattr(f, "generated", False))
    ]  # fmt: skip


def uniqueness_sets(model):
    """The field-name sets the model declares unique: unique fields, unique_together, UniqueConstraint."""
    sets = [(f.name,) for f in model._meta.concrete_fields if f.unique]
    sets += [tuple(names) for names in model._meta.unique_together]
    sets += [tuple(c.fields) for c in model._meta.constraints if isinstance(c, models.UniqueConstraint) and c.fields]
    return sets


def _any_row(model):
    """Some row of ``model`` (None: it has none); raises ``Unfillable`` when its table cannot be read
    (the target model's own checks report that failure)."""
    try:
        with transaction.atomic():
            return model._default_manager.order_by().first()
    except DatabaseError as exc:
        raise Unfillable(f"{model._meta.label} cannot be read ({one_line(exc)})") from None


class RowBuilder:
    """Rows of one model: fresh values everywhere (unused ones where the model wants uniqueness),
    relations pointing at the row the probe created for the target model, else at any row."""

    def __init__(self, model, created):
        self.model = model
        self.unique = {name for names in uniqueness_sets(model) for name in names}
        self.tops = {}
        self.targets = {}
        self.unchecked = {}  # field name -> why no value of its own could be written
        self.no_target = {}  # relation field name -> why there is no row to point at
        for field in writable_fields(model):
            if field.is_relation:
                try:
                    target = created.get(field.related_model._meta.label) or _any_row(field.related_model)
                except Unfillable as exc:
                    target, self.no_target[field.name] = None, str(exc)
                self.targets[field.name] = None if target is None else getattr(target, field.target_field.attname)

    def values(self, override=None):
        """attname -> value for a new row; ``override`` (field, value) sets one field. Raises ``Unfillable``."""
        values = {}
        for field in writable_fields(self.model):
            if override is not None and field is override[0]:
                values[field.attname] = override[1]
            elif field.is_relation:
                if self.targets[field.name] is None and not field.null:
                    why = self.no_target.get(field.name, f"{field.related_model._meta.label} has no row")
                    raise Unfillable(f"{field.name}: nothing to point at: {why}")
                values[field.attname] = self.targets[field.name]
            elif not field.has_default():
                try:
                    values[field.attname] = fresh_value(field, self.model if field.name in self.unique else None, self.tops)
                except Unfillable as exc:
                    if not field.null:
                        raise Unfillable(f"{field.name}: {exc}") from None
                    self.unchecked[field.name] = f"{field.name}: {exc}"
                    values[field.attname] = None
        return values

    def duplicate_of(self, obj):
        """A row repeating ``obj`` wherever the model allows it: one field per unique set made fresh.
        Raises ``Unfillable`` when a unique set holds only relations that cannot be NULL."""
        fields = {f.name: f for f in writable_fields(self.model)}
        values = {f.attname: getattr(obj, f.attname) for f in fields.values()}
        for names in uniqueness_sets(self.model):
            settable = [fields[n] for n in names if n in fields]
            if len(settable) < len(names):
                continue  # the auto primary key is in it: the new row gets its own
            plain = [f for f in settable if not f.is_relation] or [f for f in settable if f.null]
            if not plain:
                raise Unfillable(f"{', '.join(names)}: unique together and all required relations, no duplicate row can differ")
            field = plain[0]
            try:
                values[field.attname] = None if field.is_relation else fresh_value(field, self.model, self.tops)
            except Unfillable as exc:
                raise Unfillable(f"{field.name}: {exc}") from None
        return values


def _columns_to_fields(model, detail):
    """``Key (a, b)=(...) already exists.`` -> "a, b" as the model's field names (the columns when unknown)."""
    match = re.match(r"Key \((.*?)\)=", detail or "")
    if not match:
        return None
    by_column = {f.column: f.name for f in model._meta.concrete_fields}
    return ", ".join(by_column.get(column.strip().strip('"'), column.strip()) for column in match.group(1).split(","))


def _insert(model, values):
    instance = model(**values)
    instance.save(force_insert=True)
    return instance


def boundary_rows(model, builder, checks):
    """Every boundary value of every field, one row each, all rolled back.

    One multi-row INSERT first: when it passes, so does every row; only when it fails is
    each row tried alone, to name the field and the value class that broke.
    """
    rows = []
    for field in writable_fields(model):
        for value_class, value in boundary_values(field):
            entry = {"op": "insert", "field": field.name, "value": value_class}
            try:
                rows.append((entry, builder.values(override=(field, value))))
            except Unfillable as exc:
                checks.append(dict(entry, ok=True, unchecked=str(exc)))
    if not rows:
        return
    if _step([], {}, lambda: model._default_manager.bulk_create([model(**v) for _, v in rows]), keep=False) is None:
        checks.extend(dict(entry, ok=True) for entry, _ in rows)
        return
    for entry, values in rows:
        _step(checks, entry, lambda v=values: _insert(model, v), keep=False)


def read_checks(model, checks):
    """Select, filter on every field (a typed comparison too), select_related."""
    manager = model._default_manager
    attnames = [f.attname for f in model._meta.concrete_fields]
    _step(checks, {"op": "select"}, lambda: list(manager.order_by().values(*attnames)[:5]))
    for field in model._meta.concrete_fields:
        _step(checks, {"op": "filter", "field": field.name}, lambda f=field: manager.filter(**{f"{f.attname}__isnull": False}).order_by().exists())
        # A typed comparison, as an old release's queries would send it (catches type changes).
        if not field.is_relation and not isinstance(field, (models.AutoField, models.BinaryField, models.JSONField)):
            entry = {"op": "filter_value", "field": field.name}
            try:
                value = fresh_value(field)
            except Unfillable as exc:
                checks.append(dict(entry, ok=True, unchecked=f"{field.name}: {exc}"))
                continue
            _step(checks, entry, lambda f=field, v=value: manager.filter(**{f.attname: v}).order_by().exists())
    relations = [f.name for f in model._meta.concrete_fields if f.is_relation]
    if relations:
        _step(checks, {"op": "select_related"}, lambda: list(manager.select_related(*relations).order_by()[:5]))


def exercise_model(model, created, timing, reads=True):
    """Reads (unless not ``reads``), then insert (fresh and boundary values, a duplicate) and update:
    the checks, in order.

    The inserted fresh row stays (for models pointing at this one) until the caller rolls back.
    """
    checks = []
    manager = model._default_manager
    if reads:
        read_checks(model, checks)
    builder = RowBuilder(model, created)

    started = time.monotonic()
    boundary_rows(model, builder, checks)
    timing["boundaries_s"] += time.monotonic() - started

    # A released savepoint keeps the row, for update/delete and for models pointing at this
    # one; the outer transaction rolls everything back at the end.
    holder = {}
    entry = {"op": "insert", "value": "fresh"}
    try:
        values = builder.values()
    except Unfillable as exc:
        checks.append(dict(entry, ok=True, unchecked=str(exc)))
    else:
        _step(checks, entry, lambda: holder.update(obj=_insert(model, values)))
    obj = holder.get("obj")
    if obj is not None:
        created[model._meta.label] = obj
        started = time.monotonic()
        entry = {"op": "insert", "value": "duplicate"}
        try:
            duplicate = builder.duplicate_of(obj)
        except Unfillable as exc:
            checks.append(dict(entry, ok=True, unchecked=str(exc)))
        else:
            error = _step(checks, entry, lambda: _insert(model, duplicate), keep=False)
            if error is not None:
                entry["field"] = _columns_to_fields(model, database_error(error)["detail"])
        timing["boundaries_s"] += time.monotonic() - started
        updatable = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields if not f.primary_key}
        _step(checks, {"op": "update"}, lambda: manager.filter(pk=obj.pk).update(**updatable))
    checks += [{"op": "fill", "field": name, "ok": True, "unchecked": why} for name, why in sorted(builder.unchecked.items())]
    return checks


def ordered_models(all_models):
    """Models whose foreign keys point at others come after those others (so inserts can refer to them)."""
    ordered, pending = [], list(all_models)
    while pending:
        progressed = False
        for model in list(pending):
            deps = {f.related_model for f in model._meta.concrete_fields if f.is_relation and f.related_model in pending and f.related_model is not model}
            if not deps:
                ordered.append(model)
                pending.remove(model)
                progressed = True
        if not progressed:
            ordered.extend(pending)
            break
    return ordered


def cmd_exercise(arg):
    """SPEC {"state": "current" | "applied" | {"app": "name"}, "apps": [...], "reads": true}: this code's
    models, the historical models at what the database has applied (the release serving now), or at
    given migrations; without reads only the writes (what boundary values are judged against)."""
    spec = json.loads(arg)
    state = spec.get("state", "current")
    if state == "current":
        from django.apps import apps as registry
    else:
        loader = MigrationLoader(connection)
        leaves = applied_leaves(loader) if state == "applied" else state
        registry = loader.project_state(nodes=[(app, name) for app, name in leaves.items() if name], at_end=True).apps
    wanted = set(spec.get("apps") or [])
    chosen = [m for m in registry.get_models() if not wanted or m._meta.app_label in wanted]
    results = []
    timing = {"boundaries_s": 0.0}
    try:
        with transaction.atomic():
            created = {}
            for model in ordered_models(chosen):
                if model._meta.proxy or not model._meta.managed:
                    continue
                checks = exercise_model(model, created, timing, reads=spec.get("reads", True))
                results.append({"model": model._meta.label, "table": model._meta.db_table, "checks": checks})
            for model in reversed(ordered_models(chosen)):
                obj = created.get(model._meta.label)
                if obj is not None:
                    entry = next(r for r in results if r["model"] == model._meta.label)
                    _step(entry["checks"], {"op": "delete"}, lambda o=obj: o.delete())
            raise _Rollback
    except _Rollback:
        pass
    return {"models": results, "boundaries_s": round(timing["boundaries_s"], 4)}, 0


def cmd_safe_migrations(arg):
    """The plan rewritten so renames change only Django's state, never the database (for review).

    RenameField -> keep the column with db_column; RenameModel -> keep the table with db_table;
    both inside SeparateDatabaseAndState, so the old release keeps working on the schema.
    """
    from django.db import migrations as m
    from django.db.migrations.writer import MigrationWriter

    loader = MigrationLoader(connection)
    written = {}
    # The labels come from the host's plan: the copy may already be migrated by now.
    for label in json.loads(arg):
        migration = loader.graph.nodes[tuple(label.split(".", 1))]
        state = loader.project_state((migration.app_label, migration.name), at_end=False)
        changed = False
        operations = []
        for op in migration.operations:
            if isinstance(op, m.RenameField):
                field = state.models[migration.app_label, op.model_name_lower].fields[op.old_name].clone()
                field.db_column = field.db_column or (f"{op.old_name}_id" if field.is_relation else op.old_name)
                operations.append(m.SeparateDatabaseAndState(state_operations=[
                    m.AlterField(model_name=op.model_name, name=op.old_name, field=field), op]))
                changed = True
            elif isinstance(op, m.RenameModel):
                model_state = state.models[migration.app_label, op.old_name_lower]
                table = model_state.options.get("db_table") or f"{migration.app_label}_{op.old_name_lower}"
                operations.append(m.SeparateDatabaseAndState(state_operations=[
                    m.AlterModelTable(name=op.old_name, table=table), op]))
                changed = True
            else:
                operations.append(op)
        if not changed:
            continue
        safe = type("Migration", (m.Migration,), {"operations": operations, "dependencies": migration.dependencies})(
            migration.name, migration.app_label
        )
        written[f"{migration.app_label}/migrations/{migration.name}.py"] = MigrationWriter(safe).as_string()
    return {"files": written}, 0


def cmd_batch(arg):
    """Several commands in one process (Django starts once): [[command, argument], ...] -> their results."""
    results, seconds, worst = [], [], 0
    for command, argument in json.loads(arg):
        started = time.monotonic()
        result, code = COMMANDS[command](json.dumps(argument) if argument is not None else "")
        seconds.append(round(time.monotonic() - started, 3))
        results.append(result)
        worst = max(worst, code)
    return {"results": results, "seconds": seconds}, worst


COMMANDS = {
    "plan": cmd_plan,
    "migrate": cmd_migrate,
    "migrate-to": cmd_migrate_to,
    "exercise": cmd_exercise,
    "safe-migrations": cmd_safe_migrations,
    "batch": cmd_batch,
}

if __name__ == "__main__":
    command = sys.argv[1]
    argument = sys.argv[2] if len(sys.argv) > 2 else ""
    try:
        result, code = COMMANDS[command](argument)
    except Exception as exc:  # noqa: BLE001 - e.g. the database went away under us: say so in one line
        result, code = {"fatal": one_line(exc)}, 1
    emit(result)
    sys.exit(code)
