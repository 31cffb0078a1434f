"""deploygate's probe, run inside the candidate image against a database copy.

Usage: python django_probe.py <command> [json-argument]
  plan                 the migrations this code would apply, what each does, and production's leaves
                       (see deploygate_plan.py)
  migrate              apply them with Django's own `migrate`, recording time and table locks per migration
  migrate-to TARGETS   migrate to {"app": "name" | null} (used to reverse the plan)
  safe-migrations LABELS  the given migrations with renames made state-only (db_column / db_table kept), as files
  batch STEPS          [[command, argument], ...] in one process (Django set up once)
  exercise SPEC        run select / filter / insert / update / delete for models, all rolled back; inserts
                       write seeded values (the same in every run), then each field's boundary values and a
                       duplicate row; SPEC {"state": "current"} (this code's models), {"state": "applied"}
                       (the historical models at what the database has applied: the release serving it) or
                       {"state": {"app": "name"}} (at those migrations), "scope": {"tables": [...], "apps":
                       [...]} (only the models the plan changes and those reaching them; null: all),
                       "reads": false (only the writes). See deploygate_exercise.py.
  cache-write SPEC     cache instances of the models in scope through the app's CACHES, pickled as the app
                       would; cache-read SPEC reads keys back and compares them with this code's models
                       (see deploygate_cache.py)
  replay SPEC          production's recorded requests sent to the app's WSGI application in process, one at a
                       time; answers appended to a file (see deploygate_replay.py)

Standalone on purpose: it runs in whatever Python and Django the target ships, so it
imports nothing but the standard library, Django and its sibling ``deploygate_*`` modules
(plan, exercise, values, table_writes, cache, replay, common). It prints one line "DEPLOYGATE_RESULT <json>" for
deploygate to read; everything else is Django's own output.
"""

import json
import os
import re
import sys
import time

sys.path.insert(0, os.getcwd())  # the image's WORKDIR holds manage.py and the project

import django

django.setup()

# The probe's own modules sit beside it (its directory is sys.path's second entry).
from deploygate_cache import cmd_cache_read, cmd_cache_write  # noqa: E402
from deploygate_common import applied_leaves, connection, database_error, one_line  # noqa: E402
from deploygate_exercise import cmd_exercise  # noqa: E402
from deploygate_migrate_writes import InsertTracker  # noqa: E402
from deploygate_plan import cmd_plan  # noqa: E402
from deploygate_replay import cmd_replay  # noqa: E402
from deploygate_table_writes import counters, writes  # noqa: E402
from django.apps import apps as django_apps  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.commands import migrate as migrate_command  # noqa: E402
from django.core.management.sql import emit_pre_migrate_signal  # noqa: E402
from django.db import transaction  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.db.migrations.loader import MigrationLoader  # noqa: E402

MARKER = "DEPLOYGATE_RESULT "
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
LOCK_STRENGTH = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
]


def emit(result):
    # A newline first: Django's migrate may have left its "Applying ..." line unfinished.
    print("\n" + MARKER + json.dumps(result, default=str), flush=True)


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
            "app": migration.app_label,
            "name": migration.name,
            "direction": direction,
            "started": time.monotonic(),
            "statements": 0,
            "first_seen": {},
            "failure": None,
        }

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
    from django.contrib.contenttypes.management import RenameContentType

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
    counted = counters(connection)
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
        "table_writes": writes(counted, counters(connection)),
    }, (1 if error else 0)


def cmd_migrate_to(arg):
    """Migrate to the given targets, with the pre_migrate signal Django's `migrate` sends first: through it
    contenttypes renames a model's ContentType back when a RenameModel is unapplied."""
    targets = [(app, name) for app, name in json.loads(arg).items()]
    recorder = LockRecorder()
    _recording(recorder)
    error = None
    counted = counters(connection)
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
    done = {"migrations": recorder.finalize(), "error": error, "failure": recorder.failure()}
    return {**done, "table_writes": writes(counted, counters(connection))}, (1 if error else 0)


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
                operations.append(
                    m.SeparateDatabaseAndState(state_operations=[m.AlterField(model_name=op.model_name, name=op.old_name, field=field), op])
                )
                changed = True
            elif isinstance(op, m.RenameModel):
                model_state = state.models[migration.app_label, op.old_name_lower]
                table = model_state.options.get("db_table") or f"{migration.app_label}_{op.old_name_lower}"
                operations.append(m.SeparateDatabaseAndState(state_operations=[m.AlterModelTable(name=op.old_name, table=table), op]))
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
    "cache-write": cmd_cache_write,
    "cache-read": cmd_cache_read,
    "replay": cmd_replay,
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
