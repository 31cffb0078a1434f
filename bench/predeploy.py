"""The predeploy benchmark, as a ratio against baselines measured in the same run (absolute times are noisy here).

The pre-deploy gate's wall time split by stage, for each way of copying production (snapshot: production's
data directory on an XFS with reflinks the bench makes, backed up by clones; physical: pg_basebackup and
a copy started on it, cloned on that XFS, or an overlay on this machine's own disk; logical: pg_dump and
a restore), beside a raw ``pg_basebackup`` and a raw
``pg_dump | pg_restore`` of the same database (``nox -s bench -- predeploy``). Also: how long the
copy takes to answer, the disk each copy uses, and deploygate's own peak memory (the gate's pytest
process, its children's containers excluded).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import settings as bench_settings
from deploygate import app_checks, config, production, rehearsal
from deploygate.backup_physical import take_by_method
from deploygate.database import connect as connect_db
from deploygate.errors import DeployGateError
from deploygate.log import Say, quiet
from deploygate.packages import apt_install
from deploygate.platform import Platform
from deploygate.platform.clone import CloneError, make_clone_filesystem, remove_clone_filesystem
from deploygate.platform.scratch import COPIES_DIR

BENCH_PROJECT = "dgbench"


# Each way of copying production the bench can run: its name, backup.method, backup.copy, backup.dump_jobs.
VARIANTS = {
    # Production's own data directory on the bench's XFS, backed up by clones (backup.method snapshot).
    "snapshot, clone": ("snapshot", "clone", 1),
    "physical, clone": ("physical", "clone", 1),
    "physical, overlay": ("physical", "overlay", 1),
    "logical": ("logical", "auto", 1),
    # pg_dump's directory format with 2 jobs: one job per table at a time (not run unless asked: --variants).
    "logical, 2 dump jobs": ("logical", "auto", 2),
}
DEFAULT_VARIANTS = ("snapshot, clone", "physical, clone", "physical, overlay", "logical")
CLONE_FS_GB = 64  # the sparse image's size: it takes only what the backups and copies on it use


@dataclass
class MethodRun:
    """One variant's gate (a way of copying production) at one size."""

    stages: dict[str, float] = field(default_factory=dict)
    gate_wall_s: float = 0.0
    gate_passed: bool = False
    gate_rss_mb: float = 0.0  # peak resident memory of the gate's pytest process
    copy_ready_s: float = 0.0
    copy_disk_mb: float = 0.0  # what the copy wrote (physical) or holds (logical: the restored database)
    backup_disk_mb: float = 0.0  # what the backup took on disk (a snapshot: only blocks it does not share)

    @property
    def stages_total_s(self) -> float:
        return sum(v for k, v in self.stages.items() if not k.startswith("  of which"))


@dataclass
class PredeployBench:
    rows: int
    database_mb: float = 0.0
    baseline_s: float = 0.0  # raw pg_dump | pg_restore
    basebackup_s: float = 0.0  # raw pg_basebackup
    runs: dict[str, MethodRun] = field(default_factory=dict)

    def ratio(self, method: str) -> float:
        run = self.runs.get(method)
        return run.gate_wall_s / self.baseline_s if run and self.baseline_s else float("nan")


def _host_client() -> None:
    """Debian's postgresql-client on this host (installed when missing): the baselines' tools."""
    if shutil.which("pg_dump") is None or shutil.which("pg_basebackup") is None:
        failure = apt_install("postgresql-client")
        if failure:
            raise DeployGateError(f"the baselines need pg_dump and pg_basebackup on this host: {failure}")


def _raw_dump_restore(platform: Platform, settings: config.Settings) -> float:
    """Seconds for ``pg_dump -Fc | pg_restore`` of production into a fresh database of the same image.

    The host's own client tools (Debian's postgresql-client, installed when missing) stream
    from one server to the other: the plainest copy there is, as the baseline.
    """
    _host_client()
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


def _raw_basebackup(platform: Platform) -> float:
    """Seconds for a plain ``pg_basebackup -Fp -X stream`` of production by the host's client: the other baseline."""
    _host_client()
    source = platform.database()
    with tempfile.TemporaryDirectory(prefix="dgbench-base-") as target:
        started = time.monotonic()
        subprocess.run(
            ["pg_basebackup", "-h", source.host, "-p", str(source.port), "-U", source.user, "-D", f"{target}/data"]
            + ["-Fp", "-X", "stream", "--checkpoint=fast", "--no-password"],
            check=True,
            capture_output=True,
            env={**os.environ, "PGPASSWORD": source.password},
        )
        return time.monotonic() - started


