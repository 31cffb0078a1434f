"""WSGI entry point for gunicorn (``gunicorn shop.wsgi``).

No ``setdefault`` of DJANGO_SETTINGS_MODULE: which settings run is the deployment's choice,
and a process started without one should fail loudly rather than guess.
"""

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
