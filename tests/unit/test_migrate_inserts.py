"""The probe's tracker of migrate's own inserts (run inside the image; pure logic here, on a fake connection)."""

from __future__ import annotations

from deploygate.probes.deploygate_migrate_writes import CURRENT_XID_SQL, PK_SQL, InsertTracker, inserted_table


class FakeConnection:
    """Answers the tracker's queries: the current transaction id, a table's key and floor; records savepoints."""

    def __init__(self, xid: int | None = 7001, own: list[int] | None = None) -> None:
        self.xid, self.own, self.statements = xid, own or [], []

    def cursor(self) -> FakeConnection:
        return self

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def execute(self, sql: str, params=None) -> None:
        self.statements.append(sql.strip().split()[0] if "WITH s AS" not in sql else "OWN")
        self.rows = (
            [(self.xid,)]
            if sql == CURRENT_XID_SQL
            else [("id",)]
            if sql == PK_SQL
            else [(41,)]
            if sql.startswith("SELECT coalesce(max(")
            else [(x,) for x in self.own]
            if "WITH s AS" in sql
            else []
        )

    def fetchall(self) -> list:
        return self.rows


def test_the_inserted_table_is_read_from_djangos_sql() -> None:
    assert (
        inserted_table('INSERT INTO "django_content_type" ("app_label", "model") VALUES (%s, %s) RETURNING "id"') == "django_content_type"
    )
    assert inserted_table('UPDATE "django_content_type" SET "model" = %s') is None


def test_bookkeeping_asks_every_time_a_migration_once_per_table() -> None:
    conn, tracker = FakeConnection(), InsertTracker()
    insert = 'INSERT INTO "auth_permission" ("name") VALUES (%s)'
    for _ in range(2):
        tracker.before(insert, conn)
        tracker.after(insert, conn)  # post_migrate: no migration
    migration = {"app": "stock", "name": "0004_shelf"}
    for _ in range(3):
        tracker.after('INSERT INTO "stock_shelf" ("label") VALUES (%s)', conn, migration)
    assert conn.statements.count("SELECT") == 2 + 2 + 1  # key and floor once, xid twice, then once for the migration
    assert tracker.result() == {"auth_permission": [7001], "stock_shelf": [7001]}
    assert tracker.floors == {"auth_permission": ("id", 41)}


def test_outside_a_transaction_nothing_is_claimed() -> None:
    """No transaction id: the rows stay the window's (the side on which no row is lost)."""
    tracker = InsertTracker()
    tracker.after('INSERT INTO "auth_permission" ("name") VALUES (%s)', FakeConnection(xid=None))
    assert tracker.result() == {}


def test_savepoints_are_found_before_commit_in_a_savepoint_of_their_own() -> None:
    conn, tracker = FakeConnection(own=[7001, 7003]), InsertTracker()
    for table in ("stock_shelf", "django_migrations"):
        tracker.before(f'INSERT INTO "{table}" ("x") VALUES (1)', conn)
    conn.statements.clear()
    tracker.own_xids(conn)
    # django_migrations is never the window's: not asked.
    assert conn.statements == ["SAVEPOINT", "OWN", "RELEASE"]
    assert tracker.result() == {"stock_shelf": [7001, 7003]}
