"""The app's cache across a schema change: namespaces per schema, the cache gate's verdict, the cache's spec."""

from __future__ import annotations

from deploygate import cache, cache_gate
from deploygate.config import load
from deploygate.database import DatabaseAddress
from deploygate.platform.images import Image
from deploygate.platform.specs import cache_spec
from deploygate.probe import MigrationPlan, PlanStep
from deploygate.redaction import secrets_of


def _step(app: str, name: str) -> PlanStep:
    return PlanStep(app, name, ["Rename"], ["RenameField"], True, True, [])


APPLIED = {"members": "0001_initial", "unified_db": "0022_link_audit", "sessions": None}
PLAN = MigrationPlan(
    steps=[_step("members", "0002_rename"), _step("unified_db", "0023_rename"), _step("unified_db", "0024_index")], applied_leaves=APPLIED
)


def test_each_schema_has_its_own_namespace_and_the_same_schema_the_same_one() -> None:
    namespaces = cache.Namespaces.of(PLAN)
    assert namespaces.before == cache.namespace(APPLIED) and namespaces.before != namespaces.after
    assert cache.target_leaves(PLAN) == {"members": "0002_rename", "unified_db": "0024_index", "sessions": None}
    assert namespaces.after == cache.namespace({"unified_db": "0024_index", "members": "0002_rename"})  # order and empty apps aside
    assert namespaces.before.startswith("s") and len(namespaces.before) == 13


def test_a_plan_that_applies_nothing_keeps_the_namespace_shared() -> None:
    assert cache.Namespaces.of(MigrationPlan(steps=[], applied_leaves=APPLIED)).shared


def test_the_apps_environment_names_the_cache_and_the_namespace_by_the_configured_variables(tmp_path) -> None:
    settings = load(environ={}, root=tmp_path, overrides={"cache_url_env": "REDIS_URL", "cache_service": "redis"})
    assert cache.environment(settings, "redis://c:6379/0", "s123") == {
        "REDIS_URL": "redis://c:6379/0",
        "DEPLOYGATE_CACHE_NAMESPACE": "s123",
    }
    assert cache.environment(settings, "redis://c:6379/0", None) == {"REDIS_URL": "redis://c:6379/0"}
    assert cache.configured(settings) and not cache.configured(load(environ={}, root=tmp_path))


def test_the_cache_password_is_a_secret_and_never_shown() -> None:
    settings = load(environ={"DEPLOYGATE_DB_PASSWORD": "dbpw"}, overrides={"cache_url": "redis://:s%40cret@cache.internal:6379/0"})
    assert "s@cret" in secrets_of(settings, DatabaseAddress("h", 5432, "d", "u", "dbpw"))
    assert cache.redacted(settings.cache_url) == "redis://***@cache.internal:6379/0"


def test_the_namespace_pattern_escapes_what_a_glob_would_read() -> None:
    assert cache._pattern("s1a") == "s1a:*" and cache._pattern("a*b[1]") == "a\\*b\\[1\\]:*"


def test_productions_redis_keeps_nothing_on_disk_and_evicts_at_its_limit() -> None:
    spec = cache_spec(load(environ={}, overrides={"project": "shop"}), Image(tag="deploygate/redis:7", id="sha256:r", built=False))
    assert spec.name == "shop_cache" and spec.role == "cache" and spec.networks == ("shop_net",)
    command = " ".join(spec.command)
    assert "--save  --appendonly no" in command.replace('""', "") and "--maxmemory-policy allkeys-lru" in command
    assert spec.readiness.command == ("redis-cli", "ping") and not spec.mounts


def _exchange(writer_key: str, reader_key: str, *reads: cache_gate.CacheRead) -> cache_gate.Exchange:
    return cache_gate.Exchange("v1", "v2", "sA", "sB", writer_key, reader_key, tuple(reads))


def test_releases_with_different_keys_pass_by_missing_every_entry() -> None:
    exchanged = _exchange("sA:1:p", "sB:1:p", cache_gate.CacheRead("k", "missed"))
    assert exchanged.separated and exchanged.passed and "different keys" in exchanged.summary()


def test_a_shared_key_fails_on_an_entry_that_breaks_or_carries_another_schemas_fields() -> None:
    exchanged = _exchange(
        "bmp:1:p",
        "bmp:1:p",
        cache_gate.CacheRead("k1", "error", error="LookupError: App 'members' doesn't have a 'FahanieCaresMember' model."),
        cache_gate.CacheRead("k2", "read", differences=("unified_db.PersonLink lacks bm_parliament_member_id",)),
        cache_gate.CacheRead("k3", "read"),
    )
    assert not exchanged.separated and not exchanged.passed and len(exchanged.problems) == 2
    text = exchanged.explain()
    assert "FahanieCaresMember" in text and "bm_parliament_member_id" in text and "KEY_PREFIX" in text
    assert "read 3 of 3 entries" in exchanged.summary()


def test_a_shared_key_passes_when_every_entry_reads_as_the_readers_own() -> None:
    assert _exchange("bmp:1:p", "bmp:1:p", cache_gate.CacheRead("k", "read")).passed


def test_the_window_notes_when_the_cache_stopped_answering_and_when_it_never_did(monkeypatch) -> None:
    from deploygate.deploy.monitoring import CacheWatch

    answers = iter([None, "the cache at redis://c:6379/0 did not answer: ConnectionError: refused", None])
    watch = CacheWatch(lambda: next(answers), every_s=0.0)
    clock = iter([100.0, 100.0, 104.0, 104.0, 108.0, 108.0])
    monkeypatch.setattr("deploygate.deploy.monitoring.time.time", lambda: next(clock))
    for _ in range(3):
        watch.observe()
    note = watch.note(switched_at=100.0)
    assert watch.checks == 3 and note is not None
    assert "did not answer 1 of 3 checks (from 4s to 4s after the switch)" in note and "ConnectionError" in note
    assert CacheWatch(lambda: None).note(switched_at=0.0) is None
