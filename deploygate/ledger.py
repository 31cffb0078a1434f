"""The deploy ledger: one row per deploy, rollback and gate override, kept in production's own database.

It lives in a ``deploygate`` schema of the production database so it is as durable as
the data it describes (and survives the loss of this machine's files); every entry is
mirrored as a JSON line under logs/. Entries never hold secrets.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from psycopg.types.json import Jsonb

from deploygate.database import DatabaseAddress, connect

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS deploygate;
CREATE TABLE IF NOT EXISTS deploygate.ledger (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,          -- deploy | rollback | override | ...
    outcome text NOT NULL,       -- started | succeeded | failed | rolled_back | recorded
    release text,
    image_digest text,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
"""


@dataclass(frozen=True)
class Entry:
    at: dt.datetime
    kind: str
    outcome: str
    release: str | None
    image_digest: str | None
    detail: dict


def _has_ledger(conn) -> bool:
    return conn.execute("SELECT to_regclass('deploygate.ledger') IS NOT NULL").fetchone()[0]


def record(
    address: DatabaseAddress,
    mirror_dir: Path | None,
    kind: str,
    outcome: str,
    *,
    release: str | None = None,
    image_digest: str | None = None,
    detail: dict | None = None,
) -> Entry:
    """Append an entry (creating the schema on first use) and mirror it to ``mirror_dir/ledger.jsonl``."""
    detail = detail or {}
    with connect(address) as conn:
        conn.execute(SCHEMA_SQL)
        at = conn.execute(
            "INSERT INTO deploygate.ledger (kind, outcome, release, image_digest, detail) VALUES (%s, %s, %s, %s, %s) RETURNING at",
            [kind, outcome, release, image_digest, Jsonb(detail)],
        ).fetchone()[0]
    entry = Entry(at=at, kind=kind, outcome=outcome, release=release, image_digest=image_digest, detail=detail)
    if mirror_dir is not None:
        mirror_dir.mkdir(parents=True, exist_ok=True)
        with (mirror_dir / "ledger.jsonl").open("a") as handle:
            handle.write(json.dumps({**entry.__dict__, "at": at.isoformat()}, sort_keys=True) + "\n")
    return entry


def entries(address: DatabaseAddress, kind: str | None = None) -> list[Entry]:
    """All entries, oldest first (none when the ledger was never written)."""
    with connect(address) as conn:
        if not _has_ledger(conn):
            return []
        rows = conn.execute(
            "SELECT at, kind, outcome, release, image_digest, detail FROM deploygate.ledger"
            " WHERE %s::text IS NULL OR kind = %s ORDER BY id",
            [kind, kind],
        ).fetchall()
    return [Entry(*row) for row in rows]


def last_deploy(address: DatabaseAddress) -> Entry | None:
    """The most recent deploy that reached production (succeeded or rolled back), or None."""
    deploys = [e for e in entries(address, "deploy") if e.outcome in ("succeeded", "rolled_back")]
    return deploys[-1] if deploys else None
