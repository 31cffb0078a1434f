"""The shop's models, as each release declares them.

The base release has ``Category`` and ``Item``. Every other release is one kind of schema
change, named by ``CASE`` (see ``releases.toml``); the conditions below are the only
differences, and each matches that release's ``0002`` migration (``makemigrations --check``
finds nothing to do for any release but ``ignored_migration``, whose change has none).
"""
from django.contrib.postgres.fields import (
    ArrayField,
    BigIntegerRangeField,
    DateRangeField,
    DateTimeRangeField,
    DecimalRangeField,
    HStoreField,
    IntegerRangeField,
)
from django.db import models

from caseproj.release import CASE
from shop.fields import PointField

if CASE == "rename_model":

    class Section(models.Model):
        """Category renamed: RenameModel renames its table, contenttypes its ContentType."""

        title = models.CharField(max_length=100)

    Category = Section
elif CASE != "drop_table":

    class Category(models.Model):
        title = models.CharField(max_length=100)


if CASE == "add_many_to_many":

    class Tag(models.Model):
        label = models.CharField(max_length=50)


NAME_LENGTH = {"shrink_varchar": 80, "widen_varchar": 120}.get(CASE, 100)
# Choices are the ORM's alone: a migration changing only them runs no SQL.
WITH_CHOICES = CASE == "add_not_null_with_choices_and_noop_data"
CODE_CHOICES = [("SKU-0001", "first"), ("SKU-0002", "second")] if WITH_CHOICES else None
NOTE_CHOICES = [("", "none"), ("fragile", "fragile")] if WITH_CHOICES else None


class Item(models.Model):
    name = models.CharField(max_length=NAME_LENGTH, db_index=CASE == "add_index")
    if CASE == "change_type_int_to_varchar":
        quantity = models.CharField(max_length=20)
    else:
        quantity = models.IntegerField()
    if CASE in ("rename_column", "state_only_rename_without_db_column"):
        sku = models.CharField(max_length=20)
    else:
        code = models.CharField(max_length=20, unique=CASE == "add_unique_constraint", choices=CODE_CHOICES)
    barcode = models.CharField(max_length=32, unique=CASE != "drop_unique_constraint")
    if CASE == "make_not_null_with_python_default":
        price = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    else:
        price = models.DecimalField(max_digits=8, decimal_places=2, null=CASE != "make_not_null_on_null_rows")
    if CASE != "drop_column":
        note = models.TextField(blank=True, default="", null=CASE == "drop_not_null", choices=NOTE_CHOICES)
    if CASE != "drop_table":
        category = models.ForeignKey(Category, null=True, on_delete=models.SET_NULL)
    if CASE in ("add_nullable_column", "ignored_migration", "data_migration_beyond_its_sql"):
        colour = models.CharField(max_length=30, null=True)
    elif CASE == "add_not_null_with_db_default":
        unit = models.CharField(max_length=10, db_default="pcs")
    elif CASE in ("add_not_null_without_db_default", "add_not_null_with_choices_and_noop_data"):
        unit = models.CharField(max_length=10, default="pcs")
    elif CASE == "add_many_to_many":
        tags = models.ManyToManyField(Tag, blank=True)

    class Meta:
        if CASE == "rename_table":
            db_table = "shop_article"
        if CASE == "add_unique_together":
            unique_together = [("name", "category")]


if CASE == "all_field_types":

    class Specimen(models.Model):
        """One field of every built-in type (django.contrib.postgres included) and one the probe cannot fill."""

        big = models.BigIntegerField()
        small = models.SmallIntegerField()
        positive = models.PositiveIntegerField()
        positive_small = models.PositiveSmallIntegerField()
        positive_big = models.PositiveBigIntegerField()
        flag = models.BooleanField()
        maybe = models.BooleanField(null=True)
        ratio = models.FloatField()
        amount = models.DecimalField(max_digits=5, decimal_places=2)
        day = models.DateField()
        moment = models.DateTimeField()
        clock = models.TimeField()
        span = models.DurationField()
        blob = models.BinaryField()
        email = models.EmailField()
        website = models.URLField()
        slug = models.SlugField()
        ip = models.GenericIPAddressField()
        ipv4 = models.GenericIPAddressField(protocol="IPv4")
        token = models.UUIDField(unique=True)
        data = models.JSONField()
        document = models.FileField()
        picture = models.ImageField()
        path = models.FilePathField(path="/tmp")
        kind = models.CharField(max_length=10, choices=[("a", "A"), ("b", "B")])
        level = models.IntegerField(choices=[(1, "low"), (2, "high")])
        words = ArrayField(models.CharField(max_length=20))
        attributes = HStoreField()
        ints = IntegerRangeField()
        bigints = BigIntegerRangeField()
        decimals = DecimalRangeField()
        days = DateRangeField()
        moments = DateTimeRangeField()
        category = models.OneToOneField(Category, null=True, on_delete=models.SET_NULL)
        location = PointField(null=True)
        created = models.DateTimeField(auto_now_add=True)
