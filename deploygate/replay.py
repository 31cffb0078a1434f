"""Production's recorded requests replayed on scratch copies: each release on each schema it may meet.

One copy server holds the database as production has it (the backup restored); every run gets
a database of its own made from it (``CREATE DATABASE ... TEMPLATE``: a file copy, no restore),
so the writes a run replays never reach another run, and every run starts from the same rows.
The migrated schema is one more template, migrated once by the candidate image.

The baseline is the production release on the schema before, run twice to learn what is noise
(``replay_compare``). Then each direction the deploy can meet:
  production_on_migrated  the release serving now, once the migration committed and before the
                          switch (and after a rollback, until the schema goes back);
  candidate_on_migrated   the candidate as it serves after the switch;
  candidate_on_before     the candidate on the schema before: only where it can meet it, reads
                          from a replica that has not replayed the migration yet.
Requests go one at a time, in the order production received them, so that a write precedes
the reads that follow it as it did, and the app's error logged while one was answered is its.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import requests
from psycopg import sql

from deploygate import app_errors, compat
from deploygate.config import Settings
from deploygate.database import connect
from deploygate.errors import DeployGateError
from deploygate.log import Say
from deploygate.platform import Platform
from deploygate.platform.images import Image
from deploygate.probe import Prober
from deploygate.recording import WRITE_METHODS, RecordedRequest
from deploygate.rehearsal import DatabaseCopy
from deploygate.replay_compare import Answer, Difference, Noise, compare, learn_noise, shape_of

PRODUCTION_ON_MIGRATED = "production_on_migrated"
CANDIDATE_ON_MIGRATED = "candidate_on_migrated"
CANDIDATE_ON_BEFORE = "candidate_on_before"
DIRECTIONS = (PRODUCTION_ON_MIGRATED, CANDIDATE_ON_MIGRATED, CANDIDATE_ON_BEFORE)
_BEFORE, _MIGRATED = "before", "migrated"
_REQUEST_TIMEOUT_S = 30
# Docker stamps a line when it reads it: this late after its request's answer, an error is still that request's.
_ERROR_SLACK_S = 0.25
_TEMPLATE_PREFIX = "dg_replay_"
_BASELINE, _BASELINE_AGAIN = "baseline", "baseline_again"


class ReplayError(DeployGateError):
    """The replay could not run (a run's app never answered, the migrated template failed)."""


@dataclass(frozen=True)
class Run:
    """One release replayed on one schema: an answer per request, and how long it took."""

    release: str
    schema: str
    answers: list[Answer]
    seconds: float
    app_errors: int


@dataclass
class Replay:
    """The runs so far on one copy server; ``run(direction)`` replays a direction once and keeps it."""

    requests: list[RecordedRequest]
    skipped: list[RecordedRequest]  # writes whose body was too large to record: never sent
    baseline: list[Run] = field(default_factory=list)
    noise: Noise | None = None
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [r.route for r in self.requests]

    def differences(self, direction: str) -> tuple[list[Difference], int]:
        """The requests ``direction`` answered otherwise than the baseline, and how many were noise."""
        return compare(self.names, self.baseline[0].answers, self.runs[direction].answers, self.noise or Noise())


def replayable(recorded: Sequence[RecordedRequest]) -> tuple[list[RecordedRequest], list[RecordedRequest]]:
    """The requests that can be replayed as production received them, and the writes whose body was not kept."""
    kept = [r for r in recorded if not r.body_truncated]
    return kept, [r for r in recorded if r.body_truncated]


_READS = ("GET", "HEAD", "OPTIONS")


def distinct(recorded: Sequence[RecordedRequest]) -> tuple[list[int], list[int]]:
    """The requests worth sending, and for each recorded one the position of its answer among them.

    A read identical to one sent before it (method, path, query, headers) is answered from that one:
    the app's answer to the same read has the same status class and shape (what is compared), and a
    recorded hot page would otherwise cost as much as every other route together. Writes are all sent.
    """
    sent: list[int] = []
    slot_of: list[int] = []
    first: dict[tuple, int] = {}
    for index, request in enumerate(recorded):
        key = (request.method, request.path, request.query, tuple(sorted(request.headers.items())))
        if request.method in _READS and key in first:
            slot_of.append(first[key])
            continue
        if request.method in _READS:
            first[key] = len(sent)
        slot_of.append(len(sent))
        sent.append(index)
    return sent, slot_of


def _send(session: requests.Session, base_url: str, request: RecordedRequest) -> tuple[Answer, float, float]:
    url = f"{base_url}{request.path}" + (f"?{request.query}" if request.query else "")
    started = time.time()
    try:
        response = session.request(
            request.method, url, headers=dict(request.headers), data=request.body or None, timeout=_REQUEST_TIMEOUT_S, allow_redirects=False
        )
    except requests.RequestException as exc:
        return Answer(0, None, error=f"{type(exc).__name__}"), started, time.time()
    shape = shape_of(response.headers.get("Content-Type", ""), response.content)
    return Answer(response.status_code, shape), started, time.time()


def _in_app(error: app_errors.AppError | None) -> bool:
    return error is not None and error.in_app


def _with_app_errors(answers: list[Answer], spans: list[tuple[float, float]], output: str) -> tuple[list[Answer], int]:
    """Each answer given the app's error logged while it was answered: the requests went one at a time, so an
    error is the one of the last request sent before it was logged (the app's own frame preferred to a library's)."""
    errors = app_errors.find_errors(app_errors.parse_timestamped(output))
    starts = [start for start, _ in spans]
    chosen: dict[int, app_errors.AppError] = {}
    for error in errors:
        index = bisect.bisect_right(starts, error.ts) - 1
        if index < 0 or error.ts > spans[index][1] + _ERROR_SLACK_S:
            continue  # logged outside every request (at start, between runs)
        if index and answers[index].status < 500 <= answers[index - 1].status and not _in_app(chosen.get(index - 1)):
            index -= 1  # stamped once the next request had gone: the failed one before it logged it
        if index not in chosen or (error.in_app and not chosen[index].in_app):
            chosen[index] = error
    result = [
        dataclasses.replace(answer, app_error=chosen[index].signature) if index in chosen else answer
        for index, answer in enumerate(answers)
    ]
    return result, len(errors)


class ReplayCopies:
    """Databases made from the copy's as production has it (and once migrated), one per run, dropped after it."""

    def __init__(self, platform: Platform, settings: Settings, copy: DatabaseCopy, say: Say) -> None:
        self.platform, self.settings, self.copy, self.say = platform, settings, copy, say
        # CREATE DATABASE from the copy's own database: connected to another one, as a template allows no session.
        self._admin = connect(dataclasses.replace(copy.host_address, name="postgres"))
        version = self._admin.info.server_version
        # FILE_COPY (15+) copies the files at once; the default (WAL_LOG) writes every block through the WAL.
        self._strategy = sql.SQL(" STRATEGY = FILE_COPY") if version >= 150000 else sql.SQL("")
        self._made: list[str] = []
        self._migrated: str | None = None
        self._migrating = threading.Lock()

    def close(self) -> None:
        for name in reversed(self._made):
            self._drop(name)
        self._admin.close()

    def _create(self, name: str, template: str) -> None:
        self._admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)) + self._strategy
        )
        self._made.append(name)

    def _drop(self, name: str) -> None:
        self._admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self._made:
            self._made.remove(name)

    def _environment(self, name: str) -> dict[str, str]:
        return self.copy.app_environment(self.settings.replace(db_name=name))

    def migrated_template(self, candidate: Image) -> str:
        """The copy migrated by the candidate (once: the runs that ask at the same time wait for the first);
        raises ``ReplayError`` when its migration fails."""
        with self._migrating:
            return self._migrated_template(candidate)

    def _migrated_template(self, candidate: Image) -> str:
        if self._migrated is None:
            name = f"{_TEMPLATE_PREFIX}migrated"
            self._drop(name)  # what a failed attempt left: the next asks again, and fails the same way
            self._create(name, self.settings.db_name)
            network = self.copy.scratch.database.network
            result = Prober.configured(self.platform, self.settings, candidate, self._environment(name), network=network).migrate()
            if result.error:
                raise ReplayError(f"the migration failed on the replay's copy: {result.error}")
            self._migrated = name
        return self._migrated

    @contextmanager
    def database(self, template: str, run: int) -> Iterator[dict[str, str]]:
        """A database made from ``template`` for one run: the app's environment for it."""
        name = f"{_TEMPLATE_PREFIX}run{run}"
        self._create(name, template)
        try:
            yield self._environment(name)
        finally:
            self._drop(name)


