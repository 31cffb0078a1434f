"""The settings a bench production runs with, and a free port for it to publish on."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

from deploygate import config, production
from deploygate.log import Say, quiet
from deploygate.platform import Platform, connect


def free_port() -> int:
    """A loopback port nothing listens on right now (each bench production publishes its own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def merged(own: Mapping[str, str], given: Mapping[str, str] | None) -> dict[str, str]:
    """The bench's own overrides (its project name, ports, temporary folders), then the user's ``--set`` on top.

    The user's win, so ``--set project=mybench`` keeps a bench off another run's production.
    """
    return {**own, **(given or {})}


def load(root: Path, overrides: Mapping[str, str], config_file: str | None = None) -> config.Settings:
    """``root``'s deploy.toml (or ``config_file``) under ``overrides``; the environment is left out on purpose:
    a DEPLOYGATE_* variable meant for the real production must not steer a bench.

    Raises ``ConfigError`` for a bad file or value.
    """
    return config.load(config_file, root=root, environ={}, overrides=dict(overrides))


def seeded(project: str, folder: str, rows: int) -> dict[str, str]:
    """A bench production of its own: ``project``, a free port, every file under ``folder``, ``rows`` seeded,
    and no standby (the gate alone: a standby replaying the seeding would share the machine)."""
    return {
        "project": project,
        "proxy_port": str(free_port()),
        "state_dir": f"{folder}/state",
        "backup_dir": f"{folder}/backups",
        "reports_dir": f"{folder}/reports",
        "seed_rows": str(rows),
        "seed_members": str(max(200, rows // 100)),
        "db_standbys": "0",
    }


def fresh_production(
    root: Path, own: Mapping[str, str], given: Mapping[str, str] | None, config_file: str | None, rows: int, say: Say
) -> tuple[dict[str, str], config.Settings, Platform]:
    """A bench production brought up anew (the old one of its project removed first): its overrides,
    settings and platform. The caller takes it down."""
    overrides = merged(own, given)
    settings = load(root, overrides, config_file)
    platform = connect(settings, say)
    production.down(platform, settings, volumes=True)
    say(f"[{rows:,} rows] bringing up the bench production (seeding is not timed)...")
    production.up(platform, settings, say=quiet)
    return overrides, settings, platform
