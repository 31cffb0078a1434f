"""The app's health URL, sampled: a 2xx is healthy; a JSON body, when the app gives one, adds detail.

The detail deploygate reads is the seed's: ``status``, ``errors``, ``response_time_ms`` and
``database.connections``. An app that answers ``200 OK`` in plain text is healthy too; a
check that needs a detail the app does not report learns that here (None), never a 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class HealthSample:
    """One request to the health URL: status (0 when no answer), time, and the JSON body if any."""

    url: str
    status_code: int
    elapsed_ms: float
    detail: dict | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """2xx, and not a body that says otherwise."""
        reported = (self.detail or {}).get("status")
        return 200 <= self.status_code < 300 and reported in (None, "healthy", "ok")

    @property
    def errors(self) -> int | None:
        value = (self.detail or {}).get("errors")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def connections(self) -> int | None:
        value = ((self.detail or {}).get("database") or {}).get("connections")
        return int(value) if isinstance(value, (int, float)) else None

    def describe(self) -> str:
        if self.status_code == 0:
            return f"no answer ({self.error})"
        return f"HTTP {self.status_code}" + (f" {self.detail.get('status')}" if self.detail and "status" in self.detail else "")


def sample(url: str, *, timeout: float = 5.0) -> HealthSample:
    """GET ``url`` once; never raises for a failed request (status 0 and the error instead)."""
    started = time.perf_counter()
    try:
        answer = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return HealthSample(url, 0, (time.perf_counter() - started) * 1000, None, type(exc).__name__)
    elapsed = (time.perf_counter() - started) * 1000
    try:
        body = answer.json()
    except ValueError:
        body = None
    return HealthSample(url, answer.status_code, elapsed, body if isinstance(body, dict) else None)
