"""deploygate's probe, run inside the candidate image against a database copy.

Usage: python django_probe.py <command> [json-argument]
  plan                 the migrations this code would apply, what each does, and production's leaves
  migrate              apply them with Django's own `migrate`, recording time and table locks per migration
  migrate-to TARGETS   migrate to {"app": "name" | null} (used to reverse the plan)
  safe-migrations LABELS  the given migrations with renames made state-only (db_column / db_table kept), as files
  batch STEPS          [[command, argument], ...] in one process (Django set up once)
  exercise SPEC        run select / filter / insert / update / delete for models, all rolled back;
                       SPEC {"state": "current"} (this code's models) or {"state": {"app": "name"}}
                       (the historical models at those migrations, i.e. another release's view), "apps": [...]

Standalone on purpose: it runs in whatever Python and Django the target ships, so it
imports nothing but the standard library and Django. It prints one line
"DEPLOYGATE_RESULT <json>" for deploygate to read; everything else is Django's own output.
"""

import datetime
import decimal
import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.getcwd())  # the image's WORKDIR holds manage.py and the project

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.db.migrations.loader import MigrationLoader  # noqa: E402

MARKER = "DEPLOYGATE_RESULT "
connection = connections[DEFAULT_DB_ALIAS]
LOCKS_SQL = """
SELECT c.oid::regclass::text, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND c.relkind IN ('r', 'p')
  AND c.relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))
"""
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


def cmd_plan(_arg):
    executor = MigrationExecutor(connection)
    loader = executor.loader
    plan = executor.migration_plan(loader.graph.leaf_nodes())
    steps = []
    for migration, backwards in plan:
        sql = []
        try:
            with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
                state = loader.project_state((migration.app_label, migration.name), at_end=False)
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
            }
        )
    unknown = sorted(f"{app}.{name}" for app, name in loader.applied_migrations if (app, name) not in loader.graph.nodes)
    return {
        "plan": steps,
        "applied_leaves": applied_leaves(loader),
        "leaves": dict(loader.graph.leaf_nodes()),
        "unknown_applied": unknown,
        "applied": sorted(f"{app}.{name}" for app, name in loader.applied_migrations),
    }, 0


class LockRecorder:
    """Django execute wrapper: after each statement, the table locks this connection holds."""

    def __init__(self):
        self.current = None
        self.migrations = []

    def begin(self, migration, direction):
        self.current = {
            "app": migration.app_label, "name": migration.name, "direction": direction,
            "started": time.monotonic(), "statements": 0, "first_seen": {},
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

    def __call__(self, execute, sql, params, many, context):
        started = time.monotonic()
        try:
            return execute(sql, params, many, context)
        finally:
            if self.current is not None:
                self.current["statements"] += 1
                try:
                    with context["connection"].connection.cursor() as cursor:
                        cursor.execute(LOCKS_SQL)
                        for table, mode in cursor.fetchall():
                            self.current["first_seen"].setdefault((table, mode), started)
                except Exception:  # noqa: BLE001 - an aborted transaction cannot be asked; the error is reported anyway
                    pass


_ORIGINAL_APPLY = MigrationExecutor.apply_migration
_ORIGINAL_UNAPPLY = MigrationExecutor.unapply_migration


def _recording(recorder):
    """Wrap Django's executor so every applied/unapplied migration is timed (commit included)."""
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
            else:
                call_command("migrate", interactive=False, verbosity=1)
        except Exception as exc:  # noqa: BLE001 - reported to the host, which fails the gate
            error = one_line(exc)
    migrations = recorder.finalize(committed_at=time.monotonic() if whole_plan else None)
    return {"migrations": migrations, "error": error, "atomic_plan": whole_plan}, (1 if error else 0)


def cmd_migrate_to(arg):
    targets = [(app, name) for app, name in json.loads(arg).items()]
    recorder = LockRecorder()
    _recording(recorder)
    error = None
    with connection.execute_wrapper(recorder):
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(targets)
            executor.migrate(targets, plan=plan)
        except Exception as exc:  # noqa: BLE001 - IrreversibleError among others: reported, not raised
            error = one_line(exc)
    return {"migrations": recorder.finalize(), "error": error}, (1 if error else 0)


# --- exercising models the way an ORM user would ---------------------------------------------


def sample_value(field):
    """A value the field accepts, unique where it must be."""
    token = uuid.uuid4().hex
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, models.EmailField):
        return f"dg-{token[:12]}@example.invalid"[: field.max_length or 254]
    if isinstance(field, (models.CharField, models.SlugField)):
        if field.choices:
            return field.choices[0][0]
        return f"dg{token}"[: field.max_length or 32]
    if isinstance(field, models.TextField):
        return f"dg{token}"
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(field, (models.AutoField, models.BigAutoField, models.SmallAutoField)):
        return None
    if isinstance(field, models.IntegerField):
        if field.choices:
            return field.choices[0][0]
        return int(token[:6], 16) % 30000 + 1 if field.unique else 1
    if isinstance(field, models.FloatField):
        return 1.0
    if isinstance(field, models.DecimalField):
        return decimal.Decimal(0)
    if isinstance(field, models.DateTimeField):
        return datetime.datetime.now(datetime.timezone.utc)
    if isinstance(field, models.DateField):
        return datetime.date.today()
    if isinstance(field, models.TimeField):
        return datetime.time(0, 0)
    if isinstance(field, models.DurationField):
        return datetime.timedelta(0)
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.BinaryField):
        return b""
    return f"dg{token}"[:16]


