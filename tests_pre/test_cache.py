"""What each release reads from the other's cache: the switch's direction and the rollback's.

Both releases run on the migrated copy with the app's own CACHES pointed at a scratch Redis,
each given its schema's namespace as deploy gives it (``deploygate.cache``). On failure the
message names every entry that breaks the reader and why (a class it lacks, a field under
another name), and the recipe that keeps the schemas apart. Without a cache in production
(cache.service, cache.url) they are "not reported": shown, never counted as passed.
"""

from __future__ import annotations

import pytest

from deploygate import cache, cache_gate, scope
from deploygate.errors import DeployGateError

pytestmark = pytest.mark.cache


@pytest.fixture(scope="session")
def cache_exchanges(request, platform, dg_settings, candidate_image, gate_results, progress):
    """Both directions through one scratch Redis, each under its own keys; None without a cache in production
    (then nothing else is asked for: no rehearsal, no copy)."""
    if not cache.configured(dg_settings):
        return None
    production_image = request.getfixturevalue("production_image")
    rehearsed = request.getfixturevalue("rehearsed")
    db_copy = request.getfixturevalue("db_copy")
    namespaces = cache.Namespaces.of(rehearsed.plan)
    old = cache_gate.Side(production_image, namespaces.before)
    new = cache_gate.Side(candidate_image, namespaces.after)
    spec = scope.probe_scope(rehearsed.plan, dg_settings.compat_scope)
    progress(f"cache: {production_image.tag} and {candidate_image.tag} exchange cached objects through a scratch Redis...")
    try:
        image = platform.service_image("cache", progress)
        with platform.scratch_cache(image.id, db_copy.scratch.database.network) as urls:
            exchanges = {
                "switch": cache_gate.exchange(platform, dg_settings, db_copy, urls.app, old, new, scope=spec, direction="switch"),
                "rollback": cache_gate.exchange(platform, dg_settings, db_copy, urls.app, new, old, scope=spec, direction="rollback"),
            }
    except DeployGateError as exc:
        pytest.fail(f"the cache exchange could not run: {exc}", pytrace=False)
    for name, exchanged in exchanges.items():
        gate_results.notes.append(f"cache ({name}): {exchanged.summary()}")
    return exchanges


def _judge(exchanges, direction: str, gate_measure, not_reported) -> None:
    if exchanges is None:
        not_reported("production has no cache deploygate knows of (cache.service, cache.url)")
    exchanged = exchanges[direction]
    print(exchanged.explain())
    gate_measure(f"{len(exchanged.problems)} broken of {len(exchanged.reads)} entries", "0 broken")
    assert exchanged.passed, exchanged.explain()


def test_candidate_reads_what_production_cached(cache_exchanges, gate_measure, not_reported) -> None:
    _judge(cache_exchanges, "switch", gate_measure, not_reported)


def test_production_reads_what_the_candidate_cached(cache_exchanges, gate_measure, not_reported) -> None:
    _judge(cache_exchanges, "rollback", gate_measure, not_reported)
