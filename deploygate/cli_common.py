"""What every command of the CLI shares (cli.py's production commands, cli_review.py's review commands)."""

from __future__ import annotations

import argparse

from deploygate import config
from deploygate.errors import DeployGateError


def settings_from(args: argparse.Namespace) -> config.Settings:
    """The settings a command runs with: the file, the environment and ``--set`` (before and after the command's name)."""
    overrides = config.parse_assignments([*getattr(args, "set_before", []), *getattr(args, "set_after", [])])
    return config.load(getattr(args, "config", None), overrides=overrides)


def say_unfinished(platform) -> bool:
    """Say first, in one line, that a deploy is unfinished and what `rollback` will do; True if one is."""
    from deploygate.deploy.state import unfinished_notice  # on use: the deploy package is slow to import for `--help`

    try:
        notice = unfinished_notice(platform.database())
    except DeployGateError:
        return False  # no production to ask yet: the command itself will say so
    if notice:
        print(notice, flush=True)
    return notice is not None
