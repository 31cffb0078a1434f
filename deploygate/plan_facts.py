"""What the predeploy gate records for the reviewer's plan, beyond its checks' verdicts.

The gate's fixtures call these with what they observed (the rehearsal, the compatibility
verdict, the reversal) and put the result under ``GateResult.details``; ``plan_view``
renders it. Everything here is JSON-ready and is the one place that knows its shape:
``details["rehearsal"]``, ``details["compat"]``, ``details["reversal"]``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from deploygate.migrations import RECORDER_TABLES, qualify
from deploygate.probe_results import lock_words  # Postgres' documented lock names, spelt once there

if TYPE_CHECKING:
    from deploygate.compat import Verdict
    from deploygate.probe import MigrationPlan
    from deploygate.rehearsal import Rehearsal, Reversal

REHEARSAL, COMPAT, REVERSAL = "rehearsal", "compat", "reversal"


def _rows_by_table(*fingerprints: dict) -> dict[str, int]:
    """Rows per qualified table name; later fingerprints (after the migration) win over earlier ones."""
    rows: dict[str, int] = {}
    for prints in fingerprints:
        rows.update({table.name: table.rows for table in prints.values()})
    return rows


def rehearsal_facts(
    rehearsal: Rehearsal, *, rewritten_tables: list[str], lock_timeout_ms: int, proven: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Each migration not yet applied in production, as the candidate planned and applied it on the copy.

    Per migration: its operations and SQL, whether it is reversible, and as applied its
    duration and, per table it locked, the strongest lock, how long it was held and the
    table's rows on the production-size copy. Tables rewritten come from the fingerprints
    (a new relfilenode: every row copied). ``proven``: how the content check proved each
    table ({"rows": [...], "statistics": [...]}: hashed, or untouched by the copy's statistics).
    """
    rows = _rows_by_table(rehearsal.before, rehearsal.after)
    applied = {m.label: m for m in rehearsal.applied if m.direction == "forwards"}
    migrations = []
    for step in rehearsal.plan.steps:
        done = applied.get(step.label)
        locks = []
        for table, lock in sorted((done.locks if done else {}).items()):
            name = qualify(table)
            if name in RECORDER_TABLES:  # Django's own row per migration: every plan takes it, no reviewer asks
                continue
            locks.append({"table": name, "mode": lock_words(lock.mode), "held_ms": round(lock.held_s * 1000, 1), "rows": rows.get(name)})
        migrations.append(
            {
                "label": step.label,
                "operations": list(step.operations),
                "sql": list(step.sql),
                "reversible": step.reversible,
                "atomic": step.atomic,
                "applied": done is not None and not done.error,
                "error": done.error if done else None,
                "duration_s": done.duration_s if done else None,
                "statements": done.statements if done else None,
                "locks": locks,
            }
        )
    return {
        "migrations": migrations,
        "applied_leaves": dict(rehearsal.plan.applied_leaves),
        "tables_rewritten": sorted(rewritten_tables),
        "duration_s": round(sum(m.duration_s for m in applied.values()), 4),
        "lock_timeout_ms": lock_timeout_ms,
        "migrate_error": rehearsal.migrate_error,
        "content_proof": proven or {},
    }


def compat_facts(verdict: Verdict, plan: MigrationPlan) -> dict[str, Any]:
    """Both directions of the blue-green overlap, each failing model and field with its value class and the
    database's words, and those grouped by root cause; the fix; and the verdict's own explanation as the
    gate printed it."""
    from deploygate.compat import CANDIDATE_ON_NEW, CANDIDATE_ON_OLD, PRODUCTION_ON_NEW, by_cause, explain_failure

    def direction(name: str, judged: bool, items: list) -> dict[str, Any]:
        # Every failure, and the same grouped by root cause (what the plan shows, one row per cause).
        return {
            "direction": name,
            "judged": judged,
            "items": [dataclasses.asdict(i) for i in items],
            "findings": [finding.facts() for finding in by_cause(items)],
        }

    migrated = verdict.migration_failure is None
    directions = [
        # Without a migrated schema there is nothing to judge the release serving now on.
        direction(PRODUCTION_ON_NEW, migrated, verdict.production_on_new),
        direction(CANDIDATE_ON_OLD, True, verdict.candidate_on_old),
    ]
    if verdict.candidate_on_new:
        directions.append(direction(CANDIDATE_ON_NEW, True, verdict.candidate_on_new))
    return {
        "compatible": verdict.compatible,
        "migration_failure": None if migrated else explain_failure(verdict.migration_failure),
        "directions": directions,
        "advice": list(verdict.advice),
        "unchecked": list(verdict.unchecked),
        "explanation": verdict.explain(plan),
    }


def reversal_facts(reversal: Reversal) -> dict[str, Any]:
    """The plan migrated back on the copy by the candidate image (the gate's check says whether content came back identical)."""
    return {
        "reversed": [m.label for m in reversal.applied if m.direction == "backwards"] or [m.label for m in reversal.applied],
        "error": reversal.error,
        "duration_s": reversal.duration_s,
    }
