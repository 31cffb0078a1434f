"""A project whose history gets squashed: contenttypes and auth (post_migrate writes their rows) and
the apps SQ_APPS names (which lets a release uninstall one), on a Postgres reached through DB_*."""

import os

SECRET_KEY = "squashed-history-test-only-insecure-key"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", *filter(None, os.environ.get("SQ_APPS", "stock").split(","))]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("DB_HOST", "db"),
        "PORT": int(os.environ.get("DB_PORT", "5432")),
        "NAME": os.environ.get("DB_NAME", "sq"),
        "USER": os.environ.get("DB_USER", "sq"),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "OPTIONS": {"connect_timeout": 5},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
