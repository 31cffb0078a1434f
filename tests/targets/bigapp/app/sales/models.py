"""Selling: customers, their orders and order lines, payments, invoices, coupons and shipments."""

import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models


def default_currency() -> str:
    """A new order's currency: the deployment's DEFAULT_CURRENCY setting."""
    return settings.DEFAULT_CURRENCY


def new_reference() -> str:
    """What a customer quotes on the phone: ORD- and twelve hex digits."""
    return "ORD-" + secrets.token_hex(6).upper()


class Customer(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=120)
    # Business customers buy on their organization's billing account; consumers have none.
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.SET_NULL, related_name="customers"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.email


class Order(models.Model):
    STATUSES = [("open", "Open"), ("paid", "Paid"), ("shipped", "Shipped"), ("cancelled", "Cancelled")]

    reference = models.CharField(max_length=24, unique=True, default=new_reference)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=10, choices=STATUSES, default="open")
    currency = models.CharField(max_length=3, default=default_currency)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    note = models.TextField(blank=True)
    placed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-placed_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(total__gte=0), name="sales_order_total_not_negative")]

    def __str__(self) -> str:
        return self.reference


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    variant = models.ForeignKey("catalog.Variant", on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(quantity__gte=1), name="sales_orderline_quantity_positive")]

    def save(self, *args, **kwargs) -> None:
        # The price is the variant's in the order's currency when the line is written: it must exist.
        self.unit_price = self.variant.prices.get(currency=self.order.currency).amount
        super().save(*args, **kwargs)


class Address(models.Model):
    KINDS = [("billing", "Billing"), ("shipping", "Shipping")]

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="addresses")
    kind = models.CharField(max_length=10, choices=KINDS)
    line1 = models.CharField(max_length=200)
    city = models.CharField(max_length=100)
    country = models.CharField(max_length=2)


class Payment(models.Model):
    METHODS = [("card", "Card"), ("transfer", "Bank transfer"), ("invoice", "On invoice")]

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="payments")
    method = models.CharField(max_length=10, choices=METHODS)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    provider_ref = models.CharField(max_length=64, null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="sales_payment_amount_positive")]


class Invoice(models.Model):
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="invoice")
    number = models.CharField(max_length=20, unique=True)
    issued_on = models.DateField()
    due_on = models.DateField(editable=False)

    def save(self, *args, **kwargs) -> None:
        # Invoices go to business customers only: the terms are their organization's billing account's.
        account = self.order.customer.organization.billing
        self.due_on = self.issued_on + timedelta(days=account.payment_terms_days)
        super().save(*args, **kwargs)


class Coupon(models.Model):
    code = models.CharField(max_length=20, unique=True)
    percent = models.PositiveSmallIntegerField()
    valid_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(percent__gte=1, percent__lte=100), name="sales_coupon_percent_1_to_100")
        ]


class Shipment(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    warehouse = models.ForeignKey("catalog.Warehouse", on_delete=models.PROTECT, related_name="shipments")
    tracking = models.CharField(max_length=40, blank=True)
    weight_grams = models.PositiveIntegerField()
    shipped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(weight_grams__gt=0), name="sales_shipment_weight_positive")]
