"""The worker's queue is the Job table: a job is pending until the worker marks it done."""

from django.db import transaction
from django.utils import timezone

from ops.models import Job


def process_batch(limit: int) -> int:
    """Mark up to ``limit`` pending jobs done, oldest first; returns how many.

    SKIP LOCKED lets several workers share the queue. Raises django.db.DatabaseError when the database fails.
    """
    with transaction.atomic():
        ids = list(Job.objects.filter(status="pending").select_for_update(skip_locked=True).order_by("id").values_list("id", flat=True)[:limit])
        return Job.objects.filter(id__in=ids).update(status="done", done_at=timezone.now())
