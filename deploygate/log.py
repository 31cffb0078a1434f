"""The deploy's log: every line on the terminal and in logs/deployment_<stamp>.log, secrets redacted."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

# Progress and log lines go to a callable taking one line: print, a DeployLog, or a no-op.
Say = Callable[[str], None]


def quiet(_message: str) -> None:
    """A ``Say`` that says nothing."""


class DeployLog:
    """``log(message)`` prints and appends; any registered secret is replaced by *** everywhere."""

    def __init__(self, path: Path, secrets: list[str], *, echo: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._secrets = [s for s in secrets if s]
        self._echo = echo

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {self.redact(message)}"
        if self._echo:
            try:
                print(line, flush=True)
            except OSError:
                # The reader is gone (a closed terminal, a killed CI runner): the deploy, and
                # its rollback, must go on; the log file below keeps every line.
                self._echo = False
        with self.path.open("a") as handle:
            handle.write(line + "\n")
