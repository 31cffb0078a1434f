"""The gate suites run from a deploy: pytest in its own process, its verdict read from the gate result file.

The library never imports pytest: it runs a suite as a user would, with this deploy's
settings, and reads what the suite's plugin wrote (``deploygate.gate_result``). pytest's
own output goes to a log file beside the deploy's (secrets redacted), not to the screen.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from deploygate import gate_result, request_flags, resolved_settings, resources
from deploygate.config import Settings
from deploygate.gate_result import GateResult
from deploygate.log import DeployLog, Say
from deploygate.record import GateRow

SUITES = resources.SUITES


def settings_args(settings: Settings, path: Path) -> list[str]:
    """The suite reads exactly this deploy's settings, with their sources, from one file written at ``path``.

    Secrets are not in it (resolved_settings.write_resolved): the suite resolves them as the deploy did,
    from the environment it inherits or the secret file, never from argv or the logs folder.
    """
    return request_flags.SETTINGS_FILE.gate_args(str(resolved_settings.write_resolved(settings, path)))


def suite_argv(gate: str) -> list[str]:
    """``python -m pytest`` on the suite of ``gate``, wherever it is (checkout or installed package).

    The suite's own pytest.ini and rootdir are named, so a gate run from a team's repository
    never picks up that repository's pytest configuration or conftest.py, and its test ids
    stay ``tests_pre/test_x.py::test_y`` however deploygate was installed.
    """
    root = resources.bundle_root()
    return [
        sys.executable,
        "-m",
        "pytest",
        str(resources.suite_dir(gate)),
        "-c",
        str(resources.pytest_ini()),
        "--rootdir",
        str(root),
        "-p",
        "no:cacheprovider",
    ]


def check_names(gate: str) -> set[str]:
    """The names of the checks a gate's suite holds (collected by pytest, nothing run)."""
    done = subprocess.run([*suite_argv(gate), "--collect-only", "-q"], capture_output=True, text=True)
    return {line.split("::")[-1].split("[")[0] for line in done.stdout.splitlines() if "::" in line}


def skip_args(gate: str, skips: Mapping[str, str], names_of: Callable[[str], set[str]] = check_names) -> list[str]:
    """pytest arguments deselecting, with their reason, the checks of ``skips`` this gate holds (``names_of`` a gate)."""
    if not skips:
        return []
    names = sorted(set(skips) & names_of(gate))
    if not names:
        return []
    return request_flags.SKIP_CHECK.gate_args(names) + request_flags.REASON.gate_args(skips[names[0]])


def run_gate(settings: Settings, gate: str, args: list[str], *, result_path: Path, log: DeployLog) -> GateResult:
    """Run the suite of ``gate`` and return its result; raises ``GateResultError`` when it wrote none."""
    settings_file = log.path.with_name(f"{log.path.stem}_settings.json")  # the same for every gate of a deploy
    argv = [*suite_argv(gate), "-q", "--gate", gate, "--gate-result", str(result_path), *settings_args(settings, settings_file), *args]
    result_path.unlink(missing_ok=True)
    log(f"   running the {gate} gate ({SUITES[gate]})...")
    # From the project's folder: relative settings (logs, reports, state) mean the same to the suite as to the deploy.
    done = subprocess.run(argv, cwd=settings.root, capture_output=True, text=True)
    output = log.path.with_name(f"{log.path.stem}_{gate}.log")
    output.write_text(log.redact(done.stdout + done.stderr))
    result = gate_result.load(result_path)
    log_checks(result, log)
    log(f"   {gate}: {'passed' if result.passed else 'FAILED'} (pytest output: {output})")
    return result


def log_checks(result: GateResult, log: Say) -> None:
    """One line per check: verdict, name, measured value against its threshold, and why it failed."""
    for check in result.checks:
        measured = f" {check.value} (limit {check.threshold})" if check.value else ""
        why = f" — {check.summary}" if not check.passed and check.summary else ""
        log(f"   {check.outcome:7} {check.name}{measured}{why}")
    for name, reason in result.overrides.items():
        log(f"   override: {name} — {reason}")
    for note in result.notes:
        log(f"   note: {note}")


def notes(result: GateResult) -> list[str]:
    """The gate's notes for the deploy record (e.g. the operations the ORM checks could not exercise), named by gate."""
    return [f"{result.gate}: {note}" for note in result.notes]


def rows(result: GateResult) -> list[GateRow]:
    """The gate's checks as rows of the deploy record."""
    return [
        GateRow(
            gate=result.gate, name=c.name, category=c.category, threshold=c.threshold, value=c.value, verdict=c.outcome, message=c.summary
        )
        for c in result.checks
    ]
