"""One polling helper with a deadline, used wherever deploygate waits for something."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from deploygate.errors import WaitTimeout

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str,
    last_seen: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns a truthy value and return that value.

    ``probe`` may raise: the exception counts as "not yet" and its text becomes the
    last thing seen. Raises ``WaitTimeout`` after ``timeout`` seconds naming ``what``
    was awaited and what was last seen (``last_seen()`` if given, e.g. container logs).
    """
    deadline = time.monotonic() + timeout
    seen = "nothing yet"
    while True:
        try:
            result = probe()
            if result:
                return result
            seen = repr(result)
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not ready yet"
            seen = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if time.monotonic() >= deadline:
            detail = last_seen() if last_seen else seen
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {detail}")
        time.sleep(interval)
