"""Old and new code on each other's schema: what the blue-green overlap really asks of a release.

Both directions are judged on the rehearsal copy; on failure the message names every
model and field that breaks, with the database's words, and the safe way to make the
change. ``--safe-migrations-dir DIR`` also writes the state-only version of the plan's
renames there, for review.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploygate import compat, plan_facts
from deploygate.rehearsal import EXERCISES

# Every exercise: each release on the other schema is judged against itself on its own.
pytestmark = [pytest.mark.compat, pytest.mark.exercises(*sorted(EXERCISES))]


@pytest.fixture(scope="module")
def verdict(rehearsed, gate_results) -> compat.Verdict:
    judged = compat.judge(rehearsed)
    print(judged.explain(rehearsed.plan))
    if judged.gaps:
        gate_results.notes.append(f"compat: {len(judged.gaps)} operations not exercisable (never a failure): " + "; ".join(judged.gaps))
    gate_results.details[plan_facts.COMPAT] = plan_facts.compat_facts(judged, rehearsed.plan)
    return judged


@pytest.fixture(scope="module")
def _write_safe_migrations(pytestconfig, verdict, platform, settings, rehearsed, db_copy) -> None:
    target = pytestconfig.getoption("--safe-migrations-dir")
    if verdict.compatible or not target:
        return
    files = db_copy.prober(platform, settings, rehearsed.candidate).safe_migrations(rehearsed.plan.labels)
    for relative, text in files.items():
        path = Path(target) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote the safe form of {relative} to {path} (review it, then replace the candidate's migration)")


def _counted(items: list[compat.Incompatibility]) -> str:
    """Incompatibilities counted by root cause, each cause once: "1 incompatibilities (7 failing checks)"."""
    causes = len(compat.by_cause(items))
    return f"{causes} incompatibilities" + (f" ({len(items)} failing checks)" if len(items) != causes else "")


def test_production_release_works_on_the_new_schema(verdict, rehearsed, _write_safe_migrations, gate_measure) -> None:
    gate_measure(f"{_counted(verdict.production_on_new)}, {len(verdict.gaps)} not exercisable", "0 incompatibilities")
    assert not verdict.production_on_new, verdict.explain(rehearsed.plan)


def test_candidate_works_on_the_old_schema(verdict, rehearsed, _write_safe_migrations, gate_measure) -> None:
    gate_measure(f"{_counted(verdict.candidate_on_old)}, {len(verdict.gaps)} not exercisable", "0 incompatibilities")
    assert not verdict.candidate_on_old, verdict.explain(rehearsed.plan)
