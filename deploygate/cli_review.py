"""The commands of a review (`plan`, `pr-comment`) and the settings reference (`settings`).

Kept apart from ``cli.py``'s production commands; ``register`` adds them to its parser.
Exit codes: ``plan`` 0 the change passes, 1 it fails, 2 could not run; ``pr-comment`` 0
posted (or turned off), 2 could not post; ``settings`` 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from deploygate.errors import ConfigError

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def _err(message: str) -> None:
    """Progress goes to stderr: stdout is the plan's body when no --output is given."""
    print(message, file=sys.stderr, flush=True)


def cmd_plan(args: argparse.Namespace) -> int:
    from deploygate import plan, plan_view
    from deploygate.cli_common import say_unfinished, settings_from
    from deploygate.platform import connect

    settings = settings_from(args)
    platform = connect(settings, _err)
    say_unfinished(platform)
    run = plan.gate_for_plan(platform, settings, args.candidate, _err)
    view = plan_view.build(run.result, reused=run.reused, secrets=run.secrets)
    markdown = plan_view.render_markdown(view)
    body = markdown if args.format == "markdown" else plan_view.render_json(view)
    if args.output:
        Path(args.output).write_text(body)
        _err(f"plan written to {args.output}")
    else:
        sys.stdout.write(body)
    summary = os.environ.get(STEP_SUMMARY_ENV)
    if summary:
        # Appended: other steps of the job write their own parts of the summary.
        with open(summary, "a") as handle:
            handle.write(markdown + "\n")
    _err(f"plan: the change {view['verdict']}")
    return 0 if view["passes"] else 1


def cmd_pr_comment(args: argparse.Namespace) -> int:
    from deploygate import pr_comment

    if pr_comment.disabled(os.environ, args.disable):
        print(f"pull-request comment turned off (--disable or {pr_comment.OPT_OUT_ENV}=off): nothing posted")
        return 0
    try:
        body = Path(args.body_file).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read --body-file {args.body_file}: {exc.strerror}") from None
    if not body.strip():
        raise ConfigError(f"--body-file {args.body_file} is empty: nothing to post")
    target = pr_comment.target_from_env(os.environ)
    action, comment = pr_comment.upsert(target, body, args.marker)
    print(f"{action} the plan's comment on {target.repository}#{target.number}: {comment.get('html_url') or comment.get('id')}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from deploygate import settings_reference

    sys.stdout.write(settings_reference.markdown() if args.format == "markdown" else settings_reference.text())
    return 0


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``plan``, ``pr-comment`` and ``settings`` through cli's ``command(name, func, help)``."""
    from deploygate import request_flags as flags
    from deploygate.pr_comment import MARKER, OPT_OUT_ENV

    p_plan = command("plan", cmd_plan, "the reviewer's view of the predeploy gate for a candidate: SQL, locks, compatibility, verdict")
    p_plan.add_argument(flags.CANDIDATE.name, **flags.CANDIDATE.kwargs(required=True))
    p_plan.add_argument("--format", choices=["markdown", "json"], default="markdown", help="the body's format (default markdown)")
    p_plan.add_argument("--output", metavar="FILE", help="write the body here (default: stdout)")
    p_comment = command("pr-comment", cmd_pr_comment, "create or update the one sticky pull-request comment (GitHub Actions)")
    p_comment.add_argument("--body-file", required=True, metavar="FILE", help="the comment's markdown (e.g. plan's --output)")
    p_comment.add_argument("--marker", default=MARKER, help=f"the hidden text that finds the comment again (default {MARKER})")
    p_comment.add_argument("--disable", action="store_true", help=f"post nothing (as {OPT_OUT_ENV}=off does)")
    p_settings = command("settings", cmd_settings, "every setting: TOML table, --set name, env variable, default, help")
    p_settings.add_argument("--format", choices=["text", "markdown"], default="text", help="markdown: the README's table")
