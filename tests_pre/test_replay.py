"""Production's own requests, recorded by the proxy, replayed on copies: each release on each schema it may meet.

Against the baseline (the release serving now on the schema it has, run again where a direction
differs, to learn what is noise), a direction fails on any request it answers with another status
class or another shape (JSON keys and types): the message names each request (method, route, baseline status -> status
now) and the app's exception for it. What the ORM probe cannot see breaks here: raw SQL, a
template or serializer reading a renamed attribute, a database view. Without recorded requests
the checks are "not reported": shown, never counted as passed.
"""

from __future__ import annotations

import pytest

from deploygate import plan_facts, replay
from deploygate.errors import DeployGateError

pytestmark = pytest.mark.replay


def _judge(replayer, direction: str, gate_measure, gate_results) -> None:
    try:
        replayed = replayer.direction(direction)
    except DeployGateError as exc:
        pytest.fail(f"the replay could not run: {exc}", pytrace=False)
    agree, others = replayed.as_production()
    if agree < len(replayed.requests) * replay.AS_PRODUCTION_MIN:
        pytest.fail(
            f"the replay does not reproduce production: the baseline answered {agree} of {len(replayed.requests)} requests "
            f"as production did (e.g. {'; '.join(others)}), so a comparison with it shows nothing",
            pytrace=False,
        )
    found, _noise = replayed.differences(direction)
    text = replay.explain(replayed, direction)
    gate_results.details[replay.RUNS_DETAIL] = replay.run_seconds(replayed)
    gate_results.notes.append(f"replay ({direction}): {replay.summary(replayed, direction)}")
    # What the ORM probe flagged (the compatibility checks ran first): exercised by production's requests or not.
    compat = gate_results.details.get(plan_facts.COMPAT) or {}
    for facts in compat.get("directions", []):
        if facts["direction"] == replay.HAZARDS_OF.get(direction) and facts["findings"]:
            exposure = replay.hazard_exposure(replayed, direction, facts["findings"])
            gate_results.notes.extend(f"replay ({direction}): {line}" for line in exposure)
            text += "\n" + "\n".join(exposure)
    print(text)
    gate_measure(f"{len(found)} of {len(replayed.requests)} answered otherwise", "0")
    assert not found, text


def _nothing_recorded(not_reported, settings) -> None:
    if not (settings.replay_record and settings.replay_max_requests):
        not_reported("the replay is off (replay.record = 0 or replay.max_requests = 0)")
    not_reported("no request of production was recorded yet (the proxy records them; `deploygate record` shows them)")


@pytest.mark.replays(replay.PRODUCTION_ON_MIGRATED)
def test_replay_production_release_on_migrated_schema(replayer, dg_settings, gate_measure, gate_results, not_reported) -> None:
    """The release serving now, once the migration committed: until the switch, and after a rollback."""
    if replayer is None:
        _nothing_recorded(not_reported, dg_settings)
    _judge(replayer, replay.PRODUCTION_ON_MIGRATED, gate_measure, gate_results)


@pytest.mark.replays(replay.CANDIDATE_ON_MIGRATED)
def test_replay_candidate_on_migrated_schema(replayer, dg_settings, gate_measure, gate_results, not_reported) -> None:
    """The candidate as it serves after the switch."""
    if replayer is None:
        _nothing_recorded(not_reported, dg_settings)
    _judge(replayer, replay.CANDIDATE_ON_MIGRATED, gate_measure, gate_results)


@pytest.mark.replays(replay.CANDIDATE_ON_BEFORE)
def test_replay_candidate_on_schema_before(replayer, dg_settings, gate_measure, gate_results, not_reported) -> None:
    """The candidate on the schema before: where it reads from a replica that has not replayed the migration yet."""
    if replayer is None:
        _nothing_recorded(not_reported, dg_settings)
    if not (dg_settings.db_standbys or dg_settings.db_replicas):
        not_reported("the candidate serves only once the migration committed, and reads from no replica that could lag")
    _judge(replayer, replay.CANDIDATE_ON_BEFORE, gate_measure, gate_results)
