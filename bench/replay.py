"""The replay benchmark: what replaying production's recorded requests adds to the predeploy, in the same run.

Per size, a bench production is seeded and sent the configured traffic (``deploy.traffic_*``)
until its proxy has recorded ``requests`` of them; then the whole predeploy gate runs twice on
the same production and backup method: with the replay off (``replay.max_requests = 0``, the
baseline) and on. The figures: each direction's replay (the checks' own durations, the baseline's
two runs in the first one), and the gate with the replay as a ratio of the gate without
(``nox -s bench -- replay``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import settings as bench_settings
from bench.predeploy import timed_gate
from deploygate import production, recording, replay
from deploygate.errors import DeployGateError
from deploygate.log import Say, quiet
from deploygate.platform import connect
from deploygate.proxy import Proxy
from deploygate.traffic import configured_probe

BENCH_PROJECT = "dgbenchreplay"
_RATE_PER_S = 60  # the recording's traffic: fast enough to record 2,000 requests in well under a minute
_RECORD_LIMIT_S = 300
# The goal: the replay adds at most 50 % to the predeploy (at 1M rows).
GOAL_RATIO = 1.5


@dataclass
class ReplayBench:
    rows: int
    recorded: int = 0
    routes: int = 0
    gate_without_s: float = 0.0
    gate_with_s: float = 0.0
    passed: bool = False
    checks_s: dict[str, float] = field(default_factory=dict)  # per replay check, as the gate result has it
    runs_s: dict[str, float] = field(default_factory=dict)  # per run of the replay (the baseline's two included)

    @property
    def ratio(self) -> float:
        return self.gate_with_s / self.gate_without_s if self.gate_without_s else float("nan")


def _record(settings, requests: int, say: Say) -> recording.SampleSummary:
    """Traffic through the proxy until ``requests`` are in the sample (bounded in time)."""
    platform = connect(settings, quiet)
    proxy = Proxy(settings, platform)
    limits = recording.SampleLimits.of(settings)
    deadline = time.monotonic() + _RECORD_LIMIT_S
    with configured_probe(settings, proxy.url) as probe:
        while True:
            time.sleep(5)
            summary = recording.update_sample(recording.sample_path(settings), proxy.access_logs, limits, now=time.time())
            say(f"  recorded {summary.requests} of {requests}...")
            if summary.requests >= requests or time.monotonic() > deadline:
                break
        probe.stop()
    return summary


def _replay_checks(reports: Path) -> tuple[dict[str, float], dict[str, float]]:
    """The replay checks' own seconds (what the gate waited for at their turn), and each run's (in the background)."""
    result = json.loads(sorted((reports / "predeploy").glob("*.json"), key=lambda p: p.stat().st_mtime)[-1].read_text())
    checks = {c["name"]: float(c["duration_s"]) for c in result["checks"] if c["category"] == "replay" and c["outcome"] == "passed"}
    return checks, result.get("details", {}).get(replay.RUNS_DETAIL, {})


def bench_replay(
    root: Path, rows_list: list[int], requests: int, candidate: str, say: Say, *, sets=None, config_file=None
) -> list[ReplayBench]:
    results = []
    for rows in rows_list:
        with tempfile.TemporaryDirectory(prefix="dgbench-replay-") as tmp:
            own = {
                **bench_settings.seeded(BENCH_PROJECT, tmp, rows),
                "replay_max_requests": str(requests),
                "replay_per_route": str(requests),
                "traffic_rate": str(_RATE_PER_S),
            }
            overrides, settings, platform = bench_settings.fresh_production(root, own, sets, config_file, rows, say)
            bench = ReplayBench(rows=rows)
            try:
                say(f"[{rows:,} rows] recording {requests} requests of the configured traffic...")
                summary = _record(settings, requests, say)
                bench.recorded, bench.routes = summary.requests, summary.routes
                # --gate: the gate result (each check's duration) is written, as `nox -s predeploy` has it.
                argv = [sys.executable, "-m", "pytest", "tests_pre", "-q", "-p", "no:cacheprovider", "--gate", "predeploy"]
                argv += ["--candidate", candidate]
                if config_file:
                    argv += ["--dg-config", config_file]
                for name, value in overrides.items():
                    argv += ["--dg-set", f"{name}={value}"]
                say(f"[{rows:,} rows] the whole gate without the replay (baseline)...")
                bench.gate_without_s, passed_without, _ = timed_gate([*argv, "--dg-set", "replay_max_requests=0"], root, say)
                say(f"[{rows:,} rows] the whole gate with the replay of {bench.recorded} requests...")
                bench.gate_with_s, passed_with, _ = timed_gate(argv, root, say)
                bench.passed = passed_without and passed_with
                bench.checks_s, bench.runs_s = _replay_checks(Path(settings.path(settings.reports_dir)))
                if len(bench.checks_s) < 2:
                    raise DeployGateError(f"the replay checks did not pass: {bench.checks_s}")
            finally:
                production.down(platform, settings, volumes=True)
            results.append(bench)
    return results


def render(results: list[ReplayBench]) -> str:
    sizes = " | ".join(f"{r.rows:,} rows" for r in results)
    lines = [f"| | {sizes} |", "|---|" + "---:|" * len(results)]

    def row(label: str, cell) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in results) + " |")

    row("requests recorded (routes)", lambda r: f"{r.recorded:,} ({r.routes})")
    row("baseline: whole gate, replay off (s)", lambda r: f"{r.gate_without_s:.2f}")
    row("whole gate, replay on (s)", lambda r: f"{r.gate_with_s:.2f}" + ("" if r.passed else " (FAILED)"))
    # The runs start at the gate's first check and go beside the others; a check waits only for what is left.
    row("the replay's runs, in the background (s, longest)", lambda r: f"{max(r.runs_s.values(), default=0):.2f} ({len(r.runs_s)} runs)")
    row("the replay checks: waiting for them (s)", lambda r: f"{sum(r.checks_s.values()):.2f} ({len(r.checks_s)} checks)")
    row("**gate with replay / gate without**", lambda r: f"{r.ratio:.2f}x")
    return "\n".join(lines)


def save(results: list[ReplayBench], reports_dir: Path) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"bench_replay_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in results], indent=2))
    return path
