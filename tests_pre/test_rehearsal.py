"""The migration rehearsed on a restored copy of production, by the candidate image."""

from __future__ import annotations

import pytest

from deploygate import compat, differential
from deploygate.migrations import announced_changes, parse_expected_plan
from deploygate.rehearsal import CANDIDATE_ON_NEW, reversal_diff

pytestmark = pytest.mark.rehearsal


def _plan_table(rehearsed) -> str:
    lines = [f"  {step.label}: {'; '.join(step.operations)}" for step in rehearsed.plan.steps]
    return "\n".join(lines) or "  (nothing to apply)"


def test_plan_is_the_expected_one(rehearsed, settings, gate_measure) -> None:
    expected = parse_expected_plan(settings.expected_plan)
    gate_measure(", ".join(rehearsed.plan.labels) or "nothing to apply", ", ".join(expected) or "any")
    print(f"migration plan of {rehearsed.candidate.tag}:\n{_plan_table(rehearsed)}")
    if expected:
        assert sorted(rehearsed.plan.labels) == sorted(expected), f"plan {rehearsed.plan.labels} is not the expected {expected}"


def test_every_migration_applies(rehearsed, gate_measure) -> None:
    failure = compat.migration_failure(rehearsed)
    applied = [m for m in rehearsed.applied if m.direction == "forwards" and not m.error]
    gate_measure(f"{len(applied)}/{len(rehearsed.plan.labels)} applied", "all, on the copy")
    assert failure is None, f"on the copy, migration {compat.explain_failure(failure)}"
    applied = [m.label for m in rehearsed.applied if m.direction == "forwards"]
    assert applied == rehearsed.plan.labels, f"applied {applied}, planned {rehearsed.plan.labels}"


def test_schema_changed_as_planned(rehearsed, gate_measure) -> None:
    announced = announced_changes(sql for step in rehearsed.plan.steps for sql in step.sql)
    diff = rehearsed.content_diff()
    seen_tables = set(diff.renamed_tables)
    seen_columns = {(old, new) for _, old, new in diff.renamed_columns}
    gate_measure(
        f"{len(seen_tables)} tables and {len(seen_columns)} columns renamed, {len(diff.added_columns)} columns added",
        "what the plan's SQL announces",
    )
    assert seen_tables == announced.renamed_tables, f"tables renamed {seen_tables}, plan says {announced.renamed_tables}"
    assert seen_columns == announced.renamed_columns, f"columns renamed {seen_columns}, plan says {announced.renamed_columns}"
    assert {c for _, c in diff.added_columns} == announced.added_columns, f"columns added {diff.added_columns}"
    assert set(diff.added_tables) <= announced.created_tables, f"tables added {diff.added_tables}"
    print(f"schema changes: tables renamed {sorted(seen_tables) or 'none'}, columns renamed {sorted(seen_columns) or 'none'}")


def test_no_row_lost_or_altered(rehearsed, gate_measure) -> None:
    announced = announced_changes(sql for step in rehearsed.plan.steps for sql in step.sql)
    diff = rehearsed.content_diff()
    unexplained = [p for p in diff.problems() if not any(p.endswith(f".{c} dropped") for c in announced.dropped_columns)]
    gate_measure(
        f"{len(unexplained)} tables changed ({len(diff.proven_by_rows)} proven row by row, "
        f"{len(diff.proven_by_statistics)} untouched by statistics)",
        "0",
    )
    for line in diff.proof():
        print(f"proven {line}")
    assert not unexplained, "content changed by the migration: " + "; ".join(unexplained)
    rows = sum(t.rows for t in rehearsed.after.values() if t.hashed)
    print(
        f"{len(diff.proven_by_rows)} tables, {rows:,} rows: row counts and content hashes equal "
        "(renames mapped by OID, columns by name, then number)"
    )
    for note in diff.notes():
        print(f"  {note}")
    for table, column in diff.retyped_columns:
        print(f"  {table}.{column}: type changed, every value the same as text")
    for added in diff.post_migrate_rows:
        print(f"  {added.describe()} (every row it had is unchanged)")
    for table in diff.content_type_renames:
        print(f"  {table}: a ContentType renamed with its model by Django's RenameContentType")