class Replayer:
    """Replays ``requests`` with the production release and the candidate on the copy (``ReplayCopies``)."""

    def __init__(
        self,
        platform: Platform,
        copies: ReplayCopies,
        production: Image,
        candidate: Image,
        recorded: Sequence[RecordedRequest],
        say: Say,
        planned: Sequence[str] = (),
    ) -> None:
        self.platform, self.copies, self.production, self.candidate, self.say = platform, copies, production, candidate, say
        self.planned = list(planned)  # the directions the checks that will run ask for: run together at the first
        self._saying = threading.Lock()
        kept, skipped = replayable(recorded)
        self.replay = Replay(requests=kept, skipped=skipped)
        self._distinct, self._slot_of = distinct(kept)
        self._runs = 0

    def _run(self, number: int, image: Image, schema: str, label: str) -> Run:
        template = self.copies.migrated_template(self.candidate) if schema == _MIGRATED else self.copies.settings.db_name
        started = time.monotonic()
        sent = self._distinct
        with self._saying:  # the runs go in threads: one line at a time
            self.say(f"replay: {label}: {len(sent)} distinct of {len(self.replay.requests)} recorded requests to {image.tag} ({schema})...")
        with self.copies.database(template, number) as environment:
            with self.platform.scratch_app(image.id, environment, self.copies.copy.scratch.database.network) as server:
                since = time.time() - 1
                answers, spans = [], []
                with requests.Session() as session:
                    for index in sent:
                        answer, start, end = _send(session, server.url, self.replay.requests[index])
                        answers.append(answer)
                        spans.append((start, end))
                answers, errors = _with_app_errors(answers, spans, server.output(since))
        # Each request gets the answer its distinct one got.
        return Run(image.tag, schema, [answers[slot] for slot in self._slot_of], round(time.monotonic() - started, 3), errors)

    def _jobs(self, directions: Sequence[str]) -> dict[str, tuple[Image, str, str]]:
        """The runs not made yet: the baseline's two, then ``directions``: name -> (image, schema, label)."""
        wanted = {
            PRODUCTION_ON_MIGRATED: (self.production, _MIGRATED),
            CANDIDATE_ON_MIGRATED: (self.candidate, _MIGRATED),
            CANDIDATE_ON_BEFORE: (self.candidate, _BEFORE),
        }
        jobs = {}
        if not self.replay.baseline:
            jobs[_BASELINE] = (self.production, _BEFORE, "baseline")
            jobs[_BASELINE_AGAIN] = (self.production, _BEFORE, "baseline, again (noise)")
        for name in directions:
            if name not in self.replay.runs:
                jobs[name] = (*wanted[name], name.replace("_", " "))
        return jobs

    def run(self, directions: Sequence[str]) -> Replay:
        """The baseline (the production release twice on the schema before: what differs is noise) and
        ``directions``, each once, all at the same time: each has its own database and app server, and a
        replay's time is the app's, which the runs then share between the machine's cores. The runs on the
        schema before start at once; those on the migrated one once the candidate migrated its template."""
        jobs = self._jobs(directions)
        if not jobs:
            return self.replay
        numbered = {name: (self._runs + n, *job) for n, (name, job) in enumerate(jobs.items(), start=1)}
        self._runs += len(jobs)
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="replay") as pool:
            futures = {name: pool.submit(self._run, *args) for name, args in numbered.items()}
            runs = {name: future.result() for name, future in futures.items()}
        if _BASELINE in runs:
            first, second = runs.pop(_BASELINE), runs.pop(_BASELINE_AGAIN)
            self.replay.baseline = [first, second]
            self.replay.noise = learn_noise(first.answers, second.answers)
        for name, done in runs.items():
            self.replay.runs[name] = done
        return self.replay

    def direction(self, name: str) -> Replay:
        """``name`` replayed (once), with the baseline and the other planned directions if they were not yet."""
        return self.run(list(dict.fromkeys([*self.planned, name])))


