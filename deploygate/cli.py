"""``python -m deploygate``: the commands the nox sessions call.

Every failure deploygate anticipates ends as one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
import time
from collections.abc import Sequence

from deploygate import __version__, cache, config, production
from deploygate import request_flags as flags
from deploygate.cli_common import say_unfinished, settings_from
from deploygate.deploy.abort import Aborted
from deploygate.errors import DeployGateError
from deploygate.platform import connect
from deploygate.platform.engine import ensure_engine


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cmd_engine(args: argparse.Namespace) -> int:
    client = ensure_engine(say=_say)
    info = client.version()
    _say(f"Docker engine {info.get('Version')} answers (API {info.get('ApiVersion')})")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    platform = connect(settings, _say)
    # The cache's image serves production's Redis and the cache gate's scratch one alike.
    services = ("postgres", "proxy", "cache") if cache.configured(settings) else ("postgres", "proxy")
    found = [platform.service_image(name, _say) for name in services]
    found += [platform.resolve_image(name, _say) for name in args.release or [settings.release]]
    for image in found:
        _say(f"{image.tag}: {'built' if image.built else 'up to date'} ({image.id[:19]})")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    report = production.up(connect(settings, _say), settings, _say)
    total = report.timings["total_s"]
    if report.changes:
        _say(f"production up in {total:.1f}s; changes:")
        for change in report.changes:
            print(f"  - {change}")
    else:
        _say(f"production already up; nothing changed ({total:.1f}s)")
    _say(f"serving on http://{settings.proxy_bind}:{settings.proxy_port}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    removed = production.down(connect(settings, _say), settings, volumes=args.volumes)
    _say(f"removed {len(removed)} object(s)" + ("" if args.volumes else "; data volume kept (use --volumes to drop it)"))
    for item in removed:
        print(f"  - {item}")
    return 0


# `status` exits with this while a deploy is unfinished, whatever the health says.
EXIT_UNFINISHED = 3


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    platform = connect(settings, _say)
    open_deploy = say_unfinished(platform)
    current = production.status(platform, settings)
    if current.live:
        hold = ", behind a maintenance hold" if current.live.hold else ""
        print(f"live: {current.live.color} (release {current.live.release}{hold}) via http://{settings.proxy_bind}:{settings.proxy_port}")
    else:
        print(f"live: nothing (no proxy state for project {settings.project}; run `nox -s up`)")
    for name, state in sorted(current.parts.items()):
        print(f"  {name}: {state}")
    health = current.health
    detail = f" {json.dumps(health.detail, sort_keys=True)}" if health.detail else " (no detail reported)"
    print(f"health: {health.url} {health.describe()}{detail if health.status_code else ''}")
    if open_deploy:
        return EXIT_UNFINISHED
    return 0 if health.ok else 1


def cmd_deploy(args: argparse.Namespace) -> int:
    from deploygate import deploy
    from deploygate.record import Outcome

    settings = settings_from(args)
    reason = (args.reason or "").strip()
    if (args.accept_incompatible or args.skip_predeploy or args.skip_check) and not reason:
        raise config.ConfigError('--accept-incompatible, --skip-predeploy and --skip-check need --reason "why" (it is recorded)')
    request = deploy.Request(
        candidate_ref=args.candidate,
        dry_run=args.dry_run,
        accept_incompatible=reason if args.accept_incompatible else None,
        skip_predeploy=reason if args.skip_predeploy else None,
        gate_args=tuple(args.gate_arg or ()),
        skip_checks={name: reason for name in args.skip_check or ()},
    )
    platform = connect(settings, _say)
    say_unfinished(platform)
    result = deploy.deploy(platform, settings, request)
    _say(f"{result.outcome.value}{': ' + result.detail if result.detail else ''}")
    return 0 if result.outcome in (Outcome.SUCCEEDED, Outcome.DRY_RUN) else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from deploygate import deploy

    reason = (args.reason or "").strip()
    if args.accept_schema_mismatch and not reason:
        raise config.ConfigError('--accept-schema-mismatch needs --reason "why" (it is recorded)')
    accepted = reason if args.accept_schema_mismatch else None
    settings = settings_from(args)
    platform = connect(settings, _say)
    say_unfinished(platform)
    result = deploy.rollback(platform, settings, force=args.force, only_unfinished=args.if_unfinished, accept_schema_mismatch=accepted)
    if result is None:
        _say("no unfinished deploy: nothing to converge")
        return 0
    _say(f"{result.outcome.value}: {result.detail}")
    return 0


def cmd_predeploy(args: argparse.Namespace) -> int:
    """The pre-deploy gate: pytest on deploygate's tests_pre (wherever it is installed), from this folder."""
    import subprocess

    from deploygate import resources
    from deploygate.deploy.gates import suite_argv
    from deploygate.signal_relay import relaying_signals

    settings = settings_from(args)
    root = resources.bundle_root()
    # A test id (tests_pre/test_backup.py::test_backup_restores) names a file of the suite, not of this folder.
    ids = [str(root / arg) for arg in args.pytest_args if arg.startswith("tests_pre")]
    rest = [arg for arg in args.pytest_args if not arg.startswith("tests_pre")]
    argv = suite_argv("predeploy")
    if ids:
        argv = [arg for arg in argv if arg != str(resources.suite_dir("predeploy"))] + ids
    junit = settings.path(settings.reports_dir) / "predeploy" / f"junit_{time.strftime('%Y%m%d_%H%M%S')}.xml"
    # The request's flags in the suite's spelling (--config is --dg-config there), then pytest's own as given.
    given = {**vars(args), "config": getattr(args, "config", None), "set": [*args.set_before, *args.set_after]}
    passed = [arg for flag in flags.PREDEPLOY for arg in flag.gate_args(given[flag.dest])]
    # Waiting for the gate whatever signal comes: left to itself, subprocess.run would SIGKILL it 0.25 s after
    # Ctrl-C, before it removed its copy; the gate hears the signal from its group or from this relay.
    with relaying_signals():
        return subprocess.run([*argv, "--gate", "predeploy", f"--junitxml={junit}", *passed, *rest], check=False).returncode


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deploygate import init, init_files

    answers = init.Answers(
        manage_py=args.manage_py,
        settings_module=args.settings_module,
        database_url=args.database_url,
        db_env_prefix=args.db_env_prefix,
        health_path=args.health_path,
        app_port=args.app_port,
        project=args.project,
        release=args.release,
        image_repo=args.image_repo,
        proxy_port=args.proxy_port,
        db_name=args.db_name,
        db_user=args.db_user,
        env=dict(config.parse_assignments(args.env or [])),
        secrets=dict(config.parse_assignments(args.secret or [])),
        processes=dict(config.parse_assignments(args.process or [])),
        checks_dir="" if args.no_checks else args.checks,
        window=args.window,
        timezone=args.timezone,
        branch=args.branch,
        runs_on=args.runs_on,
        github=not args.no_github,
        gitlab=not args.no_gitlab,
    )
    root = Path(args.path)
    project = init.discover(root, answers)
    for line in init.describe(project):
        print(f"  {line}")
    outcome = init_files.write(project.root, init_files.render(project, answers), force=args.force)
    for path, what in outcome.items():
        print(f"{what:>9}  {path}")
    kept = [path for path, what in outcome.items() if what == init_files.KEPT]
    if kept:
        print(
            f"deploygate: kept {len(kept)} existing file(s) that differ from what init writes: {', '.join(kept)} (--force replaces them)",
            file=sys.stderr,
        )
        return 1
    return 0


