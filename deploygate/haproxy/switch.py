"""The proxy's decisions: route to a color, hold, release, drain, re-apply; written to disk first, then applied.

A switch is a runtime API command, never a reload: no client connection is closed, a
keep-alive client's next request simply goes to the other backend.
"""

from __future__ import annotations

from deploygate.errors import ProxyError, WaitTimeout
from deploygate.haproxy.config import STATE_IN_CONTAINER, _check_color
from deploygate.haproxy.runtime import _answers, api, in_flight, ready_servers, recheck
from deploygate.haproxy.state import ProxyDirs, RoutingState, _state_from_entries, current, write_state
from deploygate.waiting import wait_until


def _wait(probe, *, timeout_s: float, interval_s: float, what: str, failure: str):
    """deploygate's one polling helper, with a proxy that does not answer yet counted as "not yet".

    Returns what ``probe`` returned; raises ``ProxyError`` starting with ``failure`` at the deadline.
    """
    try:
        return wait_until(probe, timeout=timeout_s, interval=interval_s, what=what, transient=(ProxyError,))
    except WaitTimeout as exc:
        raise ProxyError(f"{failure}: {exc}") from None


def wait_answering(dirs: ProxyDirs, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Wait until the proxy's runtime API answers; returns ``show info``. Raises ``ProxyError`` naming the last failure."""
    return _wait(
        lambda: api(dirs).info(), timeout_s=timeout_s, interval_s=0.2, what="HAProxy's runtime API", failure="HAProxy does not answer"
    )


def wait_drained(dirs: ProxyDirs, color: str, *, timeout_s: float = 30.0) -> None:
    """Wait until no request is in flight at ``color`` (after routing away from it, before stopping it).

    Raises ``ProxyError`` if requests are still in flight after ``timeout_s``.
    """
    _wait(
        lambda: in_flight(dirs, color) == 0,
        timeout_s=timeout_s,
        interval_s=0.1,
        what=f"no request in flight at {color}",
        failure=f"{color} still has requests in flight",
    )


def _apply(dirs: ProxyDirs, state: RoutingState) -> None:
    """Make the running proxy route as ``state``, then read it back.

    Order matters between the two keys: a hold goes on before the color changes and
    comes off after, so no request reaches a color the caller meant to hold back.
    """
    client = api(dirs)
    entries = state.entries()
    order = ("hold", "color") if state.held else ("color", "hold")
    for key in order:
        client.set(f"set map {STATE_IN_CONTAINER} {key} {entries[key]}")
    applied = _state_from_entries(client.map_entries(), "the running proxy")
    if applied != state:
        raise ProxyError(f"HAProxy routes as {applied} after being told {state}")


def _change(dirs: ProxyDirs, state: RoutingState) -> RoutingState:
    """Write ``state`` to disk, then apply it at runtime.

    The file is the intent: if applying fails (the proxy is down or restarting), the proxy
    routes as the file says when it starts, and ``reapply`` converges a running one.
    """
    write_state(dirs, state)
    try:
        _apply(dirs, state)
    except ProxyError as exc:
        raise ProxyError(f"{exc} (written to {dirs.state_file}: the proxy routes so at its next start, or after reapply)") from None
    return state


def _on_disk(dirs: ProxyDirs) -> RoutingState:
    state = current(dirs)
    if state is None:
        raise ProxyError(f"no routing state at {dirs.state_file}: the proxy was never prepared")
    return state


def route(dirs: ProxyDirs, color: str, *, ready_timeout_s: float = 30.0, fresh: bool = False) -> RoutingState:
    """Send every new request to ``color`` without reloading: in-flight requests finish where they are.

    Waits up to ``ready_timeout_s`` for the running proxy to answer and for ``color`` to
    have a server accepting connections, and changes nothing if it never does; ``fresh``:
    only by a health check made after this call (``recheck``: for a color just started
    again). A hold that is on stays on (``release_hold`` then serves ``color``). Returns
    the new state. Raises ``ProxyError``.
    """
    _check_color(color)
    serving = current(dirs)
    # A proxy that does not answer yet starts afresh anyway: it has no state to forget.
    if fresh and serving is not None and serving.color != color and _answers(dirs):
        recheck(dirs, color)
    _wait(
        lambda: ready_servers(dirs, color),
        timeout_s=ready_timeout_s,
        interval_s=0.2,
        what=f"a server of {color} to be up in the proxy",
        failure=f"not routing to {color}, nothing changed",
    )
    return _change(dirs, RoutingState(color=color, hold_s=_on_disk(dirs).hold_s))


def hold(dirs: ProxyDirs, retry_after_s: int) -> RoutingState:
    """Answer every new request 503 with ``Retry-After: retry_after_s`` from the proxy itself (logged as "hold").

    Requests already at a color finish. Returns the new state. Raises ``ProxyError``.
    """
    return _change(dirs, RoutingState(color=_on_disk(dirs).color, hold_s=retry_after_s))


def release_hold(dirs: ProxyDirs) -> RoutingState:
    """End a hold: requests go to the color of the state again. Returns the new state. Raises ``ProxyError``."""
    return _change(dirs, RoutingState(color=_on_disk(dirs).color))


def reapply(dirs: ProxyDirs) -> RoutingState:
    """Make the running proxy route as the state on disk says (after a crash between write and apply).

    Returns that state. Raises ``ProxyError``.
    """
    state = _on_disk(dirs)
    _apply(dirs, state)
    return state
