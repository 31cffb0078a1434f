"""Swarm service logs are read within a deadline: a node whose engine is down holds the stream open forever.

A real socket pair stands in for the manager's stream: one frame, then nothing, never closed."""

from __future__ import annotations

import socket
import struct
import time
from types import SimpleNamespace

from deploygate.platform.swarm_services import service_logs


class _Raw:
    """urllib3's response.raw as service_logs reads it: read(n) from the socket, which reaches it as docker-py does."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fp = SimpleNamespace(fp=SimpleNamespace(raw=SimpleNamespace(_sock=sock)))

    def read(self, amount: int) -> bytes:
        data = b""
        while len(data) < amount:
            got = self._sock.recv(amount - len(data))  # blocks, as a stream held open does, until its timeout
            if not got:
                break
            data += got
        return data


class _Api:
    def __init__(self, sock: socket.socket) -> None:
        self.params: dict = {}
        self.response = SimpleNamespace(raw=_Raw(sock), close=lambda: None)

    def _url(self, template: str, *args: str) -> str:
        return template.format(*args)

    def _get(self, url: str, params: dict, stream: bool):
        self.params = params
        return self.response

    def _raise_for_status(self, response) -> None:
        pass


def test_a_stream_held_open_ends_at_the_deadline_and_what_arrived_is_kept() -> None:
    ours, managers = socket.socketpair()
    try:
        line = b"2026-12-07T00:00:00Z last line\n"
        managers.sendall(struct.pack(">BxxxL", 1, len(line)) + line)  # one stdout frame, then the stream stays open
        api = _Api(ours)
        started = time.monotonic()
        output = service_logs(api, "svc", tail=3, timestamps=False, deadline_s=0.5)
        took = time.monotonic() - started
        assert output == line
        assert 0.4 <= took < 5, took
        assert api.params["tail"] == 3 and api.params["timestamps"] is False and api.params["since"] == 0
    finally:
        ours.close()
        managers.close()
