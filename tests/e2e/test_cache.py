"""The app's cache across a deploy: its namespaces per schema, the cache gate, a rollback's cleanup, the cache down.

The e2e production runs one (deploy.toml: ``cache.service = "redis"``), and the demo caches each link's
detail there, pickled. v1 caches under one fixed prefix (an app before the recipe); v2-safe under the
namespace deploygate hands it; v2-shared-cache is v2-safe under v1's fixed prefix. Each test leaves
production on v1 (blue), as the next one expects.
"""

from __future__ import annotations

import re

from deploygate import cache
from tests.e2e.conftest import report_of


def _namespaces(notes: list[str]) -> tuple[str, str]:
    """The serving release's and the candidate's namespaces, as the deploy's report says them."""
    for note in notes:
        found = re.search(r"caches under (s[0-9a-f]{12}), the candidate under (s[0-9a-f]{12})", note)
        if found:
            return found.group(1), found.group(2)
    raise AssertionError(f"the report names no cache namespaces: {notes}")


def test_the_predeploy_stops_a_release_that_caches_under_the_serving_releases_prefix(dg) -> None:
    run = dg.run("predeploy", "--candidate", "v2-shared-cache")
    assert run.code != 0, run.output[-3000:]
    out = run.output
    # Every other check passes it: v2-safe's migrations, compatible on either schema.
    assert "test_candidate_reads_what_production_cached FAILED" in out or "FAILED" in out, out[-3000:]
    for check in ("test_candidate_reads_what_production_cached", "test_production_reads_what_the_candidate_cached"):
        assert re.search(rf"{check}\S* FAILED|FAILED \S*{check}", out), f"{check} did not fail:\n{out[-4000:]}"
    for passed in ("test_production_release_works_on_the_new_schema", "test_candidate_works_on_the_old_schema"):
        assert not re.search(rf"FAILED \S*{passed}", out), f"{passed} failed: the release is meant to be compatible"
    # The switch's direction: v2-shared-cache unpickles v1's member, a class it lacks; v1's link, a field under another name.
    assert "FahanieCaresMember" in out and "KEY_PREFIX" in out, out[-4000:]
    assert "bm_parliament_member_id" in out or "fahanie_cares_member_id" in out, out[-4000:]
    summary = [line.strip() for line in out.splitlines() if re.search(r"read \d+ of \d+ entries", line)]
    print("\nv2-shared-cache, cache gate:\n  " + "\n  ".join(dict.fromkeys(summary)))


def test_the_cache_down_in_the_window_is_noted_not_blamed_and_a_rollback_drops_the_candidates_entries(
    dg, traffic, platform, assert_back_on_v1
) -> None:
    container = platform.client.containers.get(platform.names.cache)
    try:
        run = dg.act_after("== monitor", lambda: container.stop(timeout=5), "deploy", "--candidate", "v2-safe", monitor_window_s="15")
    finally:
        container.start()
    assert run.code == 0, run.output[-3000:]
    record = report_of(run.output)["record"]
    before, after = _namespaces(record["notes"])
    assert before != after
    down = [note for note in record["notes"] if "the cache did not answer" in note]
    assert down and record["outcome"] == "succeeded", record["notes"]
    urls = platform.cache_urls()
    assert urls is not None and cache.ping(urls.host) is None
    back = dg.run("rollback")
    assert back.code == 0, back.output[-3000:]
    rollback = report_of(back.output)["record"]
    dropped = [note for note in rollback["notes"] if note.startswith("cache: dropped")]
    assert dropped and after in dropped[0], rollback["notes"]
    assert cache.count_keys(urls.host, after) == 0, f"keys of {after} left after the rollback"
    responses = traffic.stop()
    unanswered = [r for r in responses if r.status == 0 or r.status >= 500]
    assert not unanswered, f"{len(unanswered)} requests failed, e.g. {unanswered[0]}"
    assert_back_on_v1([r.created_id for r in responses if r.created_id is not None])
    print(f"\ncache stopped in the window: {record['outcome']}; {down[0]}")
    print(f"rollback: {dropped[0]}; {len(responses)} requests, 0 failed")
