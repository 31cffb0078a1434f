from django.apps import AppConfig


class UnifiedDbConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "unified_db"
