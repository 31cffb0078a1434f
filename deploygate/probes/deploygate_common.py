"""What the probe's modules share: the database connection, one-line errors, the database's diagnostics.

Imported by ``django_probe.py`` after ``django.setup()``, inside the release's image
(stdlib and Django only). Named with a ``deploygate_`` prefix because the image's
working directory comes first on ``sys.path``: a plain name could be the app's own module.
"""

from django.db import DEFAULT_DB_ALIAS, connections

connection = connections[DEFAULT_DB_ALIAS]


def one_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def applied_leaves(loader):
    """Per app, the latest applied migration in the graph's order (what production runs on)."""
    leaves = {}
    for app, name in loader.graph.leaf_nodes():
        applied = [node for node in loader.graph.forwards_plan((app, name)) if node in loader.applied_migrations and node[0] == app]
        leaves[app] = applied[-1][1] if applied else None
    return leaves


def database_error(exc):
    """What the database said about ``exc`` (Django wraps the driver's error; psycopg 2 and 3 both carry ``diag``)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    diag = getattr(cause, "diag", None)

    def get(name):
        return getattr(diag, name, None) if diag is not None else None

    return {
        "message": one_line(exc),
        "sqlstate": get("sqlstate") or getattr(cause, "pgcode", None),
        "table": get("table_name"),
        "column": get("column_name"),
        "constraint": get("constraint_name"),
        "detail": get("message_detail"),
    }
