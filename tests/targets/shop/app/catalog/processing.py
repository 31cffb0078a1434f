"""The work queue is the Thing table itself: a Thing is pending until the worker stamps processed_at."""

from django.db import transaction
from django.utils import timezone

from catalog.models import Thing


def process_batch(limit: int) -> int:
    """Mark up to ``limit`` pending Things processed, oldest first; returns how many were marked.

    SKIP LOCKED lets several workers share the queue without taking the same row twice.
    Raises django.db.DatabaseError when the database fails.
    """
    with transaction.atomic():
        pending = Thing.objects.pending().select_for_update(skip_locked=True).order_by("id")
        ids = list(pending.values_list("id", flat=True)[:limit])
        return Thing.objects.filter(id__in=ids).update(processed_at=timezone.now())
