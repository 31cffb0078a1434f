"""Emergency stop: SIGINT, SIGTERM, or an abort requested through the ledger, rolls a deploy back at once.

While a deploy's steps run, those signals raise ``Aborted`` wherever the deploy is; the
runner rolls back exactly as after any failure. While the rollback runs, a signal is
noted and ignored: a rollback stopped half way is worse than none (SIGKILL still stops
it, and ``nox -s rollback`` converges from the ledger). ``request`` lets another process
or CI job stop a deploy it does not own: it writes an abort request to the ledger, which
the deploy's watcher sees within a second and turns into the same signal.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import signal
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

from deploygate import ledger
from deploygate.database import DatabaseAddress
from deploygate.errors import DeployGateError
from deploygate.log import Say

SIGNALS = (signal.SIGINT, signal.SIGTERM)
ABORT_KIND = "abort"
_POLL_S = 1.0


class Aborted(BaseException):
    """The deploy was told to stop (a BaseException, like KeyboardInterrupt: no ``except Exception`` swallows it)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@contextmanager
def raising(say: Say) -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Aborted`` in the main thread for the duration."""

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        say(f"!! {name} received: aborting")
        raise Aborted(name)

    with _handlers(handler):
        yield


@contextmanager
def deferred(say: Say) -> Iterator[None]:
    """SIGINT and SIGTERM are noted, not obeyed, for the duration (a rollback must finish)."""

    def handler(signum: int, _frame: object) -> None:
        say(f"!! {signal.Signals(signum).name} received during the rollback: it finishes first "
            "(SIGKILL stops it; `nox -s rollback` then converges)")  # fmt: skip

    with _handlers(handler):
        yield


@contextmanager
def _handlers(handler) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only: nothing to install elsewhere
        return
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def watching(db: DatabaseAddress, since: dt.datetime, say: Say) -> Iterator[None]:
    """While the block runs, an abort request in the ledger (newer than ``since``) signals this process."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(_POLL_S):
            try:
                requests = [e for e in ledger.entries(db, ABORT_KIND) if e.at >= since]
            except DeployGateError:
                continue  # the database blinked: the next poll asks again
            if requests:
                by = requests[-1].detail.get("by", "someone")
                say(f"!! abort requested by {by} through the ledger")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="deploygate-abort-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=_POLL_S * 2)


def request(db: DatabaseAddress, mirror_dir, reason: str) -> None:
    """Ask the deploy running on this production to abort (it rolls back); recorded with who asked and why."""
    by = f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"
    ledger.record(db, mirror_dir, ABORT_KIND, "requested", detail={"by": by, "reason": reason})
