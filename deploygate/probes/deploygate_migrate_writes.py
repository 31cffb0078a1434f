"""Which transactions the release's own migrate inserted rows in, per table: run INSIDE the image by the probe.

The host leaves those rows out of the window's writes (``deploygate.window.MigrateWrites``):
a row's ``xmin`` is the transaction that wrote it, so users' rows written into the same
tables before, during or after migrate stay the window's. Rows migrate wrote where no
transaction id can be found (outside a transaction) stay the window's too: the side on
which no row is lost.

Standard library only, on the driver's own connection (psycopg 2 or 3): it is imported by
``django_probe.py`` from this directory, and unit-tested on the host with a fake connection.
"""

import re

INSERTED_TABLE = re.compile(r'^\s*INSERT\s+INTO\s+"?([\w.]+)"?', re.I)
# The 32-bit id of this connection's open transaction (what a row's xmin holds), NULL outside one.
CURRENT_XID_SQL = "SELECT mod(txid_current_if_assigned(), 4294967296)"
# A table's single integer primary key.
PK_SQL = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass(%s) AND i.indisprimary AND i.indnatts = 1 AND a.atttypid IN (20, 21, 23)
"""
# The xmins of rows above a floor that this open transaction wrote, its savepoints included: another
# session's uncommitted rows are invisible, so a visible row whose transaction is in progress is ours.
# txid_status needs the 64-bit id: the 32-bit xmin is taken as the nearest id to the snapshot's
# (our own savepoints' ids may be a little past it, other rows' behind it, an epoch wrap either way);
# the first three ids are special (bootstrap, frozen) and never ours. mod(), not %: the query has a
# parameter, and the drivers read % as one.
OWN_XIDS_SQL = """
WITH s AS (SELECT txid_snapshot_xmax(txid_current_snapshot()) AS top),
r AS (SELECT DISTINCT xmin::text::bigint AS x FROM {table} WHERE {pk} > %s),
d AS (SELECT x, s.top, x - mod(s.top, 4294967296) AS ahead FROM r, s WHERE x >= 3),
f AS (SELECT x, top + ahead + CASE WHEN ahead > 2147483648 THEN -4294967296 WHEN ahead < -2147483648 THEN 4294967296 ELSE 0 END
      AS full_id FROM d)
SELECT x FROM f WHERE full_id > 0 AND txid_status(full_id) = 'in progress'
"""
# Django's record of applied migrations is never a window's row (deploygate.window leaves it out).
RECORDER_TABLE = "django_migrations"


class InsertTracker:
    """Told of every statement migrate runs (``before`` / ``after``), and ``own_xids`` before a plan run
    in one transaction commits; ``result()``: table -> sorted transaction ids that inserted there."""

    def __init__(self):
        self.xids = {}
        self.floors = {}  # table -> (primary key, its largest value before migrate first inserted there)
        self._asked = set()

    def before(self, sql, raw_connection):
        """Before migrate first inserts into a table: where its ids stand (``own_xids`` looks above)."""
        table = inserted_table(sql)
        if table is not None and table not in self.floors:
            self.floors[table] = _pk_floor(raw_connection, table)

    def after(self, sql, raw_connection, migration=None):
        """After a statement that succeeded: if it inserted, the id of the transaction it inserted in.

        Asked once per ``migration`` (its record: a migration is one transaction) and table;
        Django's bookkeeping (``migration`` None) asks every time (a few bulk inserts). Rows
        inserted in a savepoint (each migration of a plan run in one transaction, a data
        migration's nested atomic) carry the savepoint's own id: ``own_xids`` finds those.
        """
        table = inserted_table(sql)
        if table is None:
            return
        if migration is not None:
            key = (id(migration), table)  # the migration's record lives as long as the run
            if key in self._asked:
                return
            self._asked.add(key)
        rows = _query(raw_connection, CURRENT_XID_SQL)
        if rows and rows[0][0] is not None:
            self.xids.setdefault(table, set()).add(int(rows[0][0]))

    def own_xids(self, raw_connection):
        """Before the plan's one transaction commits: per table migrate inserted into, the ids of its
        transaction and savepoints that wrote rows there."""
        for table, floor in self.floors.items():
            if floor is None or table == RECORDER_TABLE:
                continue
            pk, value = floor
            query = OWN_XIDS_SQL.format(table=quoted(table), pk=quoted(pk))
            # In a savepoint: whatever goes wrong here must not abort the plan it only describes.
            _command(raw_connection, "SAVEPOINT deploygate_own_xids")
            rows = _query(raw_connection, query, [value])
            _command(
                raw_connection, "RELEASE SAVEPOINT deploygate_own_xids" if rows is not None else "ROLLBACK TO SAVEPOINT deploygate_own_xids"
            )
            for (xid,) in rows or []:
                self.xids.setdefault(table, set()).add(int(xid))

    def result(self):
        return {table: sorted(xids) for table, xids in self.xids.items()}


def inserted_table(sql):
    """The table an INSERT writes to, unqualified in the public schema (None: not an INSERT)."""
    found = INSERTED_TABLE.match(sql)
    return found.group(1).removeprefix("public.") if found else None


def quoted(name):
    return '"' + name.replace('"', '""') + '"'


def _query(raw_connection, sql, params=None):
    """Rows of ``sql``, or None when it failed (the transaction's own statements are what gets reported)."""
    try:
        with raw_connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    except Exception:  # noqa: BLE001 - see the docstring
        return None


def _command(raw_connection, sql):
    """Run a statement that returns no rows (a savepoint's); False if it failed."""
    try:
        with raw_connection.cursor() as cursor:
            cursor.execute(sql)
        return True
    except Exception:  # noqa: BLE001 - as _query
        return False


def _pk_floor(raw_connection, table):
    """(primary key, its largest value) of ``table`` before migrate inserts there; None without a single integer key."""
    rows = _query(raw_connection, PK_SQL, [quoted(table)])
    if not rows:
        return None
    pk = rows[0][0]
    found = _query(raw_connection, f"SELECT coalesce(max({quoted(pk)}), 0) FROM {quoted(table)}")
    return (pk, found[0][0]) if found else None