class _Rollback(Exception):
    pass


def _step(checks, op, func, field=None):
    """Run one ORM operation in a savepoint; record ok or the database's message."""
    entry = {"op": op}
    if field:
        entry["field"] = field
    try:
        with transaction.atomic():
            func()
        entry["ok"] = True
    except Exception as exc:  # noqa: BLE001 - any error is an incompatibility to report
        entry["ok"] = False
        entry["error"] = one_line(exc)
    checks.append(entry)
    return entry["ok"]


def build_instance(model, created):
    values = {}
    for field in model._meta.concrete_fields:
        if field.primary_key and field.auto_created or isinstance(field, models.AutoField):
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            continue
        if field.is_relation:
            target = created.get(field.related_model._meta.label) if field.related_model else None
            if target is None and field.related_model is not None:
                target = field.related_model._default_manager.order_by().first()
            if target is None and not field.null:
                raise RuntimeError(f"no row of {field.related_model._meta.label} to point {field.name} at")
            values[field.attname] = target.pk if target is not None else None
            continue
        if field.has_default():
            continue
        if field.null:
            values[field.attname] = None
            continue
        values[field.attname] = sample_value(field)
    return model(**values)


def exercise_model(model, created):
    checks = []
    manager = model._default_manager
    attnames = [f.attname for f in model._meta.concrete_fields]
    _step(checks, "select", lambda: list(manager.order_by().values(*attnames)[:5]))
    for field in model._meta.concrete_fields:
        _step(checks, "filter", lambda f=field: manager.filter(**{f"{f.attname}__isnull": False}).order_by().exists(), field.name)
        # A typed comparison, as an old release's queries would send it (catches type changes).
        if not field.is_relation and not isinstance(field, (models.AutoField, models.BinaryField, models.JSONField)):
            _step(checks, "filter_value", lambda f=field: manager.filter(**{f.attname: sample_value(f)}).order_by().exists(), field.name)
    relations = [f.name for f in model._meta.concrete_fields if f.is_relation]
    if relations:
        _step(checks, "select_related", lambda: list(manager.select_related(*relations).order_by()[:5]))
    holder = {}

    def insert():
        instance = build_instance(model, created)
        instance.save(force_insert=True)
        holder["obj"] = instance

    # A released savepoint keeps the row, for update/delete and for models pointing at this
    # one; the outer transaction rolls everything back at the end.
    _step(checks, "insert", insert)
    obj = holder.get("obj")
    if obj is not None:
        created[model._meta.label] = obj
        updatable = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields if not f.primary_key}
        _step(checks, "update", lambda: manager.filter(pk=obj.pk).update(**updatable))
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
    spec = json.loads(arg)
    if spec.get("state", "current") == "current":
        from django.apps import apps as registry
    else:
        loader = MigrationLoader(connection)
        nodes = [(app, name) for app, name in spec["state"].items() if name]
        registry = loader.project_state(nodes=nodes, at_end=True).apps
    wanted = set(spec.get("apps") or [])
    chosen = [m for m in registry.get_models() if not wanted or m._meta.app_label in wanted]
    results = []
    try:
        with transaction.atomic():
            created = {}
            for model in ordered_models(chosen):
                if model._meta.proxy or not model._meta.managed:
                    continue
                results.append({"model": model._meta.label, "table": model._meta.db_table, "checks": exercise_model(model, created)})
            for model in reversed(ordered_models(chosen)):
                obj = created.get(model._meta.label)
                if obj is not None:
                    entry = next(r for r in results if r["model"] == model._meta.label)
                    _step(entry["checks"], "delete", lambda o=obj: o.delete())
            raise _Rollback
    except _Rollback:
        pass
    return {"models": results}, 0


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
    result, code = COMMANDS[command](argument)
    emit(result)
    sys.exit(code)
