"""What the shop sells: a category tree, brands, products and their variants, prices and stock."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class Category(models.Model):
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    slug = models.SlugField(max_length=50)
    name = models.CharField(max_length=100)
    # The materialised path ("/tools/garden/"), kept in step by save().
    path = models.CharField(max_length=255, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["parent", "slug"], name="catalog_category_unique_slug")]

    def save(self, *args, **kwargs) -> None:
        self.path = (self.parent.path if self.parent_id else "/") + f"{self.slug}/"
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return self.path or self.slug


class Brand(models.Model):
    name = models.CharField(max_length=100, unique=True)
    country = models.CharField(max_length=2, blank=True)

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    STATUSES = [("draft", "Draft"), ("active", "Active"), ("retired", "Retired")]

    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    brand = models.ForeignKey(Brand, null=True, blank=True, on_delete=models.SET_NULL, related_name="products")
    status = models.CharField(max_length=10, choices=STATUSES, default="draft")
    # Free-form facets ({"colour": "red", "size": "M"}); the price rules match on them.
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sku"]
        indexes = [models.Index(fields=["category", "status"], name="catalog_product_cat_status")]

    def matching_rules(self) -> models.QuerySet:
        """The price rules whose conditions this product's attributes all satisfy (a JSON containment filter)."""
        return PriceRule.objects.filter(active=True, conditions__contained_by=self.attributes)

    def __str__(self) -> str:
        return self.sku


class Variant(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="variants")
    code = models.CharField(max_length=40, unique=True)
    # Which variant this is: {"size": "M"}; no two variants of a product have the same options.
    options = models.JSONField()

    def save(self, *args, **kwargs) -> None:
        same = Variant.objects.filter(product=self.product_id, options=self.options).exclude(pk=self.pk)
        if same.exists():
            raise ValidationError(f"{self.product} already has a variant with options {self.options}")
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return self.code


class Price(models.Model):
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="prices")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=12, decimal_places=3)
    # Decimal places of the currency, copied from the settings so reports need no lookup.
    minor_units = models.PositiveSmallIntegerField(editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["variant", "currency"], name="catalog_price_one_per_currency"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="catalog_price_amount_not_negative"),
        ]

    def save(self, *args, **kwargs) -> None:
        self.minor_units = settings.CURRENCY_EXPONENTS[self.currency]
        super().save(*args, **kwargs)


class PriceRule(models.Model):
    name = models.CharField(max_length=100)
    conditions = models.JSONField(default=dict)
    percent_off = models.PositiveSmallIntegerField()
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(percent_off__lte=90), name="catalog_pricerule_at_most_90")]


class Warehouse(models.Model):
    code = models.CharField(max_length=10, unique=True)
    name = models.CharField(max_length=100)
    country = models.CharField(max_length=2)

    def __str__(self) -> str:
        return self.code


class StockLevel(models.Model):
    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="stock")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="stock")
    quantity = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["warehouse", "variant"], name="catalog_stock_one_per_place"),
            models.CheckConstraint(condition=models.Q(quantity__gte=0), name="catalog_stock_not_negative"),
        ]
