"""Middleware that counts recent server errors and injects the error burst."""

import os
import threading
import time
from collections import deque

from django.http import JsonResponse

from bmparliament.release import RELEASE

# gunicorn loads the application in the worker, so import time is when this
# process started serving; it runs a single worker so the numbers below are
# the whole server's.
PROCESS_STARTED = time.monotonic()
ERROR_WINDOW_S = 300
HEALTH_PREFIX = "/health/"


class ErrorWindow:
    """Thread-safe record of when this process answered with a 5xx."""

    def __init__(self, window_s):
        self.window_s = window_s
        self._times = deque()
        self._lock = threading.Lock()

    def record(self):
        """Note one 5xx response now."""
        with self._lock:
            self._times.append(time.monotonic())

    def count(self):
        """Return how many 5xx responses were served in the last window_s seconds."""
        cutoff = time.monotonic() - self.window_s
        with self._lock:
            while self._times and self._times[0] < cutoff:
                self._times.popleft()
            return len(self._times)


RECENT_ERRORS = ErrorWindow(ERROR_WINDOW_S)


class ErrorWindowMiddleware:
    """Count every 5xx response, unhealthy health checks included."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code >= 500:
            RECENT_ERRORS.record()
        return response


class ErrorBurstMiddleware:
    """For the error-burst release: fail every other non-health request.

    The release passes its health checks, starts serving, and only after
    BMP_BURST_AFTER_S seconds (default 20) starts answering 500 to half of
    the traffic, so a deploy gate must watch the error rate after the
    switch, not only the health check before it. A counter rather than
    random numbers keeps the rate exactly 50% and the runs reproducible.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.enabled = RELEASE.behaviour == "error-burst"
        self.burst_after_s = float(os.environ.get("BMP_BURST_AFTER_S", "20"))
        self._requests = 0
        self._lock = threading.Lock()

    def __call__(self, request):
        if self.enabled and not request.path.startswith(HEALTH_PREFIX) and time.monotonic() - PROCESS_STARTED >= self.burst_after_s:
            with self._lock:
                self._requests += 1
                fail = self._requests % 2 == 0
            if fail:
                return JsonResponse(
                    {"error": f"release {RELEASE.name} fails every other request by design"},
                    status=500,
                )
        return self.get_response(request)


class SlowMiddleware:
    """For the slow release: every non-health answer takes about three times as long.

    Each request waits twice its own time before answering, so the release's
    latency percentiles are three times what the same code answers in, whatever
    the machine: healthy, compatible, error-free, and only slower, which only a
    gate that compares latency with the release before it can see. A floor of
    BMP_SLOW_MIN_MS (default 150) keeps a fast request from hiding in the noise:
    on a loaded 2-core machine the serving release's own p95 reaches 40-80 ms.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.enabled = RELEASE.behaviour == "slow"
        self.min_extra_s = float(os.environ.get("BMP_SLOW_MIN_MS", "150")) / 1000

    def __call__(self, request):
        started = time.monotonic()
        response = self.get_response(request)
        if self.enabled and not request.path.startswith(HEALTH_PREFIX):
            time.sleep(max(2 * (time.monotonic() - started), self.min_extra_s))
        return response
