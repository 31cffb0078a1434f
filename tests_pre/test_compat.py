"""Old and new code on each other's schema: what blue-green overlap really asks of a release."""

from __future__ import annotations


def _failures(exercises) -> list[str]:
    return [f"{m.model}.{c.get('field') or c['op']} ({c['op']}): {c['error']}" for m in exercises for c in m.failures]


def test_production_release_works_on_the_new_schema(rehearsed) -> None:
    failures = _failures(rehearsed.production_on_new_schema)
    assert rehearsed.production_on_new_schema, "no model of the production release was exercised"
    assert not failures, (
        f"the release serving now breaks once {', '.join(rehearsed.plan.labels)} runs: " + "; ".join(failures[:6])
    )


def test_candidate_works_on_the_old_schema(rehearsed) -> None:
    failures = _failures(rehearsed.candidate_on_old_schema)
    assert not failures, "the candidate breaks on the schema before migrating: " + "; ".join(failures[:6])