def _init_parser(sub) -> None:
    p = sub.add_parser("init", help="write deploy.toml, a noxfile, an example check and CI files into a Django repository")
    p.set_defaults(func=cmd_init)
    found = p.add_argument_group("what init would otherwise guess from the project")
    found.add_argument("--path", default=".", help="the repository (default: this folder)")
    found.add_argument("--manage-py", help="manage.py, relative to the repository (default: the shallowest one)")
    found.add_argument(
        "--settings-module", help="DJANGO_SETTINGS_MODULE (default: from manage.py, a Dockerfile, or the package beside manage.py)"
    )
    db = found.add_mutually_exclusive_group()
    db.add_argument("--database-url", metavar="VARIABLE", help="the app reads the database as one URL from this variable")
    db.add_argument("--db-env-prefix", metavar="PREFIX", help="the app reads <PREFIX>HOST, PORT, NAME, USER, PASSWORD")
    found.add_argument("--health-path", help="the health URL (default: one whose name says health in the project's urls.py)")
    found.add_argument("--app-port", type=int, help="the port the image serves on (default: the Dockerfile's EXPOSE, else 8000)")
    told = p.add_argument_group("what init cannot know")
    told.add_argument("--project", help="prefix of every Docker object (default: the repository folder's name)")
    told.add_argument("--release", help="the image production runs today (default: <image-repo>:latest)")
    told.add_argument(
        "--image-repo", help="where CI pushes the app's images; CI deploys <image-repo>:<commit> (default: registry.example.com/<project>)"
    )
    told.add_argument("--proxy-port", type=int, default=8080, help="port the proxy publishes the app on (default 8080)")
    told.add_argument("--db-name", help="database name (default: the project)")
    told.add_argument("--db-user", help="database user (default: the project)")
    told.add_argument("--env", action="append", metavar="NAME=VALUE", help="plain environment of the app's containers (repeatable)")
    told.add_argument(
        "--secret", action="append", metavar="NAME=env:VAR", help="a secret of the app, as env:VAR or file:/path (repeatable)"
    )
    told.add_argument(
        "--process", action="append", metavar="NAME=COMMAND", help="a process beside the web server, e.g. worker=... (repeatable)"
    )
    told.add_argument("--checks", default="deploy_checks", help="folder of the example pytest-django check (default deploy_checks)")
    told.add_argument("--no-checks", action="store_true", help="write no example check and no app.checks")
    told.add_argument("--window", default="02:00-04:00", help="deploy window, local HH:MM-HH:MM (default 02:00-04:00)")
    told.add_argument("--timezone", default="UTC", help="time zone of the window (default UTC)")
    ci = p.add_argument_group("CI files")
    ci.add_argument("--branch", default="main", help="the branch that deploys (default main)")
    ci.add_argument("--runs-on", default="[self-hosted, production]", help="GitHub runner labels that reach production's engine")
    ci.add_argument("--no-github", action="store_true", help="no .github/workflows/deploygate.yml")
    ci.add_argument("--no-gitlab", action="store_true", help="no .gitlab-ci.yml")
    p.add_argument("--force", action="store_true", help="replace files that exist with other content")


