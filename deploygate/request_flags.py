"""The flags of a request, declared once: which settings, which candidate, which checks skipped and why.

``deploygate``'s commands (argparse) and the gate suites (pytest's ``addoption``, in
fixtures/config.py) declare them from here, and ``deploygate predeploy`` hands them to the
suite with ``gate_args``, so no caller keeps its own table of spellings. Inside pytest
the settings flags are spelled ``--dg-...``: pytest's ``-c`` is ``--config-file``, and a
team's own pytest (the installed plugin) may hold other plugins' ``--config`` or ``--set``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Flag:
    """One flag: its command-line name, its name inside the gate's pytest, and argparse's action, metavar and help."""

    name: str
    help: str
    in_gate: str = ""  # empty: the same name
    action: str = "store"
    metavar: str | None = None

    @property
    def gate_name(self) -> str:
        return self.in_gate or self.name

    @property
    def dest(self) -> str:
        """The attribute argparse and pytest store the value in (``--skip-check`` -> ``skip_check``)."""
        return self.name.lstrip("-").replace("-", "_")

    def kwargs(self, **more: Any) -> dict[str, Any]:
        """Keyword arguments for argparse's ``add_argument`` and pytest's ``addoption`` alike (``more`` adds to them)."""
        declared: dict[str, Any] = {"action": self.action, "help": self.help}
        if self.action == "append":
            declared["default"] = []
        elif self.action == "store":
            declared["default"] = None
        if self.metavar:
            declared["metavar"] = self.metavar
        return {**declared, **more}

    def gate_args(self, value: Any) -> list[str]:
        """The flag with ``value`` (a list, for a repeatable flag) as the gate's pytest takes it; [] when unset."""
        if value is None or value is False:
            return []
        if self.action == "store_true":
            return [self.gate_name]
        given = value if self.action == "append" else [value]
        # Joined by "=": a value that starts with "-" is not taken for a flag.
        return [f"{self.gate_name}={item}" for item in given]


CONFIG = Flag("--config", "deploygate configuration file (default deploy.toml, env DEPLOYGATE_CONFIG)", in_gate="--dg-config")
SET = Flag("--set", "override one setting (repeatable)", in_gate="--dg-set", action="append", metavar="NAME=VALUE")
# Only a deploy hands it to its gates (resolved_settings.write_resolved): every resolved setting with its source, in one file.
SETTINGS_FILE = Flag("--dg-settings", "the resolved settings a deploy wrote for its gate (instead of --dg-config / --dg-set)")
CANDIDATE = Flag("--candidate", "an image reference, or a release of the app source")
SKIP_CHECK = Flag(
    "--skip-check",
    "deselect a check by name, recorded with --reason (a false positive must not block every deploy; repeatable)",
    action="append",
    metavar="NAME",
)
OVERRIDE = Flag(
    "--override",
    "let a named policy check pass although it fails (deploy_window, recent_deploy, error_rate); needs --reason",
    action="append",
    metavar="POLICY",
)
REASON = Flag("--reason", "why an override, a skipped check or an accepted risk is justified (recorded with it)")

# What `deploygate predeploy` reads itself and hands on in the gate's spelling; pytest takes all the rest as given.
PREDEPLOY = (CONFIG, SET, CANDIDATE, SKIP_CHECK, OVERRIDE, REASON)
# What a gate's pytest declares (fixtures/config.py).
GATE = (CONFIG, SET, SETTINGS_FILE, CANDIDATE, SKIP_CHECK, OVERRIDE, REASON)
