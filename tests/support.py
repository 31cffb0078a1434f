"""Small helpers shared by the test tiers."""

from __future__ import annotations

import socket

import pytest


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
