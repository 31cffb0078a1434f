"""The catalog: suppliers and the things reported to the shop, each processed once by the worker."""

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Supplier(models.Model):
    name = models.CharField(max_length=100, unique=True)
    email = models.EmailField(blank=True)

    def __str__(self) -> str:
        return self.name


class ThingQuerySet(models.QuerySet):
    def pending(self) -> "ThingQuerySet":
        return self.filter(processed_at__isnull=True)


class Thing(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    address = models.GenericIPAddressField(help_text="where the thing was reported from")
    tags = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    data = models.JSONField(default=dict, blank=True)
    supplier = models.ForeignKey(Supplier, null=True, blank=True, on_delete=models.PROTECT, related_name="things")
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = ThingQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # The worker's queue: only the few pending rows are indexed, however large the table grows.
        indexes = [models.Index(fields=["id"], condition=models.Q(processed_at__isnull=True), name="catalog_thing_pending")]

    def __str__(self) -> str:
        return self.name
