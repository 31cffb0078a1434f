"""A gate run's result: its schema, where it is kept, how it is saved and read back.

The pytest plugin (``fixtures/gate_report.py``) writes it at the end of a gate run; the
deploy reads it to decide, and to reuse a passed predeploy for the same image digest.
Both go through this module, so the file's shape and path are known in one place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploygate.errors import DeployGateError

# Categories a check declares with a pytest marker of the same name (registered in pytest.ini).
CATEGORIES = ("health", "policy", "backup", "rehearsal", "reversal", "compat", "cache", "replay", "app", "post")
PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
# The app does not report what the check needs (e.g. no error count in its health body):
# shown as such, never counted as passed, and not a failure either.
NOT_REPORTED = "not reported"
# Deselected by name with a recorded reason (--skip-check NAME --reason): an exception granted, not a failure.
SKIPPED_ON_REQUEST = "skipped on request"


class GateResultError(DeployGateError):
    """A gate result is missing or unreadable."""


@dataclass
class CheckResult:
    """One check of a gate: its verdict, what it measured against which threshold, and why it failed."""

    nodeid: str
    name: str
    category: str
    outcome: str = PASSED
    duration_s: float = 0.0
    message: str = ""
    threshold: str = ""
    value: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED

    @property
    def failed(self) -> bool:
        """Anything but passed or not reported: a skipped check was not proven either."""
        return self.outcome not in (PASSED, NOT_REPORTED, SKIPPED_ON_REQUEST)

    @property
    def summary(self) -> str:
        """The message's first line (the whole of it stays in the JSON)."""
        return self.message.splitlines()[0] if self.message else ""


@dataclass
class GateResult:
    """A whole gate run."""

    gate: str
    started: str
    finished: str = ""
    passed: bool = False
    candidate: dict | None = None  # {ref, tag, image_id}
    production: str | None = None  # deploygate.database.production_identity of what was checked
    overrides: dict[str, str] = field(default_factory=dict)  # check name -> reason given
    notes: list[str] = field(default_factory=list)
    selection: list[str] = field(default_factory=list)
    # Only a run of the whole suite proves a candidate; a deploy reuses nothing less.
    complete: bool = False
    checks: list[CheckResult] = field(default_factory=list)
    # What the checks observed beyond their verdicts, for the reviewer's plan (``deploygate.plan_facts``
    # gives its shape): the migrations with their SQL and locks, the compatibility verdict, the reversal.
    details: dict = field(default_factory=dict)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed]

    def finished_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.finished)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> GateResult:
        checks = [CheckResult(**check) for check in data.get("checks", [])]
        return cls(**{**data, "checks": checks})


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def path_for(reports_dir: Path, gate: str, image_id: str | None) -> Path:
    """``<reports_dir>/<gate>/<image digest, 32 hex>.json``: what is proven for one image."""
    key = image_id.replace("sha256:", "")[:32] if image_id else "no-candidate"
    return reports_dir / gate / f"{key}.json"


def save(result: GateResult, path: Path) -> Path:
    """Write ``result`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def load(path: Path) -> GateResult:
    """Raises ``GateResultError`` when the file is missing or not a gate result."""
    try:
        return GateResult.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise GateResultError(f"no gate result at {path}") from None
    except (ValueError, TypeError) as exc:
        raise GateResultError(f"{path} is not a gate result: {exc}") from None


def load_or_none(path: Path) -> GateResult | None:
    return load(path) if path.exists() else None
