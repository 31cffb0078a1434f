"""An order's creation is audited once: the audit log refuses a second row for the same order."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from ops.models import AuditLog
from sales.models import Order


@receiver(post_save, sender=Order)
def audit_new_order(sender, instance: Order, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        AuditLog.objects.create(action="order.created", object_ref=f"sales.order:{instance.pk}", data={"total": str(instance.total)})
