from django.apps import AppConfig


class SalesConfig(AppConfig):
    name = "sales"

    def ready(self) -> None:
        from sales import signals  # noqa: F401 - connects the receivers
