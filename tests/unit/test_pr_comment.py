"""The sticky pull-request comment against a local stand-in for the part of GitHub's REST API it uses.

The server listens on 127.0.0.1 only and checks the token on every call; nothing else is contacted.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploygate import pr_comment
from deploygate.cli import main

TOKEN = "ghs_workflow_token"
REPO = "octo/shop"
PR = 7
PAGE = 2  # small pages, so the upsert must follow the Link header


class FakeGitHub:
    """Comments of one pull request, the calls received, and a 401 for any call without the workflow's token."""

    def __init__(self) -> None:
        self.comments: list[dict] = [{"id": n, "body": f"a reviewer's comment {n}", "html_url": f"x#{n}"} for n in range(1, 4)]
        self.calls: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self):
        github = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, status: int, payload, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                github.calls.append((method, self.path))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._answer(401, {"message": "Bad credentials"})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                listing = re.fullmatch(rf"/repos/{REPO}/issues/{PR}/comments(?:\?per_page=\d+(?:&page=(\d+))?)?", self.path)
                one = re.fullmatch(rf"/repos/{REPO}/issues/comments/(\d+)", self.path)
                if method == "GET" and listing:
                    page = int(listing[1] or 1)
                    chunk = github.comments[(page - 1) * PAGE : page * PAGE]
                    more = page * PAGE < len(github.comments)
                    link = (
                        {"Link": f'<{github.url}/repos/{REPO}/issues/{PR}/comments?per_page=100&page={page + 1}>; rel="next"'}
                        if more
                        else {}
                    )
                    return self._answer(200, chunk, link)
                if method == "POST" and listing:
                    comment = {"id": 100 + len(github.comments), "body": body["body"], "html_url": f"{github.url}/c"}
                    github.comments.append(comment)
                    return self._answer(201, comment)
                if method == "PATCH" and one:
                    comment = next((c for c in github.comments if c["id"] == int(one[1])), None)
                    if comment is None:
                        return self._answer(404, {"message": "Not Found"})
                    comment["body"] = body["body"]
                    return self._answer(200, comment)
                return self._answer(404, {"message": "Not Found"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PATCH(self) -> None:
                self._route("PATCH")

        return Handler

    def ours(self) -> list[dict]:
        return [c for c in self.comments if pr_comment.MARKER in c["body"]]


@pytest.fixture
def github():
    fake = FakeGitHub()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def actions_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, github: FakeGitHub) -> Path:
    """A pull_request job's environment pointing at the stand-in; returns the body file."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": PR}}))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "DEPLOYGATE_PR_COMMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    body = tmp_path / "plan.md"
    body.write_text("## deploygate plan: `v2` ❌ fails\n")
    return body


def test_first_run_creates_second_updates_the_same_comment(github: FakeGitHub, actions_env: Path, capsys) -> None:
    assert main(["pr-comment", "--body-file", str(actions_env)]) == 0
    assert "created the plan's comment on octo/shop#7" in capsys.readouterr().out
    assert len(github.ours()) == 1 and github.ours()[0]["body"].startswith(pr_comment.MARKER + "\n## deploygate plan")
    first_id = github.ours()[0]["id"]

    actions_env.write_text("## deploygate plan: `v2-safe` ✅ passes\n")
    assert main(["pr-comment", "--body-file", str(actions_env)]) == 0
    assert "updated the plan's comment" in capsys.readouterr().out
    assert [c["id"] for c in github.ours()] == [first_id] and "v2-safe" in github.ours()[0]["body"]
    # The earlier comment was on the second page: found by following the Link header, then edited.
    assert ("PATCH", f"/repos/{REPO}/issues/comments/{first_id}") in github.calls
    assert sum(1 for method, path in github.calls if method == "GET") == 2 + 2  # 2 pages each run
    assert len(github.comments) == 4  # the reviewers' 3 untouched, plus ours


def test_opt_out_posts_nothing(github: FakeGitHub, actions_env: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert main(["pr-comment", "--body-file", str(actions_env), "--disable"]) == 0
    monkeypatch.setenv("DEPLOYGATE_PR_COMMENT", "off")
    assert main(["pr-comment", "--body-file", str(actions_env)]) == 0
    assert capsys.readouterr().out.count("nothing posted") == 2
    assert github.calls == []


def test_a_refusal_is_one_line_and_exit_2(github: FakeGitHub, actions_env: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    assert main(["pr-comment", "--body-file", str(actions_env)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GitHub answered 401 to GET" in err and "Bad credentials" in err and "wrong" not in err


def test_missing_context_says_what_is_missing(actions_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    assert main(["pr-comment", "--body-file", str(actions_env)]) == 2
    assert "GITHUB_TOKEN not set" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    push = tmp_path / "push.json"
    push.write_text(json.dumps({"ref": "refs/heads/main"}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(push))
    assert main(["pr-comment", "--body-file", str(actions_env)]) == 2
    assert "not about a pull request" in capsys.readouterr().err


def test_the_token_never_follows_a_link_to_another_host(github: FakeGitHub) -> None:
    target = pr_comment.Target(api_url=github.url, repository=REPO, number=PR, token=TOKEN)
    with pytest.raises(pr_comment.PrCommentError, match="refusing to send the token"):
        pr_comment._GitHub(target).call("GET", "http://127.0.0.2:1/elsewhere")
    assert github.calls == []


def test_the_number_of_a_pull_request_event_or_a_comment_on_one() -> None:
    assert pr_comment.pull_request_number({"pull_request": {"number": 3}}) == 3
    assert pr_comment.pull_request_number({"issue": {"number": 4, "pull_request": {"url": "u"}}}) == 4
    assert pr_comment.pull_request_number({"issue": {"number": 5}}) is None


def test_body_gets_the_marker_once_and_fits_githubs_limit() -> None:
    assert pr_comment.with_marker("x") == pr_comment.MARKER + "\nx"
    assert pr_comment.with_marker(pr_comment.MARKER + "\nx") == pr_comment.MARKER + "\nx"
    long = pr_comment.with_marker("y" * 100_000)
    assert len(long) <= pr_comment.MAX_BODY and long.endswith("the whole plan is in the job's summary.\n")
