"""The probe's ``plan``: the migrations a release would apply, what each does, and where the database stands.

Run by ``django_probe.py plan`` inside the release's image (stdlib and Django only, imported
after ``django.setup()``). Besides each migration's SQL it reports what the SQL does not
show: the field each operation alters (before and after, for the advice), the tables of
models a state-only operation changes, and the tables of models changed without a
migration (both in the ORM exercises' scope).
"""

from deploygate_common import applied_leaves, connection, one_line
from django.apps import apps as django_apps
from django.db import migrations, models
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

FIELD_CHANGES = (migrations.AddField, migrations.AlterField, migrations.RemoveField)


def describe(operation):
    try:
        return operation.describe()
    except Exception:  # noqa: BLE001 - a third-party operation may not describe itself
        return type(operation).__name__


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
        # Per operation, as the migration's own "reversible" is only all of them: the advice names the one lacking it.
        change = {"type": type(op).__name__, "reversible": bool(op.reversible)}
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


def _table_of(state, app_label, model_name):
    model_state = state.models.get((app_label, model_name))
    if model_state is None:
        return None
    return model_state.options.get("db_table") or f"{app_label}_{model_name}"


def state_only_tables(migration, state):
    """The tables (before and after) of the models whose Django state a SeparateDatabaseAndState changes:
    its SQL does not say what the models now expect of the database, so they are in the exercise's scope.
    ``state`` (the project state before the migration) is consumed."""
    tables = set()
    for op in migration.operations:
        before = state.clone()
        try:
            op.state_forwards(migration.app_label, state)
        except Exception:  # noqa: BLE001 - a third-party operation: its SQL is all we know
            continue
        if not isinstance(op, migrations.SeparateDatabaseAndState):
            continue
        for inner in op.state_operations:
            for name in {
                getattr(inner, "model_name_lower", None),
                getattr(inner, "name_lower", None),
                getattr(inner, "old_name_lower", None),
                getattr(inner, "new_name_lower", None),
            } - {None}:
                tables |= {_table_of(before, migration.app_label, name), _table_of(state, migration.app_label, name)}
    return sorted(tables - {None})


def unmigrated_tables():
    """The tables of models whose definition differs from what the migrations build (a change that got
    no migration): what makemigrations would write. These models are in the exercise's scope too."""
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.state import ProjectState

    try:
        loader = MigrationLoader(None, ignore_no_migrations=True)
        changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(django_apps)).changes(graph=loader.graph)
    except Exception:  # noqa: BLE001 - a project the autodetector cannot read: the plan's SQL is all we know
        return []
    tables = set()
    for app_label, found in changes.items():
        for migration in found:
            for op in migration.operations:
                name = getattr(op, "model_name", None) or getattr(op, "name", None)
                try:
                    tables.add(django_apps.get_model(app_label, name)._meta.db_table)
                except (LookupError, TypeError, ValueError):  # a deleted model: no table the code uses
                    continue
    return sorted(tables)


def app_tables(app_label):
    """The tables of an app's models as this release defines them, many-to-many tables included: what
    a data migration of that app (RunPython) is expected to write, hashed row by row by the host."""
    try:
        config = django_apps.get_app_config(app_label)
    except LookupError:
        return []
    return sorted({model._meta.db_table for model in config.get_models(include_auto_created=True) if not model._meta.proxy})


def cmd_plan(_arg):
    executor = MigrationExecutor(connection)
    loader = executor.loader
    plan = executor.migration_plan(loader.graph.leaf_nodes())
    steps = []
    for migration, _backwards in plan:
        sql = []
        state = loader.project_state((migration.app_label, migration.name), at_end=False)
        changes = operation_changes(migration, state.clone())
        state_only = state_only_tables(migration, state.clone())
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
                "state_only_tables": state_only,
                "app_tables": app_tables(migration.app_label),
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
        "unmigrated_tables": unmigrated_tables(),
    }, 0
