"""The predeploy benchmark, as a ratio against a baseline measured in the same run (absolute times are noisy here).

The pre-deploy gate's wall time split by stage, beside a raw ``pg_dump | pg_restore``
of the same database into the same Postgres image (``nox -s bench -- predeploy``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import settings as bench_settings
from bench.settings import free_port
from deploygate import app_checks, config, production, rehearsal
from deploygate.backup import take_backup
from deploygate.errors import DeployGateError
from deploygate.log import Say, quiet
from deploygate.packages import apt_install
from deploygate.platform import Platform, connect

BENCH_PROJECT = "dgbench"


@dataclass
class PredeployBench:
    rows: int
    stages: dict[str, float] = field(default_factory=dict)
    gate_wall_s: float = 0.0
    gate_passed: bool = False
    baseline_s: float = 0.0

    @property
    def stages_total_s(self) -> float:
        return sum(v for k, v in self.stages.items() if not k.startswith("  of which"))

    @property
    def ratio(self) -> float:
        return self.gate_wall_s / self.baseline_s if self.baseline_s else float("nan")


def _raw_dump_restore(platform: Platform, settings: config.Settings) -> float:
    """Seconds for ``pg_dump -Fc | pg_restore`` of production into a fresh database of the same image.

    The host's own client tools (Debian's postgresql-client, installed when missing) stream
    from one server to the other: the plainest copy there is, as the baseline.
    """
    if shutil.which("pg_dump") is None:
        failure = apt_install("postgresql-client")
        if failure:
            raise DeployGateError(f"the baseline needs pg_dump on this host: {failure}")
    source = platform.database()
    with rehearsal.empty_database(platform, settings, platform.database_image()) as target:
        copy = target.host_address
        dump = f"pg_dump -Fc -h {source.host} -p {source.port} -U {source.user} -d {source.name}"
        load = f"pg_restore --no-owner --no-acl -h {copy.host} -p {copy.port} -U {copy.user} -d {copy.name}"
        # Both passwords by environment, never on a command line (PGPASSWORD for one, a pgpass line for both).
        with tempfile.NamedTemporaryFile("w", prefix="dgbench-pgpass-") as pgpass:
            for address in (source, copy):
                pgpass.write(f"{address.host}:{address.port}:{address.name}:{address.user}:{address.password}\n")
            pgpass.flush()
            os.chmod(pgpass.name, 0o600)
            started = time.monotonic()
            subprocess.run(
                f"set -o pipefail; {dump} | {load}",
                shell=True,
                executable="/bin/bash",
                check=True,
                capture_output=True,
                env={**os.environ, "PGPASSFILE": pgpass.name},
            )
            return time.monotonic() - started


def _stage_times(platform: Platform, settings: config.Settings, candidate: str) -> dict[str, float]:
    """The gate's own library calls, in the gate's order, each timed."""
    times: dict[str, float] = {}
    started = time.monotonic()
    image = platform.resolve_image(candidate, quiet)
    db = platform.database()
    times["candidate_image"] = time.monotonic() - started
    started = time.monotonic()
    backup = take_backup(platform, settings, db, say=quiet)
    times["backup"] = time.monotonic() - started
    started = time.monotonic()
    with rehearsal.database_copy(platform, settings, platform.database_image(), backup, say=quiet) as copy:
        times["copy_restore_verify"] = time.monotonic() - started
        done = rehearsal.rehearse(platform, settings, image, copy, say=quiet)
        if app_checks.configured(settings):
            started = time.monotonic()
            app_checks.run(platform, settings, image, copy.app_environment(settings), network=copy.scratch.database.network)
            times["app_checks"] = time.monotonic() - started
        for name, seconds in done.timings.items():
            # Inside the probe batches: shown for the split, not added again to the sum.
            prefix = "  of which " if name.startswith(("compat_", "orm_", "migrate_in_")) else "rehearsal_"
            times[f"{prefix}{name.removesuffix('_s')}"] = seconds
        started = time.monotonic()
        rehearsal.reverse(platform, settings, done, copy, say=quiet)
        times["reversal"] = time.monotonic() - started
    return {name: round(seconds, 2) for name, seconds in times.items()}


def bench_predeploy(
    root: Path,
    rows_list: list[int],
    candidate: str = "v2-safe",
    say: Say = print,
    *,
    sets: dict[str, str] | None = None,
    config_file: str | None = None,
) -> list[PredeployBench]:
    """Bring up a bench production per size, then time baseline, stages and the whole gate.

    ``sets`` (``--set``) go over the bench's own settings, in this process and in the gate's.
    """
    results = []
    for rows in rows_list:
        with tempfile.TemporaryDirectory(prefix="dgbench-") as tmp:
            own = {
                "project": BENCH_PROJECT,
                "proxy_port": str(free_port()),
                "state_dir": f"{tmp}/state",
                "backup_dir": f"{tmp}/backups",
                "reports_dir": f"{tmp}/reports",
                "seed_rows": str(rows),
                "seed_members": str(max(200, rows // 100)),
            }
            overrides = bench_settings.merged(own, sets)
            settings = bench_settings.load(root, overrides, config_file)
            platform = connect(settings, say)
            production.down(platform, settings, volumes=True)
            say(f"[{rows:,} rows] bringing up the bench production (seeding is not timed)...")
            production.up(platform, settings, say=quiet)
            bench = PredeployBench(rows=rows)
            try:
                say(f"[{rows:,} rows] baseline: pg_dump | pg_restore...")
                bench.baseline_s = round(_raw_dump_restore(platform, settings), 2)
                say(f"[{rows:,} rows] gate stages...")
                bench.stages = _stage_times(platform, settings, candidate)
                say(f"[{rows:,} rows] the whole gate (nox -s predeploy's pytest run)...")
                argv = [sys.executable, "-m", "pytest", "tests_pre", "-q", "-p", "no:cacheprovider", "--candidate", candidate]
                if config_file:
                    argv += ["--dg-config", config_file]
                for name, value in overrides.items():
                    argv += ["--dg-set", f"{name}={value}"]
                started = time.monotonic()
                done = subprocess.run(argv, cwd=root, capture_output=True, text=True)
                bench.gate_wall_s = round(time.monotonic() - started, 2)
                bench.gate_passed = done.returncode == 0
            finally:
                production.down(platform, settings, volumes=True)
            results.append(bench)
    return results


def render(results: list[PredeployBench]) -> str:
    """A markdown table: stages per size, the whole gate, the baseline and the ratio."""
    stage_names = list(dict.fromkeys(name for r in results for name in r.stages))
    header = "| stage | " + " | ".join(f"{r.rows:,} rows (s)" for r in results) + " |"
    lines = [header, "|---|" + "---:|" * len(results)]
    for name in stage_names:
        lines.append(f"| {name} | " + " | ".join(f"{r.stages.get(name, 0):.2f}" for r in results) + " |")
    lines.append("| **sum of stages** | " + " | ".join(f"{r.stages_total_s:.2f}" for r in results) + " |")
    lines.append(
        "| **whole gate (pytest tests_pre)** | "
        + " | ".join(f"{r.gate_wall_s:.2f}" + ("" if r.gate_passed else " (FAILED)") for r in results)
        + " |"
    )
    lines.append("| baseline: pg_dump \\| pg_restore | " + " | ".join(f"{r.baseline_s:.2f}" for r in results) + " |")
    lines.append("| **ratio gate / baseline** | " + " | ".join(f"{r.ratio:.2f}x" for r in results) + " |")
    return "\n".join(lines)


def save(results: list[PredeployBench], reports_dir: Path) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"bench_predeploy_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps([{**r.__dict__, "ratio": r.ratio} for r in results], indent=2))
    return path
