"""The app's cache across a schema change: one namespace per schema, handed to each color, dropped on rollback.

A release caches model instances pickled (Django's cache framework does): an instance
pickled by one release names its model class and carries its fields' attribute names,
so the release on the other schema reads a class it lacks, or fields it does not have
under that name (django-waffle#546). deploygate gives every schema its own namespace,
a hash of the leaf migrations the schema is at, in the variable ``cache.namespace_env``:
the app's ``CACHES`` use it as ``KEY_PREFIX`` (the README's recipe), so the candidate
starts on an empty namespace of its own and a rollback returns the previous release to
its own entries, while the candidate's are dropped.

The namespace is derived from the migration state, not from the release's name: two
releases on one schema share their entries (a release that changes no model keeps a
warm cache), two schemas never do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploygate.errors import DeployGateError

if TYPE_CHECKING:
    from deploygate.config import Settings
    from deploygate.probe_results import MigrationPlan

REDIS_PORT = 6379
# SCAN's page: large enough that a namespace of a million keys is a few hundred round trips.
_SCAN_COUNT = 1000
# A cache that does not answer within this is down, for the monitor and the rollback alike.
_SOCKET_TIMEOUT_S = 2.0


class CacheError(DeployGateError):
    """The cache could not be reached or refused a command (its message never shows a password)."""


@dataclass(frozen=True)
class CacheUrls:
    """One cache as the app's containers reach it (``app``) and as this host does (``host``)."""

    app: str
    host: str


def configured(settings: Settings) -> bool:
    """Whether production has a cache deploygate knows of: one it runs (``cache.service``) or the team's (``cache.url``)."""
    return settings.cache_service != "none" or bool(settings.cache_url)


def namespace(leaves: Mapping[str, str | None]) -> str:
    """The cache namespace of the schema at ``leaves`` (per app, its latest applied migration): ``s`` and 12 hex digits.

    Apps with nothing applied count as absent, so a schema's namespace does not change when
    an app without migrations is installed.
    """
    applied = sorted((app, name) for app, name in leaves.items() if name)
    return "s" + hashlib.sha256(json.dumps(applied).encode()).hexdigest()[:12]


def target_leaves(plan: MigrationPlan) -> dict[str, str | None]:
    """The leaves the schema is at once ``plan`` is applied: each app's last step, else what is applied now."""
    leaves = dict(plan.applied_leaves)
    for step in plan.steps:  # in the order they apply: the last of an app is its leaf
        leaves[step.app] = step.name
    return leaves


@dataclass(frozen=True)
class Namespaces:
    """The namespace of the schema production is at (the serving release's) and of the schema the plan leads to."""

    before: str
    after: str

    @classmethod
    def of(cls, plan: MigrationPlan) -> Namespaces:
        return cls(before=namespace(plan.applied_leaves), after=namespace(target_leaves(plan)))

    @property
    def shared(self) -> bool:
        """A plan that changes no migration state: both releases read the same entries."""
        return self.before == self.after


def environment(settings: Settings, url: str, namespace_: str | None) -> dict[str, str]:
    """What the app's containers are given: where the cache is, and the namespace of their schema (when known)."""
    values = {settings.cache_url_env: url}
    if namespace_:
        values[settings.cache_namespace_env] = namespace_
    return values


def redacted(url: str) -> str:
    """``url`` without its password, for a log line."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"


def _client(url: str):
    # redis-py: the client Django's own RedisCache uses, so deploygate speaks to the cache as the app does.
    import redis

    return redis.Redis.from_url(url, socket_timeout=_SOCKET_TIMEOUT_S, socket_connect_timeout=_SOCKET_TIMEOUT_S)


def _failed(url: str, exc: Exception) -> CacheError:
    return CacheError(f"the cache at {redacted(url)} did not answer: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def ping(url: str) -> str | None:
    """None when the cache at ``url`` answers, else why not (one line)."""
    import redis

    try:
        _client(url).ping()
    except (redis.RedisError, OSError) as exc:
        return str(_failed(url, exc))
    return None


def _pattern(namespace_: str) -> str:
    # Django's keys are KEY_PREFIX:VERSION:key; a glob's special characters in the prefix match themselves.
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in namespace_) + ":*"


def count_keys(url: str, namespace_: str) -> int:
    """How many keys the namespace holds. Raises ``CacheError`` when the cache does not answer."""
    import redis

    try:
        return sum(1 for _ in _client(url).scan_iter(match=_pattern(namespace_), count=_SCAN_COUNT))
    except (redis.RedisError, OSError) as exc:
        raise _failed(url, exc) from None


def drop_namespace(url: str, namespace_: str) -> int:
    """Remove every key of ``namespace_`` (UNLINK: freed in the background) and return how many.

    Raises ``CacheError`` when the cache does not answer.
    """
    import redis

    client = _client(url)
    dropped = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=_pattern(namespace_), count=_SCAN_COUNT):
            batch.append(key)
            if len(batch) >= _SCAN_COUNT:
                dropped += client.unlink(*batch)
                batch = []
        if batch:
            dropped += client.unlink(*batch)
    except (redis.RedisError, OSError) as exc:
        raise _failed(url, exc) from None
    return dropped