def _used_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def _copy_disk_bytes(copy: rehearsal.DatabaseCopy, backup_dir: Path, used_before: int) -> int:
    """What the copy costs on disk: the blocks its filesystem gave it (a clone, on the bench's own XFS), its
    overlay's upper directory, or the restored database (logical)."""
    kind = copy.scratch.database.copy_kind
    if kind == "clone":
        return _used_bytes(backup_dir) - used_before
    if kind == "overlay":
        copies = backup_dir / COPIES_DIR
        return sum(p.stat().st_size for p in copies.rglob("*") if p.is_file())
    with connect_db(copy.host_address) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


@contextmanager
def _clone_filesystem(tmp: Path, say: Say) -> Iterator[Path | None]:
    """An XFS with reflinks for the clone variant (this machine's ext4 cannot clone); None where none can be made."""
    image, mount = tmp / "clonefs.img", tmp / "clonefs"
    try:
        make_clone_filesystem(image, mount, CLONE_FS_GB)
    except (CloneError, OSError) as exc:
        say(f"the clone variant is left out: {exc}")
        image.unlink(missing_ok=True)
        yield None
        return
    try:
        yield mount
    finally:
        remove_clone_filesystem(image, mount)


def _stage_times(platform: Platform, settings: config.Settings, candidate: str, method: str) -> tuple[dict[str, float], int, int, float]:
    """The gate's own library calls, in the gate's order, each timed; with the backup's and the copy's disk,
    and the copy's ready time."""
    times: dict[str, float] = {}
    started = time.monotonic()
    image = platform.resolve_image(candidate, quiet)
    db = platform.database()
    times["candidate_image"] = time.monotonic() - started
    backup_dir = settings.path(settings.backup_dir)
    used_before = _used_bytes(backup_dir)
    started = time.monotonic()
    backup = take_by_method(platform, settings, db, say=quiet)
    snapshot = backup.pg_dump_version.startswith("pg_backup_start")
    if (backup.method, snapshot) != ("physical" if method == "snapshot" else method, method == "snapshot"):
        raise DeployGateError(f"asked for a {method} backup, got a {backup.method} one ({backup.pg_dump_version})")
    times["backup"] = time.monotonic() - started
    backup_disk = _used_bytes(backup_dir) - used_before if snapshot else backup.size
    used_before = _used_bytes(backup_dir)
    started = time.monotonic()
    with rehearsal.database_copy(platform, settings, platform.database_image(), backup, say=quiet) as copy:
        times["copy_restore_verify" if method == "logical" else "copy_ready"] = time.monotonic() - started
        ready_s = time.monotonic() - started
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
        disk = _copy_disk_bytes(copy, backup_dir, used_before)
    return {name: round(seconds, 2) for name, seconds in times.items()}, backup_disk, disk, round(ready_s, 2)


