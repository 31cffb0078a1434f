"""Health endpoints that a deploy gate polls, and the JSON 500 handler.

The health query goes through the member relation under the release's ORM
names, so a release whose names do not match the schema reports unhealthy
instead of passing on a plain ``SELECT 1``.
"""

import time

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from unified_db.models import MEMBER_FIELD, PersonLink

from bmparliament.middleware import PROCESS_STARTED, RECENT_ERRORS
from bmparliament.release import RELEASE

BUILT_TO_FAIL = f"release {RELEASE.name} is built to fail its health check"


def _one_line(exc):
    """Summarise an exception on one line, for JSON and logs."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _probe_orm():
    """Return None if a query through the member relation works, else the error."""
    if RELEASE.behaviour == "unhealthy":
        return BUILT_TO_FAIL
    try:
        list(PersonLink.objects.select_related(MEMBER_FIELD).order_by("id").values_list("id", f"{MEMBER_FIELD}__full_name")[:1])
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy; the message says which
        return _one_line(exc)
    return None


def health(request):
    """200 when the release can query through its ORM names, 503 otherwise."""
    error = _probe_orm()
    if error:
        return JsonResponse({"status": "unhealthy", "error": error}, status=503)
    return JsonResponse({"status": "healthy", "release": RELEASE.name})


def _database_facts():
    """Connections to this database, server version and database name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),"
            " current_setting('server_version'), current_database()"
        )
        connections, server_version, name = cursor.fetchone()
    return {
        "connections": connections,
        "vendor": connection.vendor,
        "server_version": server_version,
        "name": name,
    }


def _migration_facts():
    """Applied and pending migrations of this release's code against the database.

    ``unknown_applied`` lists migrations recorded in the database that this
    release's code does not have, e.g. v1 running on a schema v2 migrated.
    """
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    recorded = executor.loader.applied_migrations
    plan = executor.migration_plan(graph.leaf_nodes())
    return {
        "applied": sum(1 for key in recorded if key in graph.nodes),
        "pending": len(plan),
        "pending_names": [f"{migration.app_label}.{migration.name}" for migration, _ in plan],
        "unknown_applied": sorted(f"{app}.{name}" for app, name in recorded if (app, name) not in graph.nodes),
    }


def health_detailed(request):
    """Health plus the numbers a deploy gate watches: errors, DB, migrations."""
    started = time.perf_counter()
    error = _probe_orm()
    try:
        database = _database_facts()
        migrations = _migration_facts()
    except Exception as exc:  # noqa: BLE001 - the database itself is unreachable or broken
        database = migrations = None
        error = error or _one_line(exc)
    body = {
        "status": "unhealthy" if error else "healthy",
        "errors": RECENT_ERRORS.count(),
        "response_time_ms": round((time.perf_counter() - started) * 1000, 1),
        "release": {
            "name": RELEASE.name,
            "renamed": RELEASE.renamed,
            "keep_db_names": RELEASE.keep_db_names,
            "behaviour": RELEASE.behaviour,
        },
        "database": database,
        "migrations": migrations,
        "uptime_s": round(time.monotonic() - PROCESS_STARTED, 1),
    }
    if error:
        body["error"] = error
    return JsonResponse(body, status=503 if error else 200)


def server_error(request):
    """JSON body for unhandled exceptions; the traceback goes to the log."""
    return JsonResponse({"error": "internal server error"}, status=500)
