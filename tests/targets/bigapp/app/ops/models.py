"""Operations: the audit log, the worker's job queue, notifications, exports, webhooks and dashboards."""

from django.conf import settings
from django.db import models
from django.utils import timezone

# The current layout of a dashboard; older layouts are upgraded on save (see Dashboard.save).
LAYOUT_VERSION = 2


class AuditLog(models.Model):
    action = models.CharField(max_length=50)
    object_ref = models.CharField(max_length=100)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Each action is audited once per object (signals may fire twice on a retried save).
        constraints = [models.UniqueConstraint(fields=["action", "object_ref"], name="ops_auditlog_once")]


class Job(models.Model):
    KINDS = [("reindex", "Reindex"), ("notify", "Notify"), ("export", "Export")]
    STATUSES = [("pending", "Pending"), ("done", "Done"), ("failed", "Failed")]

    kind = models.CharField(max_length=10, choices=KINDS)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=STATUSES, default="pending")
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["id"], condition=models.Q(status="pending"), name="ops_job_pending")]


class Notification(models.Model):
    CHANNELS = [("email", "E-mail"), ("sms", "SMS"), ("push", "Push")]

    member = models.ForeignKey("accounts.Member", on_delete=models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=10, choices=CHANNELS)
    body = models.TextField()
    sent_at = models.DateTimeField(null=True, blank=True)


class ExportJob(models.Model):
    requested_by = models.ForeignKey("accounts.Member", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=20)
    file_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def save(self, *args, **kwargs) -> None:
        # Exports are written under EXPORTS_DIR, which only the web process gets (gunicorn.conf.py).
        if not settings.EXPORTS_DIR:
            raise ValueError("EXPORTS_DIR is not set: exports have nowhere to go")
        if not self.file_name:
            self.file_name = f"{self.kind}-{timezone.now():%Y%m%d-%H%M%S}.csv"
        super().save(*args, **kwargs)


class Webhook(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField()
    secret = models.CharField(max_length=64)
    events = models.JSONField(default=list, blank=True)


def upgrade_layout(layout: dict) -> dict:
    """One version up: version 1 kept its widgets under "blocks" and had no version key."""
    if "blocks" in layout:
        return {"version": 2, "widgets": layout["blocks"]}
    return layout


class Dashboard(models.Model):
    member = models.ForeignKey("accounts.Member", on_delete=models.CASCADE, related_name="dashboards")
    title = models.CharField(max_length=100)
    # {"version": 2, "widgets": [...]}; the app always writes this shape.
    layout = models.JSONField()

    def save(self, *args, **kwargs) -> None:
        if self.layout.get("version", 1) < LAYOUT_VERSION:
            self.layout = upgrade_layout(self.layout)
            return self.save(*args, **kwargs)
        return super().save(*args, **kwargs)
