"""Swarm service logs are read within a deadline: a node whose engine is down holds the stream open forever."""

from __future__ import annotations

import threading
import time

from deploygate.platform.swarm_services import service_logs


class _HangingResponse:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()


class _Api:
    """docker-py's APIClient as service_logs uses it: one chunk, then a stream that never ends until closed."""

    def __init__(self) -> None:
        self.params: dict = {}

    def _url(self, template: str, *args: str) -> str:
        return template.format(*args)

    def _get(self, url: str, params: dict, stream: bool) -> _HangingResponse:
        self.params = params
        return _HangingResponse()

    def _get_result_tty(self, stream: bool, response: _HangingResponse, tty: bool):
        yield b"last line\n"
        response.closed.wait(30)
        raise OSError("closed")


def test_a_stream_held_open_is_closed_at_the_deadline_and_what_arrived_is_kept() -> None:
    api = _Api()
    started = time.monotonic()
    output = service_logs(api, "svc", tail=3, timestamps=False, deadline_s=0.3)
    assert output == b"last line\n"
    assert time.monotonic() - started < 5
    assert api.params["tail"] == 3 and api.params["timestamps"] is False and api.params["since"] == 0
