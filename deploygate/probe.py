"""The host side of deploygate's probe: its command line, reading its result line, and the ``Prober`` that runs it.

The probe itself (``probes/django_probe.py``) runs inside a release's image against a
database (the rehearsal copy, or production) and prints one ``DEPLOYGATE_RESULT <json>``
line; ``deploygate.probe_results`` parses it into records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deploygate.errors import DeployGateError
from deploygate.log import Say

# The records of the probe's answers: what the Prober returns and what is inside them. The
# modules that run the probe and read its answers import them from here or from probe_results.
from deploygate.probe_results import (
    AppliedMigration,
    ExerciseCheck,
    FieldFacts,
    MigrateResult,
    MigrationFailure,
    MigrationPlan,
    ModelExercise,
    OperationChange,
    PlanStep,
    TableLock,
    exercise_failures,
    parse_exercise,
    parse_migrate,
    parse_plan,
    unchecked_fields,
)
from deploygate.probes import DJANGO_PROBE, RESULT_MARKER

if TYPE_CHECKING:
    from deploygate.config import Settings
    from deploygate.platform.base import Platform
    from deploygate.platform.images import Image

__all__ = [
    "PROBE_DIR_IN_CONTAINER",
    "ProbeError",
    "Prober",
    "argv",
    "mounts",
    "result_of",
    # the records of its answers, from probe_results
    "AppliedMigration",
    "ExerciseCheck",
    "FieldFacts",
    "MigrateResult",
    "MigrationFailure",
    "MigrationPlan",
    "ModelExercise",
    "OperationChange",
    "PlanStep",
    "TableLock",
    "exercise_failures",
    "parse_exercise",
    "parse_migrate",
    "parse_plan",
    "unchecked_fields",
]

PROBE_DIR_IN_CONTAINER = "/deploygate_probe"


class ProbeError(DeployGateError):
    """The probe could not run at all (as opposed to running and finding a problem)."""


def argv(command: str, argument: Any = None, *, python: str = "python3") -> list[str]:
    """The probe's command line inside the image (the probe directory mounted at ``PROBE_DIR_IN_CONTAINER``),
    run by the image's own ``python``."""
    line = [python, f"{PROBE_DIR_IN_CONTAINER}/{DJANGO_PROBE.name}", command]
    if argument is not None:
        line.append(json.dumps(argument))
    return line


def mounts() -> dict[str, str]:
    """Host directory -> path inside the image, read-only: the probe is mounted, never baked in."""
    return {str(DJANGO_PROBE.parent): PROBE_DIR_IN_CONTAINER}


def result_of(output: str, *, command: str, image: str, exit_code: int) -> dict:
    """The JSON the probe printed last; raises ``ProbeError`` when it printed none (it could not start)
    or reports that it could not do its work at all (``fatal``: the database went away, ...)."""
    for line in reversed(output.splitlines()):
        if RESULT_MARKER in line:
            data = json.loads(line.split(RESULT_MARKER, 1)[1])
            if "fatal" in data:
                raise ProbeError(f"the probe `{command}` in {image} failed: {data['fatal']}")
            return data
    lines = [line for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    raise ProbeError(f"the probe `{command}` in {image} gave no result (exit {exit_code}): {last}")


class Prober:
    """The probe in one release's image, against one database (production, or a copy).

    ``environment`` is the app's (its database settings); migrations run with
    ``lock_timeout_ms``, the same in the rehearsal and in the deploy. Every method raises
    ``ProbeError`` when the probe could not run at all.
    """

    def __init__(
        self,
        platform: Platform,
        image: Image,
        environment: Mapping[str, str],
        *,
        lock_timeout_ms: int,
        network: str | None = None,
        say: Say | None = None,
        python: str = "python3",
    ) -> None:
        self.platform = platform
        self.image = image
        self.python = python
        self.environment = {**environment, "PGOPTIONS": f"-c lock_timeout={lock_timeout_ms}"}
        self.network = network
        self.say = say

    @classmethod
    def configured(
        cls,
        platform: Platform,
        settings: Settings,
        image: Image,
        environment: Mapping[str, str],
        *,
        network: str | None = None,
        say: Say | None = None,
    ) -> Prober:
        """The probe as ``settings`` configure it: their lock_timeout and the app's Python."""
        return cls(
            platform, image, environment, lock_timeout_ms=settings.lock_timeout_ms, network=network, say=say, python=settings.app_python
        )

    def run(self, command: str, argument: Any = None, *, exchange: Mapping[str, str] | None = None) -> tuple[dict, int]:
        """The probe's raw JSON result and exit code (lines it prints go to ``say``, the result line does not).

        ``exchange``: host directory -> path inside, mounted writable, for what is too large for a command line.
        """
        say = self.say
        result = self.platform.run_job(
            self.image.id,
            argv(command, argument, python=self.python),
            environment=self.environment,
            mounts={**mounts(), **(exchange or {})},
            writable=list(exchange or {}),
            network=self.network,
            say=(lambda line: None if RESULT_MARKER in line else say(line)) if say else None,
        )
        return result_of(result.output, command=command, image=self.image.tag, exit_code=result.exit_code), result.exit_code

    def batch(self, steps: list[tuple[str, Any]]) -> tuple[list[dict], list[float]]:
        """Several commands in one process (Django starts once): their raw results and seconds each."""
        payload, _ = self.run("batch", [[command, argument] for command, argument in steps])
        return payload["results"], payload["seconds"]

    def plan(self) -> MigrationPlan:
        return parse_plan(self.run("plan")[0])

    def migrate(self) -> MigrateResult:
        return parse_migrate(*self.run("migrate"))

    def migrate_to(self, targets: dict[str, str | None]) -> MigrateResult:
        return parse_migrate(*self.run("migrate-to", targets))

    def exercise(self, state: str | dict[str, str | None] = "current", scope: dict | None = None) -> list[ModelExercise]:
        """select / filter / insert / update / delete on the models in ``scope`` (None: every model), all
        rolled back (see ``deploygate.scope``).

        ``state`` "current" uses this image's models; a ``{app: migration}`` uses the historical
        models at those migrations (another release's view of the schema).
        """
        return parse_exercise(self.run("exercise", {"state": state, "scope": scope})[0])

    def safe_migrations(self, labels: list[str]) -> dict[str, str]:
        """The given migrations with renames made state-only, as ``{relative path: file text}``."""
        return self.run("safe-migrations", labels)[0]["files"]