def timed_gate(argv: list[str], root: Path, say: Say = quiet) -> tuple[float, bool, float]:
    """Wall seconds, passed, and peak RSS (MB) of one gate run: ``wait4`` gives that child's own peak. A gate
    that fails has its last lines said (the figures of a failed gate are no figures)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as output:
        child = subprocess.Popen(argv, cwd=root, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            output.seek(0)
            say("the gate failed:\n" + "\n".join(output.read().decode(errors="replace").splitlines()[-40:]))
    return round(time.monotonic() - started, 2), child.returncode == 0, round(usage.ru_maxrss / 1024, 1)


def bench_predeploy(
    root: Path,
    rows_list: list[int],
    candidate: str = "v2-safe",
    say: Say = print,
    *,
    sets: dict[str, str] | None = None,
    config_file: str | None = None,
    results: list[PredeployBench] | None = None,
    variants: Sequence[str] = DEFAULT_VARIANTS,
) -> list[PredeployBench]:
    """Bring up a bench production per size, then time baseline, stages and the whole gate.

    ``sets`` (``--set``) go over the bench's own settings, in this process and in the gate's. Each size's
    result is appended to ``results`` (when given) as soon as it is measured, so a failure keeps the others.
    """
    results = [] if results is None else results
    for rows in rows_list:
        with tempfile.TemporaryDirectory(prefix="dgbench-") as tmp, _clone_filesystem(Path(tmp), say) as clone_fs:
            own = bench_settings.seeded(BENCH_PROJECT, tmp, rows)
            if clone_fs is not None:  # production's data where a snapshot can clone it (every variant reads it there)
                own["db_data_dir"] = str(clone_fs / "pgdata")
            overrides, settings, platform = bench_settings.fresh_production(root, own, sets, config_file, rows, say)
            bench = PredeployBench(rows=rows)
            try:
                with connect_db(platform.database()) as conn:
                    bench.database_mb = round(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6, 1)
                say(f"[{rows:,} rows] baselines: pg_basebackup, then pg_dump | pg_restore...")
                bench.basebackup_s = round(_raw_basebackup(platform), 2)
                bench.baseline_s = round(_raw_dump_restore(platform, settings), 2)
                for variant in variants:
                    method, copy, jobs = VARIANTS[variant]
                    if copy == "clone" and clone_fs is None:
                        continue
                    run = MethodRun()
                    own_method = {**overrides, "backup_method": method, "backup_copy": copy, "backup_dump_jobs": str(jobs)}
                    if copy == "clone":
                        own_method["backup_dir"] = str(clone_fs / "backups")
                    method_settings = settings.replace(
                        backup_method=method,
                        backup_copy=copy,
                        backup_dump_jobs=jobs,
                        backup_dir=own_method.get("backup_dir", settings.backup_dir),
                    )
                    Path(method_settings.path(method_settings.backup_dir)).mkdir(parents=True, exist_ok=True)
                    say(f"[{rows:,} rows] {variant}: gate stages...")
                    run.stages, backup_disk, disk, run.copy_ready_s = _stage_times(platform, method_settings, candidate, method)
                    run.backup_disk_mb, run.copy_disk_mb = round(backup_disk / 1e6, 1), round(disk / 1e6, 1)
                    say(f"[{rows:,} rows] {variant}: the whole gate (nox -s predeploy's pytest run)...")
                    argv = [sys.executable, "-m", "pytest", "tests_pre", "-q", "-p", "no:cacheprovider", "--candidate", candidate]
                    if config_file:
                        argv += ["--dg-config", config_file]
                    for name, value in own_method.items():
                        argv += ["--dg-set", f"{name}={value}"]
                    run.gate_wall_s, run.gate_passed, run.gate_rss_mb = timed_gate(argv, root, say)
                    bench.runs[variant] = run
            finally:
                production.down(platform, settings, volumes=True)
            results.append(bench)
    return results


def render(results: list[PredeployBench]) -> str:
    """A markdown table: per size, the database, both baselines, and per method its stages, the whole gate,
    its ratio to the pg_dump | pg_restore baseline, the copy's readiness and disk, and the gate's peak RSS."""
    sizes = " | ".join(f"{r.rows:,} rows" for r in results)
    lines = [f"| | {sizes} |", "|---|" + "---:|" * len(results)]

    def row(label: str, cell) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in results) + " |")

    row("database (MB)", lambda r: f"{r.database_mb:,.0f}")
    row("baseline: raw pg_basebackup (s)", lambda r: f"{r.basebackup_s:.2f}")
    row("baseline: raw pg_dump \\| pg_restore (s)", lambda r: f"{r.baseline_s:.2f}")
    for method in VARIANTS:
        if not any(method in r.runs for r in results):
            continue
        runs = [r.runs.get(method, MethodRun()) for r in results]
        stage_names = list(dict.fromkeys(name for run in runs for name in run.stages))
        for name in stage_names:
            lines.append(f"| {method}: {name} (s) | " + " | ".join(f"{run.stages.get(name, 0):.2f}" for run in runs) + " |")
        lines.append(f"| {method}: sum of stages (s) | " + " | ".join(f"{run.stages_total_s:.2f}" for run in runs) + " |")
        lines.append(
            f"| **{method}: whole gate (pytest tests_pre) (s)** | "
            + " | ".join(f"{run.gate_wall_s:.2f}" + ("" if run.gate_passed else " (FAILED)") for run in runs)
            + " |"
        )
        row(f"**{method}: gate / pg_dump \\| pg_restore**", lambda r, m=method: f"{r.ratio(m):.2f}x")
        first = runs[0].gate_wall_s if runs else 0
        lines.append(
            f"| {method}: gate / gate at {results[0].rows:,} rows | "
            + " | ".join(f"{run.gate_wall_s / first:.2f}x" if first else "n/a" for run in runs)
            + " |"
        )
        lines.append(f"| {method}: backup on disk (MB) | " + " | ".join(f"{run.backup_disk_mb:,.1f}" for run in runs) + " |")
        lines.append(f"| {method}: copy ready (s) | " + " | ".join(f"{run.copy_ready_s:.2f}" for run in runs) + " |")
        lines.append(f"| {method}: disk per copy (MB) | " + " | ".join(f"{run.copy_disk_mb:,.1f}" for run in runs) + " |")
        lines.append(f"| {method}: gate peak RSS (MB) | " + " | ".join(f"{run.gate_rss_mb:,.0f}" for run in runs) + " |")
    return "\n".join(lines)


def save(results: list[PredeployBench], reports_dir: Path) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"bench_predeploy_{time.strftime('%Y%m%d_%H%M%S')}.json"
    rows = [{**asdict(r), "ratios": {m: r.ratio(m) for m in r.runs}} for r in results]
    path.write_text(json.dumps(rows, indent=2))
    return path
