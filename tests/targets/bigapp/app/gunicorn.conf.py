"""gunicorn's configuration of the web process, read from the working directory (/app).

``raw_env`` is how this team gives the web process a setting: EXPORTS_DIR reaches the web
workers only, not one-off commands run from the same image (a real app's habit, kept here
on purpose: code that needs a setting other processes lack).
"""

bind = "0.0.0.0:8000"
workers = 2
accesslog = "-"
raw_env = ["EXPORTS_DIR=/tmp/bigapp-exports"]
