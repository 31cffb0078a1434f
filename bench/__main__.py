"""``python -m bench predeploy|switch|soak``: what ``nox -s bench`` runs, from a checkout of this repository.

Each prints a markdown table, saves the figures as JSON under ``<reports_dir>/bench/`` and
exits 0 when the run met its goal, 1 when it did not, 2 (one line on stderr) when it could
not run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import predeploy, replay, soak, switch
from bench import settings as bench_settings
from deploygate import config
from deploygate.errors import DeployGateError

# The benches bring up the demo of this checkout (its deploy.toml, demo/, tests_pre/), wherever they are started from.
ROOT = Path(__file__).resolve().parents[1]


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _reports(args: argparse.Namespace) -> Path:
    settings = bench_settings.load(ROOT, args.sets, args.config)
    return settings.path(settings.reports_dir) / "bench"


def run_predeploy(args: argparse.Namespace) -> int:
    results: list[predeploy.PredeployBench] = []
    try:
        predeploy.bench_predeploy(
            ROOT,
            args.rows,
            candidate=args.candidate,
            say=_say,
            sets=args.sets,
            config_file=args.config,
            results=results,
            variants=args.variants or predeploy.DEFAULT_VARIANTS,
        )
    finally:
        # The sizes measured before a failure are kept: a 10M-row run takes many minutes to measure again.
        if results:
            print(predeploy.render(results))
            _say(f"saved {predeploy.save(results, _reports(args))}")
    return 0 if all(run.gate_passed for r in results for run in r.runs.values()) else 1


def run_soak(args: argparse.Namespace) -> int:
    result = soak.soak(
        ROOT,
        cycles=args.cycles,
        clients=(args.clients or [8])[0],
        candidate=args.candidate,
        say=_say,
        sets=args.sets,
        config_file=args.config,
    )
    print(soak.render(result))
    _say(f"saved {soak.save(result, _reports(args))}")
    return 0 if result.clean else 1


def run_switch(args: argparse.Namespace) -> int:
    results = switch.bench_switch(
        ROOT,
        clients_list=args.clients or [16, 64],
        switches=args.switches,
        interval_s=args.interval,
        get_path=args.get_path,
        say=_say,
        sets=args.sets,
        config_file=args.config,
    )
    print(switch.render(results))
    _say(f"saved {switch.save(results, _reports(args))}")
    met = all(r.goal_met for r in results if r.mechanism == switch.HAPROXY)
    goal = f"no unanswered request, no 5xx, p99 around switches <= {switch.P99_RATIO_GOAL:g}x outside"
    _say(f"goal ({goal}) with the runtime switch: {'met' if met else 'NOT met'}")
    return 0 if met else 1


def run_replay(args: argparse.Namespace) -> int:
    results = replay.bench_replay(ROOT, args.rows, args.requests, args.candidate, _say, sets=args.sets, config_file=args.config)
    print(replay.render(results))
    _say(f"saved {replay.save(results, _reports(args))}")
    met = all(r.passed and r.ratio <= replay.GOAL_RATIO for r in results)
    _say(f"goal (the gate with the replay at most {replay.GOAL_RATIO:g}x the gate without): {'met' if met else 'NOT met'}")
    return 0 if met else 1


RUNS = {"predeploy": run_predeploy, "switch": run_switch, "soak": run_soak, "replay": run_replay}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="deploygate's benchmarks, as ratios to a baseline measured in the same run"
    )
    parser.add_argument("what", choices=list(RUNS), help="what to measure")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="predeploy, replay: seed rows per run")
    parser.add_argument("--candidate", default="v2-safe", help="predeploy, soak: the candidate deployed")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(predeploy.VARIANTS),
        metavar="VARIANT",
        help=f"predeploy: the ways of copying production measured, each quoted ({'; '.join(predeploy.VARIANTS)}; default: all but the last)",
    )
    parser.add_argument("--clients", type=int, nargs="+", help="switch: keep-alive client counts (16 64); soak: clients (8)")
    parser.add_argument("--cycles", type=int, default=20, help="soak: deploy + rollback cycles")
    parser.add_argument("--requests", type=int, default=2000, help="replay: recorded requests replayed per direction")
    parser.add_argument("--switches", type=int, default=50, help="switch: color switches per run")
    parser.add_argument("--interval", type=float, default=1.5, help="switch: seconds between switches")
    parser.add_argument("--get-path", help="switch: the clients' GET path (default: health_path; POSTs use traffic_write_path/body)")
    parser.add_argument("--config", help="a deploy.toml other than the repository's")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting over the bench's own (e.g. project=mybench, to stay off another run's production)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.sets = config.parse_assignments(args.assignments)
        return RUNS[args.what](args)
    except DeployGateError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