@pytest.mark.exercises(CANDIDATE_ON_NEW)
def test_orm_works_on_the_new_names(rehearsed, gate_measure, gate_results) -> None:
    # On its own schema only a schema error is the candidate's ORM failing; what its own code cannot do
    # with the probe's rows fails there too, so it is a coverage gap (deploygate.differential).
    judged = differential.on_own_schema(rehearsed.candidate_on_new_schema)
    models = len(rehearsed.candidate_on_new_schema)
    gate_measure(f"{len(judged.failed)} failed ORM operations on {models} models, {len(judged.gaps)} not exercisable", "0 failed")
    print(f"exercised: {rehearsed.scope_description} ({models} models)")
    for line in judged.gaps:
        print(f"  {line}")
    if judged.gaps:
        gate_results.notes.append(f"orm on the new names: {len(judged.gaps)} operations not exercisable: " + "; ".join(judged.gaps))
    # Scoped to what the plan changes, there may be no model to exercise; in a full sweep there must be.
    assert models or not rehearsed.full_sweep, "no model was exercised"
    assert not judged.failed, "the candidate's ORM fails on the migrated copy: " + "; ".join(judged.failed[:5])


@pytest.mark.reversal
def test_migrations_are_reversible(reversed_copy, rehearsed, gate_measure) -> None:
    assert reversed_copy.error is None, f"reversal failed: {reversed_copy.error}"
    diff = reversal_diff(rehearsed, reversed_copy)
    leftovers = diff.problems()
    gate_measure(f"{len(leftovers) + len(diff.renamed_tables) + len(diff.renamed_columns)} differences", "0 (identical content)")
    assert not leftovers and not diff.renamed_tables and not diff.renamed_columns, (
        f"after reversal the copy differs from production: {leftovers or diff.renamed_tables or diff.renamed_columns}"
    )
    print(f"reversed {[m.label for m in reversed_copy.applied]} in {reversed_copy.duration_s:.2f}s: content identical")
    for line in diff.proof():
        print(f"  proven {line}")
    for note in diff.notes():
        print(f"  {note}")
    for added in diff.post_migrate_rows:
        print(f"  kept: {added.describe()} (Django leaves them; harmless to the release serving now)")


def test_migration_cost_within_budget(rehearsed, settings, gate_measure) -> None:
    diff = rehearsed.content_diff()
    print(f"lock_timeout the deploy will use: {settings.lock_timeout_ms} ms")
    worst = []
    for migration in rehearsed.applied:
        exclusive = migration.exclusive_locks_ms()
        longest = max(exclusive.values(), default=0)
        print(
            f"  {migration.label}: {migration.duration_s:.3f}s, {migration.statements} statements, "
            f"ACCESS EXCLUSIVE on {sorted(exclusive) or 'nothing'} (longest {longest} ms)"
        )
        if migration.duration_s > settings.migration_budget_s:
            worst.append(f"{migration.label} took {migration.duration_s:.1f}s > {settings.migration_budget_s}s")
        if longest > settings.lock_budget_ms:
            worst.append(f"{migration.label} held ACCESS EXCLUSIVE {longest} ms > {settings.lock_budget_ms} ms")
    if diff.rewritten_tables:
        print(f"  tables rewritten: {diff.rewritten_tables}")
    slowest = max((m.duration_s for m in rehearsed.applied), default=0.0)
    longest_lock = max((max(m.exclusive_locks_ms().values(), default=0) for m in rehearsed.applied), default=0)
    gate_measure(
        f"{slowest:.2f} s, ACCESS EXCLUSIVE {longest_lock} ms", f"<= {settings.migration_budget_s} s, <= {settings.lock_budget_ms} ms"
    )
    assert not worst, "; ".join(worst)
