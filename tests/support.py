"""Small helpers shared by the test tiers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# Parallel checkouts on one engine (git worktrees) set this so their Docker objects never collide.
SUFFIX_ENV = "DGTEST_SUFFIX"


def project_name(base: str) -> str:
    """The Docker project name a test tier uses: ``base`` plus this checkout's suffix, if any."""
    return base + os.environ.get(SUFFIX_ENV, "")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mark_integration(items: list[pytest.Item], folder: str) -> None:
    """Everything under ``folder`` needs the engine: mark it so ``-m "not integration"`` leaves it out."""
    for item in items:
        if f"tests/{folder}/" in item.nodeid:
            item.add_marker(pytest.mark.integration)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[tuple[ThreadingHTTPServer, str]]:
    """An HTTP server of ``handler`` on a loopback port, in a thread, for the block: (server, base URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@contextmanager
def stacks_on_failure(process: subprocess.Popen, seen: list[str]) -> Iterator[None]:
    """While the block reads ``process``'s output into ``seen``: when it fails (pytest-timeout's alarm on a hang
    included), the command's stacks (deploygate dumps them on SIGUSR1) and its last output are printed, and it is
    killed, so that a hung deploy says where it waited and never outlives its test."""
    try:
        yield
    except BaseException:
        if process.poll() is None:
            process.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            process.kill()
            reader = threading.Thread(target=lambda: seen.extend(process.stdout), daemon=True)
            reader.start()
            reader.join(timeout=5)
        print("".join(seen[-400:]))
        raise
