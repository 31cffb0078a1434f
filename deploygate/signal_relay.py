"""The process that runs a deploy (nox, a CI step's entry process) passes every stop signal on, then waits.

Why: however a deploy is stopped, deploygate must hear it and be given the time to put
traffic back. Left to itself, nox gives its child 0.3 s after Ctrl-C, then SIGTERM, then
SIGKILL 0.2 s later; on SIGTERM or SIGHUP it dies at once (and as a container's PID 1,
everything in the container dies with it); a CI runner's cancel signals only the step's
entry process, so the deploy under it never hears of it. Inside ``relaying_signals()``
the process instead passes SIGINT, SIGTERM and SIGHUP to its children and keeps waiting
for them; deploygate takes the first as the order to roll back and notes the repeats.
Standard library only: the noxfile imports it before anything else is installed.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Ctrl-C; CI runners, docker stop and Kubernetes; a closed terminal or a dropped ssh session.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def children(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The live processes whose parent is ``pid``.

    Read by hand from /proc/<pid>/stat (psutil is not a dependency, and its fourth field,
    the parent's pid, is all it takes); a process that ends while being read is skipped.
    """
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (command) state ppid ...": the command may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def relay(signum: int, _frame: object = None) -> None:
    """Pass ``signum`` on to this process's children (those already gone are skipped)."""
    for child in children(os.getpid()):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass


@contextmanager
def handling(handler: Callable[[int, object], None]) -> Iterator[None]:
    """For the duration, ``handler`` answers SIGINT, SIGTERM and SIGHUP; the previous handlers come back afterwards."""
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
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP that arrive during the block are handled at its end, by the handlers in place before it.

    For one request that creates something (a container): a signal in the middle of it would leave
    what the engine created with nobody knowing its id; held, it lands once the id is known.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only: nothing to hold here
        return
    held: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: held.append(signum)) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        for signum in held:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)  # the default action, now that the block is over


def relaying_signals():
    """For the duration, SIGINT, SIGTERM and SIGHUP are passed on to this process's children and
    do not stop it; the previous handlers are restored afterwards."""
    return handling(relay)


def interrupting_once() -> Callable[[int, object], None]:
    """A handler that raises ``KeyboardInterrupt`` on the first of SIGINT, SIGTERM and SIGHUP and ignores the rest.

    For a gate's pytest: one stop reaches it several times (the terminal's signal to the process group,
    then the same one relayed by nox and by deploygate), and a second interrupt in the middle of the
    first one's cleanup would leave a copy's container or a job behind. SIGTERM and SIGHUP, which
    would kill it outright, get the same cleanup as Ctrl-C.
    """
    received: list[int] = []

    def handler(signum: int, _frame: object = None) -> None:
        if received:
            return
        received.append(signum)
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")

    return handler
