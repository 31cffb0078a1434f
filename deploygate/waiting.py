"""One polling helper with a deadline, used wherever deploygate waits for something."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from deploygate.errors import WaitTimeout

T = TypeVar("T")

# Connection refused or reset, a timeout (requests' errors are OSErrors too): the thing
# awaited is not up yet. Anything else is a real failure and ends the wait at once.
TRANSIENT: tuple[type[BaseException], ...] = (OSError,)


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str,
    last_seen: Callable[[], str] | None = None,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
) -> T:
    """Call ``probe`` until it returns a truthy value and return that value.

    An exception of a ``transient`` type counts as "not yet" (its text becomes the last
    thing seen); any other exception propagates at once: a container that has exited
    will not become healthy by waiting. Raises ``WaitTimeout`` after ``timeout`` seconds
    naming what was awaited and what was last seen (``last_seen()`` if given, e.g. logs).
    """
    deadline = time.monotonic() + timeout
    seen = "nothing yet"
    while True:
        try:
            result = probe()
            if result:
                return result
            seen = repr(result)
        except transient as exc:
            seen = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if time.monotonic() >= deadline:
            detail = last_seen() if last_seen else seen
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {detail}")
        time.sleep(interval)
