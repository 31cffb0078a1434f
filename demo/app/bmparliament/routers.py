"""Reads that may be a little stale go to the replica; everything else stays on the primary.

Lists (the HTML page, the JSON list) read from the streaming replica when one is configured
(DB_REPLICA_HOST): they tolerate its lag. A link's detail reads the primary, so a client
that creates a link and reads it back always finds it. Writes and migrations: the primary.
A replica that cannot be reached, or that stalls a read past its statement timeout (replaying a
migration's lock), is not an outage: the primary answers those reads then.
"""

import contextvars

from django.db import OperationalError

_REPLICA_READS = contextvars.ContextVar("replica_reads", default=False)


def read_from_replica(fetch):
    """``fetch()`` with its reads on the replica, or on the primary when the replica cannot be reached.

    Only an operational failure falls back (unreachable, or the statement timeout): an error of the query
    itself (a column the replica's schema lacks while it lags behind a migration) is the app's to see.
    """
    token = _REPLICA_READS.set(True)
    try:
        return fetch()
    except OperationalError:
        _REPLICA_READS.reset(token)
        token = None
        return fetch()
    finally:
        if token is not None:
            _REPLICA_READS.reset(token)


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        return "replica" if _REPLICA_READS.get() else "default"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True  # one database, two servers

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"
