"""The settings a deploy resolved, as one file its gates read (``--dg-settings``): values with their sources, no secret.

A gate run by a deploy must judge with the deploy's settings, whatever its own command line,
environment or configuration file would say; the file carries them across the process boundary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploygate.config import _BY_NAME, OPTIONS, ConfigError, Settings, _coerce, load


def write_resolved(settings: Settings, path: Path) -> Path:
    """The resolved settings as one file a gate's pytest reads (``--dg-settings``), readable by the owner only.

    Values keep their sources, so the gate's header still says where each came from. Secrets
    are left out: they reach the gate as they reached the deploy (env, the config file, the
    state directory's secret file), never through a file of its logs.
    """
    shown = [opt for opt in OPTIONS if not opt.secret]
    data = {
        "config_file": str(settings.config_file) if settings.config_file else None,
        "root": str(settings.root),
        "values": {opt.name: settings.values[opt.name] for opt in shown},
        "sources": {opt.name: settings.sources[opt.name] for opt in shown},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file that existed keeps its old mode through os.open
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle, indent=1)
    return path


def load_resolved(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """The settings ``write_resolved`` wrote: its values and sources, secrets resolved here, the command line over both."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc}") from None
    unknown = sorted(set(data["values"]) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    # Secrets (and the command line) resolved as any load does; every other value is the file's.
    base = load(data["config_file"], environ=environ, overrides=overrides, root=Path(data["root"]))
    values, sources = dict(base.values), dict(base.sources)
    for name, raw in data["values"].items():
        if sources[name] != "command line":
            values[name] = _coerce(_BY_NAME[name], raw, Path(path).name)
            sources[name] = data["sources"][name]
    return Settings(values=values, sources=sources, config_file=base.config_file, root=base.root)
