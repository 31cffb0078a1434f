"""Settings of the compatibility cases: one app, a Postgres reached through DB_* variables."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "compat-cases-only-insecure-secret-key"

# Only the app under test: every table in the database is one the cases change or watch.
INSTALLED_APPS = ["shop"]

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
