"""``python -m deploygate``: the commands the nox sessions call.

Every failure deploygate anticipates ends as one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

from deploygate import config, images, stack
from deploygate.engine import ensure_engine
from deploygate.errors import DeployGateError


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _settings(args: argparse.Namespace) -> config.Settings:
    overrides = config.parse_assignments(args.set or [])
    return config.load(args.config, overrides=overrides)


def cmd_engine(args: argparse.Namespace) -> int:
    client = ensure_engine(say=_say)
    info = client.version()
    _say(f"Docker engine {info.get('Version')} answers (API {info.get('ApiVersion')})")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    settings = _settings(args)
    client = ensure_engine(say=_say)
    names = args.release or [settings.release]
    for image in (images.postgres_image(client, settings, _say), images.nginx_image(client, settings, _say)):
        _say(f"{image.tag}: {'built' if image.built else 'up to date'} ({image.id[:19]})")
    for name in names:
        image = images.release_image(client, settings, name, _say)
        _say(f"{image.tag}: {'built' if image.built else 'up to date'} ({image.id[:19]})")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    client = ensure_engine(say=_say)
    report = stack.up(client, settings, _say)
    total = report.timings["total_s"]
    if report.changes:
        _say(f"production up in {total:.1f}s; changes:")
        for change in report.changes:
            print(f"  - {change}")
    else:
        _say(f"production already up; nothing changed ({total:.1f}s)")
    _say(f"serving on {stack.proxy_url(settings)}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    settings = _settings(args)
    client = ensure_engine(say=_say)
    removed = stack.down(client, settings, volumes=args.volumes)
    _say(f"removed {len(removed)} object(s)" + ("" if args.volumes else "; data volume kept (use --volumes to drop it)"))
    for item in removed:
        print(f"  - {item}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    client = ensure_engine(say=_say)
    current = stack.status(client, settings)
    if current.live:
        print(f"live: {current.live.color} (release {current.live.release}) via {stack.proxy_url(settings)} -> {current.live.host}:{current.live.port}")
    else:
        print(f"live: nothing (no proxy config for project {settings.project}; run `nox -s up`)")
    for name, state in sorted(current.containers.items()):
        print(f"  {name}: {state}")
    if current.health is not None:
        print("health: " + json.dumps(current.health, sort_keys=True))
    else:
        print(f"health: unreachable ({current.health_error})")
    healthy = current.health is not None and current.health.get("status") == "healthy"
    return 0 if healthy else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploygate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help=f"configuration file (default {config.DEFAULT_CONFIG_FILE}, env {config.CONFIG_ENV})")
    parser.add_argument("--set", action="append", metavar="NAME=VALUE", help="override one setting (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("engine", help="make sure a Docker engine answers (installs/starts one if needed)").set_defaults(func=cmd_engine)
    p_images = sub.add_parser("images", help="build (or reuse) the images production needs")
    p_images.add_argument("--release", action="append", help="app release(s) to build (default: the configured one)")
    p_images.set_defaults(func=cmd_images)
    sub.add_parser("up", help="bring production up; idempotent").set_defaults(func=cmd_up)
    p_down = sub.add_parser("down", help="remove production's containers and network")
    p_down.add_argument("--volumes", action="store_true", help="also remove the database volume")
    p_down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="live release and colour, containers, health").set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DeployGateError as exc:
        print(f"deploygate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deploygate: interrupted", file=sys.stderr)
        return 130
