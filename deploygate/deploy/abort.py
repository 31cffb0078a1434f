"""Emergency stop: SIGINT, SIGTERM, SIGHUP, or an abort requested through the ledger, rolls a deploy back at once.

While a deploy's steps run, the first of those signals raises ``Aborted`` wherever the
deploy is; the runner rolls back exactly as after any failure, traffic first. Every later
signal, and any signal while the rollback runs, is noted and ignored: senders repeat
themselves (a terminal's Ctrl-C reaches nox and deploygate both, and nox relays it), and a
rollback stopped half way is worse than none (SIGKILL still stops it, and the next
command converges from the ledger). SIGHUP means the terminal is gone: the console is
detached so that no later line can fail on it; the log file keeps everything.
``request`` lets another process or CI job stop a deploy it does not own: it writes an
abort request to the ledger, which the deploy's watcher sees within a second and turns
into the same signal.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from deploygate import ledger
from deploygate.database import DatabaseAddress
from deploygate.deploy.services import Ledger
from deploygate.errors import DeployGateError
from deploygate.log import Say
from deploygate.signal_relay import handling

ABORT_KIND = "abort"
_POLL_S = 1.0


class Aborted(BaseException):
    """The deploy was told to stop (a BaseException, like KeyboardInterrupt: no ``except Exception`` swallows it)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@contextmanager
def raising(say: Say) -> Iterator[None]:
    """The first SIGINT, SIGTERM or SIGHUP raises ``Aborted`` in the main thread; later ones are only noted."""
    raised = []

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        _detach_console_on_hangup(signum)
        if raised:
            say(f"!! {name} received: already aborting")
            return
        raised.append(name)
        say(f"!! {name} received: aborting")
        raise Aborted(name)

    with handling(handler):
        yield


@contextmanager
def deferred(say: Say) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP are noted, not obeyed, for the duration (a rollback must finish)."""

    def handler(signum: int, _frame: object) -> None:
        _detach_console_on_hangup(signum)
        say(
            f"!! {signal.Signals(signum).name} received during the rollback: it finishes first "
            "(SIGKILL stops it; `nox -s rollback` then converges)"
        )

    with handling(handler):
        yield


def _detach_console_on_hangup(signum: int) -> None:
    """After SIGHUP the terminal is gone: writing to it fails (EIO), so stdout and stderr go to /dev/null."""
    if signum != signal.SIGHUP:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)


@contextmanager
def watching(db: DatabaseAddress, since: dt.datetime, say: Say, the_ledger: Ledger = ledger) -> Iterator[None]:
    """While the block runs, an abort request in ``the_ledger`` (newer than ``since``) signals this process."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(_POLL_S):
            try:
                requests = [e for e in the_ledger.entries(db, ABORT_KIND) if e.at >= since]
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
