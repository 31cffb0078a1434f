"""Settings for the bmparliament demo.

Everything environment-specific comes from environment variables so that one
image runs against whichever Postgres the deployment points it at.
"""

import os
from pathlib import Path

from bmparliament.release import RELEASE

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-secret-key")
DEBUG = False
ALLOWED_HOSTS = ["*"]

# No admin, auth or sessions: the demo only needs its two apps. contenttypes
# is left out too, so RenameModel has no content-type rows to keep in step.
INSTALLED_APPS = [
    "members",
    "unified_db",
]

MIDDLEWARE = [
    # Outermost, so it sees every 5xx, including those the inner middleware
    # produces and unhandled exceptions turned into 500 responses.
    "bmparliament.middleware.ErrorWindowMiddleware",
    "bmparliament.middleware.ErrorBurstMiddleware",
    "bmparliament.middleware.SlowMiddleware",
]

ROOT_URLCONF = "bmparliament.urls"
WSGI_APPLICATION = "bmparliament.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("DB_HOST", "db"),
        "PORT": int(os.environ.get("DB_PORT", "5432")),
        "NAME": os.environ.get("DB_NAME", "bmparliament"),
        "USER": os.environ.get("DB_USER", "bmparliament"),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        # A health check against an unreachable database must answer well
        # within gunicorn's 30 s worker timeout.
        "OPTIONS": {"connect_timeout": 5},
    }
}

# A streaming replica, when the production has one: lists read there (bmparliament/routers.py).
if os.environ.get("DB_REPLICA_HOST"):
    DATABASES["replica"] = {
        **DATABASES["default"],
        "HOST": os.environ["DB_REPLICA_HOST"],
        "PORT": int(os.environ.get("DB_REPLICA_PORT", "5432")),
        # A read that waits on the replica gives up after 2 s, and the router's caller reads the primary
        # instead: slower, never failed. Waiting on the server (its replay of a migration's lock stalls
        # readers): statement_timeout. On a server gone (a stopped container drops packets, no reset): the
        # socket's tcp_user_timeout, else a kept connection would hang for the kernel's minutes.
        "OPTIONS": {"connect_timeout": 2, "tcp_user_timeout": 2000, "options": "-c statement_timeout=2000"},
        "TEST": {"MIRROR": "default"},
    }
    DATABASE_ROUTERS = ["bmparliament.routers.ReplicaRouter"]

# The cache, when the production has one (CACHE_URL): deploygate's recipe, KEY_PREFIX = the namespace of
# the schema this color runs on, so no release reads objects another pickled on another schema. A release
# built with cache_namespace = "fixed" (v1, before the recipe) keeps one prefix whatever the schema.
if os.environ.get("CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["CACHE_URL"],
            "KEY_PREFIX": ("bmparliament" if RELEASE.cache_namespace == "fixed" else os.environ.get("DEPLOYGATE_CACHE_NAMESPACE", "")),
            # A cache that stops answering costs a request at most this long, then the database answers.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stdout"], "level": "INFO"},
}
