"""Where production runs, behind one interface (``base.Platform``); ``connect`` picks the implementation."""

from __future__ import annotations

from deploygate.config import Settings
from deploygate.log import Say
from deploygate.platform.base import COLORS, OTHER_COLOR, ColorState, JobResult, Platform, Replica

__all__ = ["COLORS", "OTHER_COLOR", "ColorState", "JobResult", "Platform", "Replica", "connect"]


def connect(settings: Settings, say: Say = print) -> Platform:
    """The platform of ``settings``: a single Docker host (its engine started when needed) or a Docker Swarm."""
    if settings.platform == "swarm":
        from deploygate.platform.swarm import SwarmPlatform

        return SwarmPlatform.connect(settings, say)
    from deploygate.platform.docker_host import DockerHost

    return DockerHost.connect(settings, say)
