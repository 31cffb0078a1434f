"""The shop's models, as each release declares them.

The base release has ``Category`` and ``Item``. Every other release is one kind of schema
change, named by ``CASE`` (see ``releases.toml``); the conditions below are the only
differences, and each matches that release's ``0002`` migration (``makemigrations --check``
finds nothing to do for any release).
"""
from django.db import models

from caseproj.release import CASE


class Category(models.Model):
    title = models.CharField(max_length=100)


if CASE == "add_many_to_many":

    class Tag(models.Model):
        label = models.CharField(max_length=50)


class Item(models.Model):
    name = models.CharField(max_length=100, db_index=CASE == "add_index")
    if CASE == "change_type_int_to_varchar":
        quantity = models.CharField(max_length=20)
    else:
        quantity = models.IntegerField()
    if CASE in ("rename_column", "state_only_rename_without_db_column"):
        sku = models.CharField(max_length=20)
    else:
        code = models.CharField(max_length=20, unique=CASE == "add_unique_constraint")
    if CASE != "drop_column":
        note = models.TextField(blank=True, default="", null=CASE == "drop_not_null")
    category = models.ForeignKey(Category, null=True, on_delete=models.SET_NULL)
    if CASE == "add_nullable_column":
        colour = models.CharField(max_length=30, null=True)
    elif CASE == "add_not_null_with_db_default":
        unit = models.CharField(max_length=10, db_default="pcs")
    elif CASE == "add_not_null_without_db_default":
        unit = models.CharField(max_length=10, default="pcs")
    elif CASE == "add_many_to_many":
        tags = models.ManyToManyField(Tag, blank=True)

    class Meta:
        if CASE == "rename_table":
            db_table = "shop_article"
