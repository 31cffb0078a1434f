from django.contrib import admin

from catalog.models import Supplier, Thing


@admin.register(Supplier)
class SupplierAdmin(admin.ModelAdmin):
    list_display = ["name", "email"]
    search_fields = ["name"]


@admin.register(Thing)
class ThingAdmin(admin.ModelAdmin):
    list_display = ["name", "address", "supplier", "created_at", "processed_at"]
    list_filter = ["processed_at"]
    search_fields = ["name", "uuid"]
    readonly_fields = ["uuid", "created_at"]
