"""The one exception family of deploygate.

Foreign errors (Docker, HTTP, psycopg, subprocess) are translated into these at the
boundary that calls the foreign library, so callers and the CLI only ever see a
``DeployGateError`` whose ``str()`` is a one-line cause a user can act on.
"""

from __future__ import annotations


class DeployGateError(Exception):
    """Base of every error deploygate raises on purpose; ``str(err)`` is one line."""


def one_line(exc: BaseException) -> str:
    """An exception as one line a user can act on: deploygate's own errors as they are, others with their type."""
    text = str(exc).strip().splitlines()
    if isinstance(exc, DeployGateError) and text:
        return text[0]
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class ConfigError(DeployGateError):
    """Bad configuration or bad command-line input; nothing was changed."""


class EngineUnavailable(DeployGateError):
    """No Docker engine answers and none could be installed or started."""


class ImageBuildError(DeployGateError):
    """An image could not be built (the build log's last lines are in the message)."""


class StackError(DeployGateError):
    """The production stack could not be brought up, inspected or taken down."""


class WaitTimeout(DeployGateError):
    """A condition was not met before its deadline: says what was tried and last seen."""


class ProxyError(DeployGateError):
    """The proxy's runtime API could not be reached, refused a command, or routes otherwise than told."""


class DatabaseUnavailable(StackError):
    """A database refused or dropped the connection (down, restarting, wrong credentials): one line, no password."""
