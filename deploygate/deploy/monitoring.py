"""The monitoring window after the switch: a narrow context in (``MonitorWindow``), a typed verdict out.

The first step given the shape every converted step now has (as nox's Session is all a
session may use of its SessionRunner): ``MonitorWindow.of(run)`` is the only place that
reads the deploy's run, so ``watch_window`` can be called with a hand-built context.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploygate import monitor
from deploygate.deploy.services import Switch
from deploygate.health import HealthSample
from deploygate.log import Say
from deploygate.record import MonitoringRecord

if TYPE_CHECKING:
    from deploygate.deploy.state import DeployRun


@dataclass(frozen=True)
class MonitorWindow:
    """All the monitoring window may use (as nox's Session is all a session may use of its runner): the proxy's
    access records and health URL, whether each proxy runs, the color watched, the limits, the log."""

    switch: Switch
    health: Callable[[str], HealthSample]
    proxy_running: Callable[[str], bool]
    color: str
    window_s: int
    threshold: int
    health_path: str
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> MonitorWindow:
        s = run.settings
        return cls(
            switch=run.proxy,
            health=run.services.health,
            proxy_running=run.platform.proxy_running,
            color=run.new_color,
            window_s=s.monitor_window_s,
            threshold=s.monitor_max_errors,
            health_path=s.health_path,
            say=run.log,
        )


@dataclass(frozen=True)
class MonitorVerdict:
    """What the window saw, for the record, and the notes that go with it."""

    monitoring: MonitoringRecord
    notes: list[str]

    @property
    def ok(self) -> bool:
        return self.monitoring.decision == "ok"


def watch_window(window: MonitorWindow) -> MonitorVerdict:
    """Errors per color from the proxy's log (what users saw), and health, for the configured window."""
    last = [0.0]

    def tick(state: monitor.MonitorState) -> None:
        if time.time() - last[0] >= 5 or state.decision:
            last[0] = time.time()
            window.say("   " + state.line())

    state = monitor.watch(
        lambda since: window.switch.records(since=since),
        lambda: window.health(f"{window.switch.url}{window.health_path}"),
        window.color,
        window_s=window.window_s,
        threshold=window.threshold,
        on_tick=tick,
    )
    notes = []
    # A node lost in the window takes its proxy with it: the verdict is the other proxies'. Said, not hidden.
    down = [name for name in window.switch.instances if not window.proxy_running(name)]
    if down:
        notes.append(
            f"monitoring: the proxy on {', '.join(down)} did not run at the end of the window; {state.decision} through the others"
        )
        window.say(f"   {notes[-1]}")
    monitoring = MonitoringRecord(
        window_s=window.window_s,
        threshold=window.threshold,
        requests_by_color=dict(state.requests_by_color),
        errors_by_color=dict(state.errors_by_color),
        health_failures=state.health_failures,
        decision=state.decision or "",
    )
    return MonitorVerdict(monitoring, notes)
