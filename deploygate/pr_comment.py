"""One sticky pull-request comment, upserted through GitHub's REST API with the workflow's own token.

Everything comes from what GitHub Actions gives a job: ``GITHUB_TOKEN`` (the workflow's
token; no other account), ``GITHUB_REPOSITORY``, ``GITHUB_API_URL`` and the event payload
at ``GITHUB_EVENT_PATH`` (its pull request's number). The comment is found again by a
hidden marker in its body: the first run creates it, every later run edits the same one,
so a pull request carries one plan however often it is pushed to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from deploygate.errors import DeployGateError

MARKER = "<!-- deploygate-plan -->"
OPT_OUT_ENV = "DEPLOYGATE_PR_COMMENT"
OFF_WORDS = frozenset({"off", "0", "false", "no", "disabled"})
DEFAULT_API_URL = "https://api.github.com"
# GitHub refuses a comment body above 65536 characters.
MAX_BODY = 65536
_TRUNCATED = "\n\n… cut to GitHub's comment limit: the whole plan is in the job's summary.\n"
TIMEOUT_S = 30


class PrCommentError(DeployGateError):
    """The comment could not be posted: missing context, or GitHub refused."""


@dataclass(frozen=True)
class Target:
    """Where the comment goes and with which token."""

    api_url: str
    repository: str  # owner/name
    number: int
    token: str

    @property
    def comments_url(self) -> str:
        return f"{self.api_url}/repos/{self.repository}/issues/{self.number}/comments"

    def comment_url(self, comment_id: int) -> str:
        return f"{self.api_url}/repos/{self.repository}/issues/comments/{comment_id}"


def disabled(environ: Mapping[str, str], flag: bool = False) -> bool:
    """``--disable``, or ``DEPLOYGATE_PR_COMMENT=off`` (the action's input sets it)."""
    return flag or environ.get(OPT_OUT_ENV, "").strip().lower() in OFF_WORDS


def pull_request_number(event: Mapping) -> int | None:
    """The pull request an event payload is about: a pull_request(_target) event, or a comment on a pull request."""
    if isinstance(event.get("pull_request"), Mapping):
        return event["pull_request"].get("number")
    issue = event.get("issue")
    if isinstance(issue, Mapping) and issue.get("pull_request"):
        return issue.get("number")
    return None


def target_from_env(environ: Mapping[str, str]) -> Target:
    """The comment's target from a GitHub Actions job's environment; raises ``PrCommentError`` saying what is missing."""
    missing = [name for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_EVENT_PATH") if not environ.get(name)]
    if missing:
        raise PrCommentError(f"{', '.join(missing)} not set: run in a GitHub Actions job with `env: GITHUB_TOKEN: ${{{{ github.token }}}}`")
    try:
        event = json.loads(Path(environ["GITHUB_EVENT_PATH"]).read_text())
    except (OSError, ValueError) as exc:
        raise PrCommentError(f"cannot read the event payload {environ['GITHUB_EVENT_PATH']}: {exc}") from None
    number = pull_request_number(event) if isinstance(event, Mapping) else None
    if not isinstance(number, int):
        raise PrCommentError("the event is not about a pull request: no comment to post (run on pull_request events)")
    api_url = (environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
    return Target(api_url=api_url, repository=environ["GITHUB_REPOSITORY"], number=number, token=environ["GITHUB_TOKEN"])


def with_marker(body: str, marker: str = MARKER) -> str:
    """The body with its marker as the first line (a hidden HTML comment), cut to GitHub's limit."""
    text = body if marker in body else f"{marker}\n{body}"
    if len(text) > MAX_BODY:
        text = text[: MAX_BODY - len(_TRUNCATED)] + _TRUNCATED
    return text


class _GitHub:
    """The three calls the upsert makes, each failing as one line; the token only ever goes to ``api_url``'s host."""

    def __init__(self, target: Target, session: requests.Session | None = None) -> None:
        self.target = target
        self.origin = urlsplit(target.api_url)[:2]
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {target.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "deploygate",
            }
        )

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        if urlsplit(url)[:2] != self.origin:
            raise PrCommentError(f"refusing to send the token to {url}: not {self.target.api_url}")
        try:
            answer = self.session.request(method, url, timeout=TIMEOUT_S, **kwargs)
        except requests.RequestException as exc:
            raise PrCommentError(f"{method} {url}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        if answer.status_code >= 400:
            try:
                why = answer.json().get("message", "")
            except ValueError:
                why = answer.text.strip().splitlines()[0] if answer.text.strip() else ""
            raise PrCommentError(f"GitHub answered {answer.status_code} to {method} {url}: {why}")
        return answer

    def comments(self):
        """Every comment of the pull request, page by page (GitHub's Link header names the next page)."""
        url: str | None = f"{self.target.comments_url}?per_page=100"
        while url:
            answer = self.call("GET", url)
            yield from answer.json()
            url = answer.links.get("next", {}).get("url")


def upsert(target: Target, body: str, marker: str = MARKER, session: requests.Session | None = None) -> tuple[str, dict]:
    """Edit the comment carrying ``marker``, else create one; returns ("updated" or "created", GitHub's comment)."""
    github = _GitHub(target, session)
    text = with_marker(body, marker)
    earlier = next((c for c in github.comments() if marker in (c.get("body") or "")), None)
    if earlier is not None:
        return "updated", github.call("PATCH", target.comment_url(earlier["id"]), json={"body": text}).json()
    return "created", github.call("POST", target.comments_url, json={"body": text}).json()
