"""The rows each table took while the probe migrated, from Postgres' own statistics.

The host hashes row by row only the tables a plan names (``deploygate.scope.content_tables``)
and proves every other table untouched from these counts and its relfilenode
(``deploygate.table_writes``). The copy has no other writer, but this process's own ORM
exercises (rolled back, still counted) run just before and after migrate in the same
batch: hence counts taken right around it, each after forcing this backend's pending
statistics out. ``pg_stat_force_next_flush`` is PostgreSQL 15's; older servers answer
None, and the host then hashes every table.
"""

from django.db import DatabaseError

_COUNTERS = "SELECT relid, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables"
_NONE = (0, 0, 0, 0)


def counters(connection):
    """Per table OID, (inserted, updated, deleted, hot-updated) tuples so far, by Django's ``connection``;
    None before PostgreSQL 15.

    Call outside a transaction: the flush happens when the backend goes idle, which it does
    before it answers the first statement, so the second one reads this process's own writes.
    """
    if connection.vendor != "postgresql" or connection.pg_version < 150000 or connection.in_atomic_block:
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute(_COUNTERS)
            return {relid: tuple(row) for relid, *row in cursor.fetchall()}
    except DatabaseError:  # e.g. the connection a failed migration broke: unknown, so the host hashes or reports
        return None


def writes(before, after):
    """The tables written between two ``counters()``: {"oid": [inserted, updated, deleted, hot-updated]},
    or None when either is unknown."""
    if before is None or after is None:
        return None
    changed = {}
    for relid, now in after.items():
        then = before.get(relid, _NONE)
        if now != then:
            changed[str(relid)] = [now[i] - then[i] for i in range(len(_NONE))]  # no zip(strict=): any Python 3
    return changed
