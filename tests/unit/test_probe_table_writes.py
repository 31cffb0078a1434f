"""The probe's counts of what migrate wrote per table (run inside the image; here on a fake connection)."""

from __future__ import annotations

from deploygate.probe import parse_migrate
from deploygate.probes.deploygate_table_writes import counters, writes
from deploygate.table_writes import combine


class FakeConnection:
    """A Django connection to a PostgreSQL of ``version``, answering pg_stat_user_tables with ``rows``."""

    vendor = "postgresql"
    in_atomic_block = False

    def __init__(self, version: int, rows: list[tuple[int, int, int, int, int]]) -> None:
        self.pg_version, self.rows, self.statements = version, rows, []

    def cursor(self) -> FakeConnection:
        return self

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def execute(self, sql: str) -> None:
        self.statements.append(sql)

    def fetchall(self) -> list[tuple[int, int, int, int, int]]:
        return self.rows


def test_counts_are_flushed_first_and_read_per_table() -> None:
    connection = FakeConnection(150004, [(16384, 20, 0, 0, 0), (16390, 3, 1, 0, 1)])
    assert counters(connection) == {16384: (20, 0, 0, 0), 16390: (3, 1, 0, 1)}
    assert connection.statements[0] == "SELECT pg_stat_force_next_flush()"
    # Before 15 nothing can force this backend's counts out: unknown, and the host hashes every table.
    assert counters(FakeConnection(140010, [])) is None


def test_writes_are_the_tables_whose_counts_moved() -> None:
    before = {16384: (20, 0, 0, 0), 16390: (3, 1, 0, 1)}
    after = {16384: (20, 0, 0, 0), 16390: (3, 4, 0, 2), 16400: (1, 0, 0, 0)}
    moved = writes(before, after)
    assert moved == {"16390": [0, 3, 0, 1], "16400": [1, 0, 0, 0]}
    assert writes(None, after) is None
    # As the host reads them (JSON keys are strings; probe_results makes them OIDs again).
    assert combine({int(k): tuple(v) for k, v in moved.items()}) == {16390: (0, 3, 0, 1), 16400: (1, 0, 0, 0)}


def test_the_host_reads_them_per_oid() -> None:
    payload = {"migrations": [], "error": None, "table_writes": {"16390": [0, 3, 0, 1]}}
    assert parse_migrate(payload).table_writes == {16390: (0, 3, 0, 1)}
    assert parse_migrate({"migrations": [], "error": None}).table_writes is None
