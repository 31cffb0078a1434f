"""The probe's ``cache-write`` and ``cache-read``: one release caches model instances, the other reads them.

Run by ``django_probe.py`` inside a release's image, with the app's own ``CACHES`` pointed at
a scratch Redis (stdlib and Django only, imported after ``django.setup()``). The writer
caches instances of the models in scope as the app would: whole, pickled by the cache
framework, their forward relations loaded with them (``select_related``). The reader gets
each key through its own ``CACHES`` (its own KEY_PREFIX and VERSION): a miss means the two
releases' keys differ; a hit is unpickled by the reader's code and compared with its models.
"""

import json

from deploygate_common import one_line
from deploygate_exercise import in_scope
from django.apps import apps as django_apps
from django.core.cache import caches
from django.db import transaction

# Instances cached per model: the first rows by primary key, enough to carry every field's value kind.
PER_MODEL = 3
# What the entries live: longer than the gate takes, shorter than anything that outlives the scratch cache.
TIMEOUT_S = 600


def _instances(model):
    """Up to ``PER_MODEL`` rows of ``model`` as the app's code loads them: with their forward relations (a detail
    page's ``select_related``) and, where it has any, without (a list's); unsaved instances with the fields'
    defaults when this release cannot read the table (its schema is not this copy's): what it would cache
    still has its class and fields. Returns ``(suffix, instance)`` pairs, whether they came from the table, and
    why not."""
    related = [f.name for f in model._meta.concrete_fields if f.is_relation and f.many_to_one]
    rows = model._default_manager.order_by("pk")
    try:
        with transaction.atomic():
            found = [(f"{n}", i) for n, i in enumerate(rows.select_related(*related)[:PER_MODEL])]
            if related:
                found += [(f"{n}:plain", i) for n, i in enumerate(rows[:PER_MODEL])]
        return found, True, None
    except Exception as exc:  # noqa: BLE001 - the other schema: any database error
        return [("0", model())], False, one_line(exc)


def _shape(instance):
    """The field attributes an instance carries, and those of each related instance cached with it."""
    fields = sorted(name for name in vars(instance) if not name.startswith("_"))
    related = {name: _shape(value) for name, value in instance._state.fields_cache.items() if value is not None}
    return {"label": instance._meta.label, "fields": fields, "related": related}


def cmd_cache_write(arg):
    """SPEC {"alias": "default", "key_prefix": "...", "scope": {...} | null}: cache the instances of every model
    in scope under ``<key_prefix>:<model label>:<n>`` and report each key, what it holds, and the key as made."""
    spec = json.loads(arg or "{}")
    cache = caches[spec.get("alias") or "default"]
    prefix = spec["key_prefix"]
    written, unread = [], {}
    for model in in_scope(list(django_apps.get_models()), spec.get("scope")):
        instances, from_db, error = _instances(model)
        if error:
            unread[model._meta.label] = error
        for suffix, instance in instances:
            key = f"{prefix}:{model._meta.label}:{suffix}"
            cache.set(key, instance, TIMEOUT_S)
            written.append({"key": key, "pk": instance.pk, "from_db": from_db, "shape": _shape(instance)})
    return {"made_key": cache.make_key(prefix), "written": written, "unread": unread}, 0


def _differences(instance, depth=0):
    """How an unpickled instance differs from this release's model: fields it lacks, attributes no field has."""
    expected = {f.attname for f in instance._meta.concrete_fields}
    carried = {name for name in vars(instance) if not name.startswith("_")}
    found = []
    missing, stale = sorted(expected - carried), sorted(carried - expected)
    if missing:
        found.append(f"{instance._meta.label} lacks {', '.join(missing)}")
    if stale:
        found.append(f"{instance._meta.label} carries {', '.join(stale)}, which no field of it has")
    if depth < 2:
        for value in instance._state.fields_cache.values():
            if value is not None:
                found += _differences(value, depth + 1)
    return found


def cmd_cache_read(arg):
    """SPEC {"alias": "default", "key_prefix": "...", "keys": [...]}: read each key through this release's cache
    and say per key: missed, read (with how it differs from this release's models), or the error reading it."""
    spec = json.loads(arg or "{}")
    cache = caches[spec.get("alias") or "default"]
    read = []
    for key in spec["keys"]:
        try:
            value = cache.get(key)
        except Exception as exc:  # noqa: BLE001 - unpickling another release's class: any exception
            read.append({"key": key, "outcome": "error", "error": one_line(exc)})
            continue
        if value is None:
            read.append({"key": key, "outcome": "missed"})
            continue
        if not hasattr(value, "_meta"):
            read.append({"key": key, "outcome": "read", "differences": [f"a {type(value).__name__}, not a model instance"]})
            continue
        read.append({"key": key, "outcome": "read", "label": value._meta.label, "differences": _differences(value)})
    return {"made_key": cache.make_key(spec["key_prefix"]), "read": read}, 0
