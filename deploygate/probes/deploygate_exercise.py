"""Exercising a release's models the way an ORM user would: reads, inserts, updates, deletes, all rolled back.

Run by ``django_probe.py exercise``, inside the release's image (stdlib and Django only,
imported after ``django.setup()``). Values come from ``deploygate_values`` (seeded, so
two runs of one release write the same values); the host compares the runs.
"""

import json
import re
import time

from deploygate_common import applied_leaves, connection, database_error, one_line
from deploygate_values import Unfillable, boundary_values, fresh_value, reset_seed
from django.db import DatabaseError, models, transaction
from django.db.migrations.loader import MigrationLoader


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
    except Exception as exc:  # noqa: BLE001 - any error is reported; the host judges it (schema or app code)
        error = exc
        said = database_error(exc)
        entry["error"] = one_line(exc)
        # Where the database refused: the host tells a schema mismatch from the app's own code by these.
        entry.update(sqlstate=said["sqlstate"], table=said["table"], column=said["column"])
    entry["ok"] = error is None
    checks.append(entry)
    return error


def writable_fields(model):
    """The concrete fields an insert sets (not the auto primary key, auto_now dates or generated columns)."""
    return [
        f
        for f in model._meta.concrete_fields
        if not (f.primary_key and f.auto_created or isinstance(f, models.AutoField))
        and not (getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) or getattr(f, "generated", False))
    ]


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
            # By primary key: both runs of a release must point at the same row.
            return model._default_manager.order_by("pk").first()
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
    """Select, filter on every field (a typed comparison too), select_related.

    The filters are planned (EXPLAIN), not run: what breaks a release's filter on the other schema, a
    missing column or operator, a value its type refuses, is raised while the query is parsed and
    planned, whatever the rows; running it would scan the whole table wherever no row matches.
    """
    manager = model._default_manager
    attnames = [f.attname for f in model._meta.concrete_fields]
    _step(checks, {"op": "select"}, lambda: list(manager.order_by().values(*attnames)[:5]))
    for field in model._meta.concrete_fields:
        _step(
            checks,
            {"op": "filter", "field": field.name},
            lambda f=field: manager.filter(**{f"{f.attname}__isnull": False}).order_by().explain(),
        )
        # A typed comparison, as an old release's queries would send it (catches type changes).
        if not field.is_relation and not isinstance(field, (models.AutoField, models.BinaryField, models.JSONField)):
            entry = {"op": "filter_value", "field": field.name}
            try:
                value = fresh_value(field)
            except Unfillable as exc:
                checks.append(dict(entry, ok=True, unchecked=f"{field.name}: {exc}"))
                continue
            _step(checks, entry, lambda f=field, v=value: manager.filter(**{f.attname: v}).order_by().explain())
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
            deps = {
                f.related_model
                for f in model._meta.concrete_fields
                if f.is_relation and f.related_model in pending and f.related_model is not model
            }
            if not deps:
                ordered.append(model)
                pending.remove(model)
                progressed = True
        if not progressed:
            ordered.extend(pending)
            break
    return ordered


def in_scope(all_models, scope):
    """The models ``scope`` names (``{"tables": [...], "apps": [...]}``: their tables, or every model of
    those apps), plus the models whose foreign keys (or many-to-many tables) reach them; None: every model.

    The models reaching a changed one are in because their inserts and select_related join it.
    """
    if scope is None:
        return list(all_models)
    tables, apps = set(scope.get("tables") or ()), set(scope.get("apps") or ())

    def through_table(m2m):
        meta = getattr(m2m.remote_field.through, "_meta", None)  # a lazy "app.Model" string until resolved
        return meta.db_table if meta is not None else None

    changed = {
        m
        for m in all_models
        if m._meta.db_table in tables or m._meta.app_label in apps or any(through_table(f) in tables for f in m._meta.local_many_to_many)
    }
    reaching = {
        m
        for m in all_models
        if any(f.is_relation and f.related_model in changed for f in m._meta.concrete_fields)
        or any(f.related_model in changed for f in m._meta.local_many_to_many)
    }
    return [m for m in all_models if m in changed or m in reaching]


def cmd_exercise(arg):
    """SPEC {"state": "current" | "applied" | {"app": "name"}, "reads": true, "scope": {"tables": [...],
    "apps": [...]} | null, "apps": [...]}: this code's models, the historical models at what the database
    has applied (the release serving now), or at given migrations; only those in scope (see ``in_scope``).
    Returns every model's checks and how many models were left out of scope."""
    spec = json.loads(arg)
    state = spec.get("state", "current")
    if state == "current":
        from django.apps import apps as registry
    else:
        loader = MigrationLoader(connection)
        leaves = applied_leaves(loader) if state == "applied" else state
        registry = loader.project_state(nodes=[(app, name) for app, name in leaves.items() if name], at_end=True).apps
    wanted = set(spec.get("apps") or [])
    every = [m for m in registry.get_models() if (not wanted or m._meta.app_label in wanted) and not m._meta.proxy and m._meta.managed]
    chosen = ordered_models(in_scope(every, spec.get("scope")))
    reset_seed()
    results = []
    timing = {"boundaries_s": 0.0}
    try:
        with transaction.atomic():
            created = {}
            for model in chosen:
                checks = exercise_model(model, created, timing, reads=spec.get("reads", True))
                results.append({"model": model._meta.label, "table": model._meta.db_table, "checks": checks})
            for model in reversed(chosen):
                obj = created.get(model._meta.label)
                if obj is not None:
                    entry = next(r for r in results if r["model"] == model._meta.label)
                    _step(entry["checks"], {"op": "delete"}, lambda o=obj: o.delete())
            raise _Rollback
    except _Rollback:
        pass
    return {"models": results, "out_of_scope": len(every) - len(chosen), "boundaries_s": round(timing["boundaries_s"], 4)}, 0
