"""The values the probe writes: fresh ones a field accepts, and each field's boundary values.

Every value is derived from a seed (the model's label, the field's name and how many
values that field has had so far in this exercise), never from randomness or the clock:
a release run on its own schema and on the other one writes exactly the same values, so
an operation that fails on one side and not on the other failed because of the schema.
Standalone like the probe: stdlib and Django only, imported after ``django.setup()``.
"""

import collections
import datetime
import decimal
import hashlib
import ipaddress
import uuid

from deploygate_common import connection, one_line
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import DatabaseError, models, transaction


class Unfillable(Exception):
    """The probe has no value for a field or a row: reported as unchecked with this reason, never as a failure."""


class Seed:
    """Per field, the n-th value it gets in one exercise: the same n gives the same token in every run."""

    def __init__(self):
        self.counts = collections.Counter()

    def next(self, field):
        """(key, n): the field's key ``app.Model.field`` and how many values it has had, this one included."""
        model = getattr(field, "model", None)
        owner = model._meta.label if model is not None and hasattr(model, "_meta") else type(field).__name__
        key = f"{owner}.{getattr(field, 'name', None) or '?'}"
        self.counts[key] += 1
        return key, self.counts[key]

    def token(self, field):
        """64 hex characters, unique per field and call, identical across runs."""
        key, n = self.next(field)
        return hashlib.sha256(f"{key}#{n}".encode()).hexdigest()

    def serial(self, field):
        """1, 2, 3... per field (steps above a column's maximum, where the field must be unique)."""
        return self.next(field)[1]


SEED = Seed()


def reset_seed():
    """A fresh seed: each exercise starts counting from 1, whatever ran before it in the same process."""
    global SEED
    SEED = Seed()


def instant():
    """The one date and time every run writes (aware when the project uses time zones)."""
    moment = datetime.datetime(2001, 2, 3, 4, 5, 6)
    return moment.replace(tzinfo=datetime.UTC) if settings.USE_TZ else moment


def _padded(prefix, suffix, length, token):
    """A unique string of exactly ``length`` characters: prefix, the seeded token padded with x's, suffix
    (only the padded token when prefix and suffix leave too little room for it)."""
    room = length - len(prefix) - len(suffix)
    token = ("dg" + token).ljust(max(room, length), "x")
    return prefix + token[:room] + suffix if room >= 8 else token[:length]


def _short(field, prefix, suffix):
    """A unique string that fits the field: a 34-character token with prefix and suffix, cut to max_length."""
    natural = 34 + len(prefix) + len(suffix)
    return _padded(prefix, suffix, min(field.max_length or natural, natural), SEED.token(field)[:32])


def _ip(field):
    """An address of the private / documentation ranges: IPv4 when the field takes only that."""
    raw = bytes.fromhex(SEED.token(field))
    if getattr(field, "protocol", "both").lower() == "ipv4":
        return "10." + ".".join(str(b) for b in raw[:3])
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | int.from_bytes(raw[:8], "big")))


def _range(field):
    """A range over the field's base type: numbers, dates or datetimes."""
    base = _kind(field.base_field)
    if base == "IntegerField":
        bounds = (1, 10)
    elif base == "DecimalField":
        bounds = (decimal.Decimal("1.5"), decimal.Decimal("2.5"))
    elif base == "DateTimeField":
        bounds = (instant(), instant() + datetime.timedelta(hours=1))
    elif base == "DateField":
        bounds = (instant().date(), instant().date() + datetime.timedelta(days=1))
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
    "UUIDField": lambda f: uuid.UUID(hex=SEED.token(f)[:32]),
    "GenericIPAddressField": _ip,
    "BooleanField": lambda f: False,
    "IntegerField": lambda f: 1,
    "FloatField": lambda f: 1.0,
    "DecimalField": lambda f: decimal.Decimal(0),
    "DateTimeField": lambda f: instant(),
    "DateField": lambda f: instant().date(),
    "TimeField": lambda f: datetime.time(12, 0),
    "DurationField": lambda f: datetime.timedelta(seconds=1),
    "BinaryField": lambda f: b"dg",
    "JSONField": lambda f: {"dg": SEED.token(f)[:8]},
    "HStoreField": lambda f: {"dg": SEED.token(f)[:8]},
    "ArrayField": lambda f: [fresh_value(f.base_field)],
    "RangeField": _range,
}
# Kinds whose fresh value, where it must be unique, is taken above the column's maximum.
ORDERED = {
    "IntegerField": 1,
    "FloatField": 1.0,
    "DecimalField": decimal.Decimal(1),
    "DateField": datetime.timedelta(days=1),
    "DateTimeField": datetime.timedelta(seconds=1),
}


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
            try:
                with transaction.atomic():  # a savepoint: the exercise's transaction survives a refusal
                    tops[field.name] = model._default_manager.aggregate(top=models.Max(field.name))["top"]
            except DatabaseError as exc:  # e.g. the column is not there on this schema: the reads report that
                raise Unfillable(f"no unused value: its column's maximum cannot be read ({one_line(exc)})") from None
        top = tops[field.name]
        step = ORDERED[kind] * SEED.serial(field)
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
        values.append((f"max_length={field.max_length}", _padded(*AFFIXES[kind], field.max_length, SEED.token(field))))
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
