"""Which color runs and which serves, as deploy and rollback steps change it.

Each step's core takes a frozen context (the platform and proxy it acts on, the colors, the
limits, the log) and returns a frozen result; the step's adapter in ``steps`` / ``undo`` is
the only code that reads or writes the deploy's run.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploygate.deploy.services import Switch
from deploygate.errors import DeployGateError
from deploygate.ledger import Entry
from deploygate.log import Say
from deploygate.platform import Platform
from deploygate.platform.base import ColorState
from deploygate.platform.images import Image
from deploygate.production import app_environment
from deploygate.proxy import Route

if TYPE_CHECKING:
    from deploygate.deploy.state import DeployRun


# --- the new color -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewColor:
    """What starting the candidate may use: the platform, the color and image, the app's processes, and
    its environment (read only once a stale color is gone, as before: reading it asks the platform)."""

    platform: Platform
    color: str
    image: Image
    environment: Callable[[], Mapping[str, str]]
    processes: Mapping[str, str]
    hold: bool
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> NewColor:
        return cls(
            platform=run.platform,
            color=run.new_color,
            image=run.candidate,
            environment=functools.partial(app_environment, run.platform, run.settings, run.candidate_cache_namespace),
            processes=run.settings.app_processes,
            hold=bool(run.hold),
            say=run.log,
        )


@dataclass(frozen=True)
class NewColorStarted:
    state: ColorState
    replaced: str | None = None  # the release of a stale color removed first


def start_color(new: NewColor) -> NewColorStarted:
    """The candidate on the new color, not yet routed to (a stale one from an earlier deploy goes first).

    Its processes (workers) start with it when old and new code run on either schema;
    behind a hold they wait for the migration.
    """
    stale = new.platform.color(new.color)
    if stale is not None:
        new.say(f"   removing the previous {new.color} ({stale.release})")
        new.platform.remove_color(new.color)
    processes = {} if new.hold else new.processes
    state = new.platform.start_color(new.color, new.image, new.environment(), processes)
    return NewColorStarted(state, stale.release if stale is not None else None)


# --- the switch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficSwitch:
    route: Callable[[str], None]
    color: str
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> TrafficSwitch:
        return cls(route=run.proxy.route, color=run.new_color, say=run.log)


@dataclass(frozen=True)
class Switched:
    color: str
    at: float  # what the forward-fix limit and the post checks count from


def switch_to(switch: TrafficSwitch) -> Switched:
    """Every new request to the new color; in-flight ones finish where they started."""
    switch.route(switch.color)
    switched = Switched(switch.color, time.time())
    switch.say(f"   proxy -> {switch.color}")
    return switched


# --- finish --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finish:
    """What finishing may use: the ledger (this deploy's entry, then the deploys it lists), the platform,
    the colors, the candidate's digest, how many releases to keep, the backups' retention."""

    record_succeeded: Callable[[], object]
    deploys: Callable[[], list[Entry]]
    platform: Platform
    old_color: str
    new_color: str
    candidate_id: str
    keep_releases: int
    apply_retention: Callable[[], list[Path]]
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> Finish:
        return cls(
            record_succeeded=functools.partial(run.record_in_ledger, "succeeded"),
            deploys=functools.partial(run.services.ledger.entries, run.db, "deploy"),
            platform=run.platform,
            old_color=run.old_color,
            new_color=run.new_color,
            candidate_id=run.candidate.id,
            keep_releases=run.settings.keep_releases,
            apply_retention=functools.partial(run.services.backups.apply_retention, run.settings),
            say=run.log,
        )


@dataclass(frozen=True)
class Finished:
    stopped: str | None  # the old color, stopped and kept for a rollback (None: there was none)
    removed_backups: tuple[str, ...]
    removed_images: tuple[str, ...]


def _recent_digests(finish: Finish) -> set[str]:
    """Image ids of the last ``keep_releases`` successful deploys (this one included) and of what runs."""
    deployed = [e.image_digest for e in finish.deploys() if e.outcome == "succeeded" and e.image_digest]
    keep = set(deployed[-(finish.keep_releases - 1) :]) if finish.keep_releases > 1 else set()
    keep.add(finish.candidate_id)
    for color in (finish.new_color, finish.old_color):
        state = finish.platform.color(color)
        if state is not None:
            keep.add(state.image_id)
    return keep


def finish_deploy(finish: Finish) -> Finished:
    """The ledger says succeeded; the old color is stopped (kept for a rollback); retention runs."""
    finish.record_succeeded()
    stopped = None
    if finish.platform.color(finish.old_color) is not None:
        finish.platform.stop_color(finish.old_color)
        stopped = finish.old_color
        finish.say(f"   stopped {finish.old_color} (kept for rollback)")
    backups = []
    for path in finish.apply_retention():
        finish.say(f"   retention: removed {path.name}")
        backups.append(path.name)
    images = []
    ours = {e.image_digest for e in finish.deploys() if e.image_digest}
    for tag in finish.platform.prune_releases(keep=_recent_digests(finish), ours=ours):
        finish.say(f"   retention: removed image {tag}")
        images.append(tag)
    return Finished(stopped, tuple(backups), tuple(images))


# --- traffic back (rollback) ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficBack:
    """What putting traffic back may use: the platform and proxy, both colors, whether the deploy held
    traffic (then the previous release cannot serve the schema until it is undone), the health timeout."""

    platform: Platform
    switch: Switch
    old_color: str
    new_color: str
    hold: bool
    timeout: float
    say: Say

    @classmethod
    def of(cls, run: DeployRun) -> TrafficBack:
        return cls(
            platform=run.platform,
            switch=run.proxy,
            old_color=run.old_color,
            new_color=run.new_color,
            hold=bool(run.hold),
            timeout=run.settings.health_timeout,
            say=run.log,
        )


@dataclass(frozen=True)
class TrafficReturned:
    holding: bool  # a hold answers until the schema is the previous release's again
    on_previous_at: float | None = None  # when the previous color served again (None: holding, or failed)
    failure: str | None = None


def traffic_back(back: TrafficBack) -> TrafficReturned:
    """The previous color serves again, or a hold answers while it cannot serve the current schema.

    The candidate's processes stop first (their release is going); the previous release's
    wait behind a hold until the schema is theirs again.
    """
    platform, old = back.platform, back.old_color
    platform.wait_ready(timeout=back.timeout)  # the engine may be restarting
    state = platform.color(old)
    if state is None:
        return TrafficReturned(holding=False, failure=f"cannot roll back: {platform.color_name(old)} no longer exists")
    if platform.color(back.new_color) is not None:
        platform.stop_processes(back.new_color)
    platform.resume_color(old, processes=not back.hold)
    holding = back.hold
    if not holding:
        try:
            platform.wait_healthy(old, back.timeout)
        except DeployGateError as exc:
            # The old release cannot serve the schema as it is now: hold traffic while it goes back.
            back.say(f"   {old} is not healthy on the current schema ({exc}): holding traffic")
            holding = True
            platform.stop_processes(old)
    if holding:
        back.switch.hold(old)
        back.say("   proxy -> maintenance hold")
        return TrafficReturned(holding=True)
    if back.switch.current() != Route(old, state.release):
        back.switch.route(old, fresh=True)
        back.say(f"   proxy -> {old} ({state.release})")
    return TrafficReturned(holding=False, on_previous_at=time.time())


@dataclass(frozen=True)
class PreviousServes:
    release: str
    at: float


def serve_previous_again(back: TrafficBack) -> PreviousServes:
    """Behind a hold, once the schema is the previous release's: its color (processes too) serves again."""
    back.platform.resume_color(back.old_color)
    state = back.platform.wait_healthy(back.old_color, back.timeout)
    back.switch.route(back.old_color, fresh=True)
    back.say(f"   proxy -> {back.old_color} ({state.release})")
    return PreviousServes(state.release, time.time())
