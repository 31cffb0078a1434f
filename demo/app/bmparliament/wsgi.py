"""WSGI entry point: ``gunicorn -c gunicorn.conf.py bmparliament.wsgi:application``."""

import logging
import os

from django.core.wsgi import get_wsgi_application

from bmparliament.release import RELEASE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bmparliament.settings")

application = get_wsgi_application()

# Logged after get_wsgi_application(), which is what applies settings.LOGGING.
logging.getLogger("bmparliament").info(
    "serving release %s (renamed=%s keep_db_names=%s behaviour=%s)",
    RELEASE.name,
    RELEASE.renamed,
    RELEASE.keep_db_names,
    RELEASE.behaviour,
)
