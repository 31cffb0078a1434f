"""gunicorn settings: ``gunicorn -c /app/gunicorn.conf.py bmparliament.wsgi:application``.

One worker process with threads: the 5xx counter behind /health/detailed/
and the error-burst counter live in the process, so a single process keeps
them the numbers of the whole server.
"""

from pathlib import Path

wsgi_app = "bmparliament.wsgi:application"
# Import the app from the directory of this file, whatever the working directory.
chdir = str(Path(__file__).resolve().parent)
bind = "0.0.0.0:8000"
workers = 1
threads = 8
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