def summary(replay: Replay, direction: str) -> str:
    """One line: how many requests, how many differed, how many were noise."""
    found, noise = replay.differences(direction)
    run = replay.runs[direction]
    return (
        f"{len(replay.requests)} requests replayed to {run.release} on the schema {run.schema}: {len(found)} answered otherwise "
        f"than {replay.baseline[0].release} on the schema before, {noise} left out as noise"
        + (f", {len(replay.skipped)} writes not replayed (body over the recorded size)" if replay.skipped else "")
    )


# The compatibility gate's direction whose hazards a replay direction meets.
HAZARDS_OF = {PRODUCTION_ON_MIGRATED: compat.PRODUCTION_ON_NEW, CANDIDATE_ON_BEFORE: compat.CANDIDATE_ON_OLD}


def hazard_exposure(replay: Replay, direction: str, findings: list[dict]) -> list[str]:
    """For each hazard the ORM probe found in the matching compatibility direction (``plan_facts.compat_facts``'s
    findings): whether production's recorded requests exercised it here — seen, with the requests that answered
    otherwise, or not seen in so many requests (a permitted but unused value: a reviewer's call, not a live break)."""
    found, _ = replay.differences(direction)
    writes = sum(r.method in WRITE_METHODS for r in replay.requests)
    failing = [d for d in found if d.request.split(" ")[0] in WRITE_METHODS] or found
    lines = []
    for finding in findings:
        where = f"{finding.get('table')}.{finding.get('column')}" if finding.get("column") else str(finding.get("table"))
        hazard = f"ORM hazard on {where} ({', '.join(finding.get('operations') or [])}: {finding.get('error', '')[:120]})"
        if failing:
            lines.append(f"{hazard}: seen in production's recorded requests, e.g. {failing[0].describe()}")
        else:
            lines.append(
                f"{hazard}: not seen in production's {len(replay.requests)} recorded requests ({writes} writes), "
                "all answered as before on this schema"
            )
    return lines


def explain(replay: Replay, direction: str, limit: int = 20) -> str:
    """The first difference (what failed, for a one-line reason), the summary, then one line per route that
    differed (method, route, baseline status -> status now, the app's error, how many times)."""
    found, _ = replay.differences(direction)
    by_route: dict[str, list[Difference]] = {}
    for difference in found:
        by_route.setdefault(difference.request, []).append(difference)
    lines = [f"{len(found)} of {len(replay.requests)} answered otherwise, first {found[0].describe()}"] if found else []
    lines.append(summary(replay, direction))
    for items in list(by_route.values())[:limit]:
        lines.append(f"  {items[0].describe()}" + (f" ×{len(items)}" if len(items) > 1 else ""))
    if len(by_route) > limit:
        lines.append(f"  ... {len(by_route) - limit} more routes")
    return "\n".join(lines)