def _predeploy_parser(sub, common: argparse.ArgumentParser) -> None:
    # No abbreviations: pytest's --co must not be taken for --config.
    p = sub.add_parser(
        "predeploy",
        parents=[common],
        allow_abbrev=False,
        help="the pre-deploy gate (production is only read); other arguments go to pytest: --candidate, -k, a test id",
    )
    p.set_defaults(func=cmd_predeploy, passes_unknown=True)
    for flag in flags.PREDEPLOY:
        if flag not in (flags.CONFIG, flags.SET):  # from `common`, as on every command
            p.add_argument(flag.name, **flag.kwargs())


def _common(where: str) -> argparse.ArgumentParser:
    """--config and --set, accepted before the command and after it (`nox -s deploy -- --config FILE`).

    A subcommand's values land in the namespace over the main parser's, so each place keeps
    its own ``--set`` list (``_settings`` joins them) and a ``--config`` after the command wins.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(flags.CONFIG.name, **flags.CONFIG.kwargs(default=argparse.SUPPRESS))
    common.add_argument(flags.SET.name, **flags.SET.kwargs(dest=f"set_{where}"))
    return common


def cmd_abort(args: argparse.Namespace) -> int:
    from deploygate import ledger
    from deploygate.deploy import abort
    from deploygate.lock import DeployLock, LockHeld

    settings = settings_from(args)
    db = connect(settings, _say).database()
    try:
        with DeployLock(db, settings.project):
            raise config.ConfigError("no deploy or rollback is running on this production: nothing to abort")
    except LockHeld:
        pass
    abort.request(db, settings.path(settings.logs_dir), args.reason or "")
    _say("abort requested through the ledger; waiting for the deploy to roll back...")
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        try:
            with DeployLock(db, settings.project):
                last = ledger.entries(db, "deploy")[-1]
                _say(f"the deploy has stopped: {last.outcome} ({last.detail.get('reason', '')})")
                return 0
        except LockHeld:
            time.sleep(1)
    _say(f"the deploy still runs after {args.wait:.0f}s; it was asked to abort and will when it next can")
    return 1


def build_parser() -> argparse.ArgumentParser:
    common = _common("after")
    parser = argparse.ArgumentParser(prog="deploygate", description=__doc__.splitlines()[0], parents=[_common("before")])
    parser.add_argument("--version", action="version", version=f"deploygate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help, parents=[common])
        child.set_defaults(func=func)
        return child

    command("engine", cmd_engine, "make sure a Docker engine answers (installs/starts one if needed)")
    p_images = command("images", cmd_images, "build (or reuse) the images production needs")
    p_images.add_argument("--release", action="append", help="app release(s) or image reference(s) (default: the configured one)")
    command("up", cmd_up, "bring production up; idempotent")
    p_down = command("down", cmd_down, "remove production's containers and network")
    p_down.add_argument("--volumes", action="store_true", help="also remove the database volume (never an existing server's data)")
    command("status", cmd_status, "live release and color, containers, health")
    p_deploy = command("deploy", cmd_deploy, "gated blue-green deploy of a candidate, rolling back on any failure")
    p_deploy.add_argument(flags.CANDIDATE.name, **flags.CANDIDATE.kwargs(required=True))
    p_deploy.add_argument("--dry-run", action="store_true", help="run the read-only gates and print the plan; change nothing")
    p_deploy.add_argument("--accept-incompatible", action="store_true", help="deploy an incompatible candidate behind a maintenance hold")
    p_deploy.add_argument("--skip-predeploy", action="store_true", help="emergency only: deploy without the predeploy gate")
    p_deploy.add_argument(flags.SKIP_CHECK.name, **flags.SKIP_CHECK.kwargs())
    p_deploy.add_argument(flags.REASON.name, **flags.REASON.kwargs())
    p_deploy.add_argument("--gate-arg", action="append", help="extra pytest argument for the predeploy gate (repeatable)")
    p_abort = command("abort", cmd_abort, "stop the deploy another process or CI job runs on this production: it rolls back")
    p_abort.add_argument("--reason", help="why (recorded with the request)")
    p_abort.add_argument("--wait", type=float, default=900, help="seconds to wait for the deploy to stop")
    p_rollback = command("rollback", cmd_rollback, "roll back an unfinished deploy, or the last one within the forward-fix threshold")
    p_rollback.add_argument("--force", action="store_true", help="roll back even past the forward-fix threshold")
    p_rollback.add_argument(
        "--if-unfinished",
        action="store_true",
        help="only converge a deploy that never finished (a CI job's cleanup after a cancel); a finished one stays",
    )
    p_rollback.add_argument(
        "--accept-schema-mismatch",
        action="store_true",
        help="close the deploy even if rollback_verify finds the schema not the previous release's (needs --reason)",
    )
    p_rollback.add_argument(flags.REASON.name, **flags.REASON.kwargs())
    from deploygate import cli_review, cli_traffic

    cli_review.register(command)
    cli_traffic.register(command)
    _predeploy_parser(sub, common)
    _init_parser(sub)
    return parser


def _stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` prints every thread's stack to stderr: a deploy that seems stuck says where it waits."""
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (OSError, ValueError):  # io.UnsupportedOperation is both: stderr is no file (called in-process, captured)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    _stacks_on_sigusr1()
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # predeploy hands what it does not know to pytest (-k, -x, --candidate, a test id); no other command does.
    if unknown and not getattr(args, "passes_unknown", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.pytest_args = unknown
    try:
        return args.func(args)
    except DeployGateError as exc:
        print(f"deploygate: {exc}", file=sys.stderr)
        return 2
    except Aborted as exc:
        print(f"deploygate: {exc.why}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("deploygate: interrupted", file=sys.stderr)
        return 130
