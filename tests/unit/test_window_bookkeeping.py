"""Rows the release's own migrate inserted are bookkeeping, not the window's (pure logic: no database)."""

from __future__ import annotations

from psycopg import sql

from deploygate.deploy.state import Checkpoint
from deploygate.probe import parse_migrate
from deploygate.record import ImageRecord
from deploygate.window import MigrateWrites, describe_counts

# Ids just before migrate, per table with an integer primary key; the probe's xids as it reports them.
BEFORE = {"django_content_type": 12, "auth_permission": 48, "catalog_item": 900}
PAYLOAD = {
    "migrations": [],
    "error": None,
    "bookkeeping": {"post_migrate": ["django_content_type", "auth_permission"], "content_type_rename": []},
    "inserted_xids": {
        "django_content_type": [7001],
        "public.auth_permission": [7001],
        "catalog_item": [],
        "django_migrations": [7001],
        "catalog_note": [6999],
    },
}


def test_the_probes_xids_reach_the_host() -> None:
    assert parse_migrate(PAYLOAD).inserted_xids["django_content_type"] == [7001]
    assert parse_migrate({"migrations": [], "error": "boom"}).inserted_xids == {}


def test_tables_migrate_inserted_into_are_kept_with_their_floor() -> None:
    """No xid (outside a transaction: the window's): left out; a table migrate created: from 0."""
    writes = MigrateWrites.taken(BEFORE, parse_migrate(PAYLOAD).inserted_xids)
    assert writes.floors == {"auth_permission": 48, "catalog_note": 0, "django_content_type": 12, "django_migrations": 0}
    assert writes.xids["auth_permission"] == [7001] and writes.xids["catalog_note"] == [6999]
    assert "catalog_item" not in writes.xids


def test_the_condition_leaves_out_rows_above_the_floor_in_migrates_transactions() -> None:
    writes = MigrateWrites(floors={"django_content_type": 12}, xids={"django_content_type": [7001, 7002]})
    condition, params = writes.excluded("django_content_type", sql.Identifier("id"))
    assert condition.as_string(None) == 'NOT ("id" > %s AND xmin::text::bigint = ANY(%s))'
    assert params == [12, [7001, 7002]]
    # A table migrate did not insert into: every row above the window's floor is the window's.
    condition, params = writes.excluded("catalog_item", sql.Identifier("id"))
    assert (condition.as_string(None), params) == ("TRUE", [])


def test_the_checkpoint_keeps_them_and_the_cache_namespaces_for_a_converging_process() -> None:
    writes = MigrateWrites(floors={"django_content_type": 12}, xids={"django_content_type": [7001]})
    checkpoint = Checkpoint(
        stamp="s",
        candidate=ImageRecord(ref="v2", tag="app:v2", image_id="sha256:2"),
        previous=None,
        new_color="green",
        reversal_targets={},
        plan=[],
        reversible=True,
        hold=None,
        exceptions={},
        started_ids={"django_content_type": 10},
        backup_manifest=None,
        migrate_writes=writes,
        cache_namespaces={"before": "s000000000001", "after": "s000000000002"},
    )
    resumed = Checkpoint.from_json(checkpoint.to_json())
    assert resumed.migrate_writes == writes and resumed.cache_namespaces == {"before": "s000000000001", "after": "s000000000002"}
    # A ledger written before migrate (or by an older deploygate) has neither: every row above the floor is the window's.
    older = {k: v for k, v in checkpoint.to_json().items() if k not in ("migrate_writes", "cache_namespaces")}
    assert Checkpoint.from_json(older).migrate_writes == MigrateWrites() and Checkpoint.from_json(older).cache_namespaces == {}


def test_counts_are_said_in_one_line() -> None:
    assert describe_counts({"django_content_type": 1, "auth_permission": 4}) == "5 rows (auth_permission 4, django_content_type 1)"
    assert describe_counts({"django_content_type": 0}) == "0 rows"
