"""Settings of the compatibility cases: the shop app beside Django's contenttypes and auth
(as nearly every Django project has them), a Postgres reached through DB_* variables."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "compat-cases-only-insecure-secret-key"

# contenttypes and auth fill their tables from post_migrate whenever a migration adds a
# model: the content check must tell those rows from user data. django.contrib.postgres
# brings the hstore, array and range fields of the all_field_types case.
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.postgres", "shop"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("DB_HOST", "db"),
        "PORT": int(os.environ.get("DB_PORT", "5432")),
        "NAME": os.environ.get("DB_NAME", "caseproj"),
        "USER": os.environ.get("DB_USER", "caseproj"),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "OPTIONS": {"connect_timeout": 5},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# ImageField only stores a file name in the database; Pillow is needed to read images,
# which nothing here does (and the image installs no Pillow).
SILENCED_SYSTEM_CHECKS = ["fields.E210"]
