"""Production's requests, recorded for a replay gate: a bounded, rolling sample of what the proxy logged.

The proxy logs each request's method, URI, Content-Type, Accept and, for a write, its body
with secrets already redacted (``deploygate.haproxy.render_config``); Authorization and
cookies never reach the log. This module keeps a sample of those lines in one JSON-lines file
(``<state_dir>/<project>/replay/requests.jsonl``, mode 0600): the newest ``per_route`` of each
route, none older than ``max_age_s``, at most ``max_requests`` in all, trimmed so that every
route keeps a request as long as there is room (a rare route is what a replay must not lose).
Pure logic and files: no engine, no network.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from deploygate.haproxy import HOLD, NO_COLOR
from deploygate.proxy import AccessRecord, read_access_log

if TYPE_CHECKING:
    from deploygate.config import Settings

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A path segment that names one object rather than a kind of them: an integer, a UUID, a long hex
# digest, or a slug carrying digits ("order-20240101-7"); each becomes "{id}" in a route.
_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?=[^/]*\d)[0-9a-f]{12,}|(?=[^/]*\d)(?=[^/]*[a-z])[a-z0-9_-]{10,})$",
    re.IGNORECASE,
)


def route_of(method: str, path: str) -> str:
    """``"POST /api/orders/{id}/"`` for ``("post", "/api/orders/42/")``: the method, and the path with its ids as ``{id}``."""
    path = path.split("?", 1)[0] or "/"
    segments = ["{id}" if _ID_SEGMENT.match(segment) else segment for segment in path.split("/")]
    return f"{method.upper()} {'/'.join(segments)}"


@dataclass(frozen=True)
class RecordedRequest:
    """One request production answered: enough to send it again and compare the answer's status."""

    ts: float
    method: str
    path: str
    query: str
    headers: dict[str, str]  # Content-Type and Accept only
    body: bytes
    status: int  # what production answered
    color: str
    body_truncated: bool = False  # a write whose body was not logged (too large, or not text): not replayable as is

    @property
    def route(self) -> str:
        return route_of(self.method, self.path)

    def to_json(self) -> str:
        """One line of the sample file; the body as base64."""
        data: dict[str, Any] = {
            "ts": self.ts,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": dict(sorted(self.headers.items())),
            "body": base64.b64encode(self.body).decode("ascii"),
            "status": self.status,
            "color": self.color,
            "body_truncated": self.body_truncated,
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RecordedRequest:
        """The request of one sample line. Raises ``ValueError`` (also for a missing key or a bad body)."""
        try:
            data = json.loads(text)
            return cls(
                ts=float(data["ts"]),
                method=str(data["method"]),
                path=str(data["path"]),
                query=str(data["query"]),
                headers={str(k): str(v) for k, v in data["headers"].items()},
                body=base64.b64decode(data["body"], validate=True),
                status=int(data["status"]),
                color=str(data["color"]),
                body_truncated=bool(data.get("body_truncated", False)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a recorded request: {text[:200]!r} ({exc!r})") from None


def from_access(record: AccessRecord, *, max_body_bytes: int | None = None) -> RecordedRequest | None:
    """The ``RecordedRequest`` of one access-log record; None for a request no app answered (a hold, or
    one rejected before routing). A write whose body was not logged, or is over ``max_body_bytes``,
    is kept without its body and marked ``body_truncated``."""
    if record.color in (HOLD, NO_COLOR) or not record.uri.startswith("/"):
        return None
    parts = urlsplit(record.uri)
    headers = {name: value for name, value in (("Content-Type", record.ctype), ("Accept", record.accept)) if value}
    body = record.body
    over = max_body_bytes is not None and max(len(body), record.bsize) > max_body_bytes
    truncated = record.method.upper() in WRITE_METHODS and record.bsize > 0 and (not body or over)
    return RecordedRequest(
        ts=record.ts,
        method=record.method.upper(),
        path=parts.path or "/",
        query=parts.query,
        headers=headers,
        body=b"" if truncated else body,
        status=record.status,
        color=record.color,
        body_truncated=truncated,
    )


def _newest_first(requests: Iterable[RecordedRequest]) -> list[RecordedRequest]:
    # The line itself breaks ties, so the same requests give the same sample in any order.
    return sorted(requests, key=lambda r: (-r.ts, r.to_json()))


def sample(
    requests: Iterable[RecordedRequest], *, max_requests: int, per_route: int, max_age_s: float, now: float
) -> list[RecordedRequest]:
    """The requests to keep, oldest first: none older than ``max_age_s`` before ``now``, the newest
    ``per_route`` of each route, then at most ``max_requests``, taken round-robin over the routes (each
    route's newest, then each one's second newest, ...; routes with the most recent request first)
    so every route stays while there is room. Deterministic. Raises ``ValueError`` for a negative limit."""
    if min(max_requests, per_route, max_age_s) < 0:
        raise ValueError(f"the sample's limits must not be negative: {max_requests=}, {per_route=}, {max_age_s=}")
    by_route: dict[str, list[RecordedRequest]] = {}
    for request in _newest_first(r for r in requests if r.ts >= now - max_age_s):
        kept = by_route.setdefault(request.route, [])
        if len(kept) < per_route:
            kept.append(request)
    routes = sorted(by_route.values(), key=lambda kept: (-kept[0].ts, kept[0].route))
    chosen: list[RecordedRequest] = []
    for rank in range(max((len(kept) for kept in routes), default=0)):
        for kept in routes:
            if rank < len(kept) and len(chosen) < max_requests:
                chosen.append(kept[rank])
    return sorted(chosen, key=lambda r: (r.ts, r.to_json()))


@dataclass(frozen=True)
class SampleLimits:
    """How much the sample keeps (``replay.*`` settings)."""

    max_requests: int = 2000
    per_route: int = 50
    max_age_s: float = 168 * 3600
    max_body_bytes: int = 4096

    @classmethod
    def of(cls, settings: Settings) -> SampleLimits:
        return cls(
            settings.replay_max_requests, settings.replay_per_route, settings.replay_max_age_hours * 3600, settings.replay_body_bytes
        )


@dataclass(frozen=True)
class SampleSummary:
    """What the sample file holds after an update, and how many requests the update added to it."""

    requests: int
    routes: int
    oldest: float | None
    newest: float | None
    added: int
    route_counts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: how many requests of how many routes, over which period, how many new."""
        if not self.requests:
            return "no request recorded yet"
        hours = ((self.newest or 0) - (self.oldest or 0)) / 3600
        return f"{self.requests} requests of {self.routes} routes recorded over {hours:.1f} h ({self.added} new)"


def sample_path(settings: Settings) -> Path:
    """The project's sample file, under its state directory (beside its proxy's)."""
    return settings.path(settings.state_dir) / settings.project / "replay" / "requests.jsonl"


def read_sample(path: Path) -> list[RecordedRequest]:
    """The requests of the sample file at ``path`` (none when it does not exist). Raises ``ValueError`` for a bad line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [RecordedRequest.from_json(line) for line in text.splitlines() if line.strip()]


def _write_private(path: Path, lines: Sequence[str]) -> None:
    """Replace ``path`` by ``lines`` atomically, readable by its owner only (mkstemp creates it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.writelines(line + "\n" for line in lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def update_sample(path: Path, access_logs: Iterable[Path], limits: SampleLimits, *, now: float) -> SampleSummary:
    """Merge into the sample file at ``path`` the requests of ``access_logs`` newer than its newest,
    re-sample by ``limits`` and write it back atomically (0600, its directory 0700).

    Returns what the file holds and how many requests were added. Raises ``ValueError`` for an
    unreadable sample file and ``OSError`` when it cannot be written.
    """
    current = read_sample(path)
    newest = max((r.ts for r in current), default=None)
    new = [
        request
        for log in access_logs
        for record in read_access_log(log, since=newest)
        if (newest is None or record.ts > newest) and (request := from_access(record, max_body_bytes=limits.max_body_bytes)) is not None
    ]
    kept = sample(
        [*current, *new],
        max_requests=limits.max_requests,
        per_route=limits.per_route,
        max_age_s=limits.max_age_s,
        now=now,
    )
    _write_private(path, [r.to_json() for r in kept])
    new_ids = {id(r) for r in new}
    counts: dict[str, int] = {}
    for request in kept:
        counts[request.route] = counts.get(request.route, 0) + 1
    return SampleSummary(
        requests=len(kept),
        routes=len(counts),
        oldest=kept[0].ts if kept else None,
        newest=kept[-1].ts if kept else None,
        added=sum(1 for r in kept if id(r) in new_ids),
        route_counts=counts,
    )
