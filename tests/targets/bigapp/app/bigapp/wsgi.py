"""WSGI entry point (``gunicorn bigapp.wsgi``); DJANGO_SETTINGS_MODULE is the deployment's choice."""

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
