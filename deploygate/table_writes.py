"""Proof that a table stayed as it was without reading its rows (pure, unit-tested).

The rehearsal hashes row by row only the tables the plan changes (``scope.content_tables``).
Every other table is proven from what the copy's own Postgres records, which has no other
writer: the same OID and relfilenode (not re-created, rewritten or truncated) and no tuple
inserted, updated or deleted while migrating (``pg_stat_user_tables``, counted by the probe
right around migrate: ``probes/deploygate_table_writes.py``). A table that only gained
tuples, with its relfilenode kept, provably kept every row it had: the tuples are rows
added (counted as inserted, even by a statement rolled back later, so never fewer).
Anything else is unproven: its rows were never hashed, so nothing can say they are intact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Per table OID: tuples (inserted, updated, deleted, hot-updated), as the probe counts them.
Writes = Mapping[int, tuple[int, int, int, int]]


def combine(*writes: Writes | None) -> dict[int, tuple[int, int, int, int]] | None:
    """The sum of several counts (migrating, then reversing); None when any of them is unknown."""
    if any(w is None for w in writes):
        return None
    total: dict[int, tuple[int, int, int, int]] = {}
    for counts in writes:
        for oid, numbers in counts.items():
            total[oid] = tuple(a + b for a, b in zip(total.get(oid, (0, 0, 0, 0)), numbers, strict=True))
    return total


@dataclass(frozen=True)
class Proof:
    """What the statistics prove about one table: ``kept`` every row it had, ``added`` rows besides; or
    ``reason`` why they prove nothing."""

    kept: bool
    added: int = 0
    reason: str = ""


def describe_writes(counts: tuple[int, int, int, int]) -> str:
    """E.g. "2 rows inserted, 1 updated" (hot updates are updates already)."""
    inserted, updated, deleted, hot = counts
    named = [(n, word) for n, word in ((inserted, "inserted"), (updated or hot, "updated"), (deleted, "deleted")) if n]
    if not named:
        return "no row written"
    (first, word), rest = named[0], named[1:]
    return f"{first} row{'s' if first != 1 else ''} {word}" + "".join(f", {n} {w}" for n, w in rest)


def by_statistics(old_oid: int, old_node: int, new_oid: int, new_node: int, writes: Writes | None) -> Proof:
    """Whether a table whose rows were not hashed kept them: same OID, same relfilenode, and (by ``writes``,
    None when not counted) no tuple updated or deleted; inserted tuples are rows added."""
    if new_oid != old_oid:
        return Proof(False, reason="re-created (a new OID)")
    if new_node != old_node:
        return Proof(False, reason="rewritten or truncated (a new relfilenode)")
    if writes is None:
        return Proof(False, reason="the copy's statistics did not count the migration's writes (PostgreSQL before 15)")
    counts = tuple(writes.get(old_oid, (0, 0, 0, 0)))
    inserted, updated, deleted, hot = counts
    if updated or deleted or hot:
        return Proof(False, reason=f"{describe_writes(counts)} by the migration")
    return Proof(True, added=inserted)
