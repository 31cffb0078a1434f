"""Objects cached as most Django apps cache them: pickled model instances, through the cache framework.

A link's detail is cached whole (the PersonLink with its member): read back, it is the very
instance the release pickled, class and field names included; on another schema's release
that is exactly what breaks unless each schema caches under its own namespace (settings.py).
A cache that does not answer is not an outage: the database answers, a warning is logged, and
the cache is left alone for a few seconds (each attempt on a stopped one costs its timeout).
Only the cache's own failures fall back; an entry that cannot be unpickled is the app's
error to see, as it would be in production.
"""

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)
# How long a cached object lives: short, as the demo's objects are read right after they are written.
TIMEOUT_S = 60
# How long a worker reads the database alone after the cache failed to answer.
BACKOFF_S = 5.0
_skip_until = [0.0]


def _cache_down(exc):
    """The cache's own failures (connection refused, timed out), as opposed to an entry's."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # no Redis client: the local-memory cache never fails this way
        return False
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))


def _back_off(exc, doing):
    _skip_until[0] = time.monotonic() + BACKOFF_S
    logger.warning("cache unavailable (%s), %s for %.0fs: %s", type(exc).__name__, doing, BACKOFF_S, exc)


def cached(key, fetch):
    """The object at ``key``, else ``fetch()`` (cached when it found something)."""
    if time.monotonic() < _skip_until[0]:
        return fetch()
    try:
        found = cache.get(key)
    except Exception as exc:
        if not _cache_down(exc):
            raise
        _back_off(exc, "reading the database")
        return fetch()
    if found is not None:
        return found
    value = fetch()
    if value is not None:
        try:
            cache.set(key, value, TIMEOUT_S)
        except Exception as exc:
            if not _cache_down(exc):
                raise
            _back_off(exc, "not caching")
    return value
