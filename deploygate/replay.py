"""Production's recorded requests replayed on scratch copies: each release on each schema it may meet.

Every run has a database of its own (``replay_copies``): the one as production has it, or the
one the candidate migrated, so the writes a run replays never reach another run.

The baseline is the production release on the schema before; where a direction answers any
request otherwise, it runs again, to learn which differences are noise (``replay_compare``).
Then each direction the deploy can meet:
  production_on_migrated  the release serving now, once the migration committed and before the
                          switch (and after a rollback, until the schema goes back);
  candidate_on_migrated   the candidate as it serves after the switch;
  candidate_on_before     the candidate on the schema before: only where it can meet it, reads
                          from a replica that has not replayed the migration yet.
Each run is the probe's ``replay`` in the release's image (``probes/deploygate_replay.py``): the
requests sent to the app's own WSGI application in process, one at a time, in the order production
received them, so that a write precedes the reads that follow it as it did; the exception behind an
answer is the one Django reports for it. In process rather than to an app server over HTTP: the
same middleware, views and queries, without a server, a client and a log line per request, which
cost twice the app's own work (measured: 854 requests, 5 runs, 38 cpu-s over HTTP).
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from deploygate import compat
from deploygate.log import Say
from deploygate.platform import Platform
from deploygate.platform.images import Image
from deploygate.probe import Prober
from deploygate.recording import WRITE_METHODS, RecordedRequest
from deploygate.replay_compare import Answer, Difference, Noise, compare, learn_noise, shape_of
from deploygate.replay_copies import BEFORE, MIGRATED, ReplayCopies, ReplayError

PRODUCTION_ON_MIGRATED = "production_on_migrated"
CANDIDATE_ON_MIGRATED = "candidate_on_migrated"
CANDIDATE_ON_BEFORE = "candidate_on_before"
DIRECTIONS = (PRODUCTION_ON_MIGRATED, CANDIDATE_ON_MIGRATED, CANDIDATE_ON_BEFORE)
_BASELINE, _BASELINE_AGAIN = "baseline", "baseline_again"
_PROGRESS_EVERY_S = 10


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
    """The runs done so far on one copy server: the baseline's (a second one where a direction differed) and each
    direction's (``Replayer.direction``)."""

    requests: list[RecordedRequest]
    skipped: list[RecordedRequest]  # writes whose body was too large to record: never sent
    baseline: list[Run] = field(default_factory=list)
    noise: Noise | None = None
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [r.route for r in self.requests]

    def as_production(self) -> tuple[int, list[str]]:
        """How many requests the baseline answered with the status class production answered them, and the first
        few it did not ("GET /: 200 -> 400"): a replay that reproduces production agrees on most (a write whose row
        the backup already holds may not); one that agrees on few compares nothing (a Host the app refuses, a login)."""
        agree, others = 0, []
        for request, answer in zip(self.requests, self.baseline[0].answers, strict=True):
            if request.status // 100 == answer.status // 100:
                agree += 1
            elif len(others) < 3:
                others.append(f"{request.route}: {request.status} -> {answer.status or 'no answer'}")
        return agree, others

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


class _Exchange:
    """The files a run's probe reads and writes, in a directory of their own mounted into its job.

    The job may run as any user: the directory is 0711 (entered, never listed) and its files have
    random names, readable (the requests) or writable (the answers) by the job's user; the stop file
    is made by this host when the replay is stopped, and the probe looks for it between two requests.
    """

    INSIDE = "/deploygate_replay"

    def __init__(self, requests: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="deploygate-replay-"))
        self.dir.chmod(0o711)
        token = secrets.token_hex(8)
        self._requests, self._answers = f"{token}.requests.jsonl", f"{token}.answers.jsonl"
        (self.dir / self._requests).write_text(requests)
        (self.dir / self._requests).chmod(0o644)
        (self.dir / self._answers).touch(mode=0o666)
        (self.dir / self._answers).chmod(0o666)  # touch's mode is masked by the umask

    @property
    def spec(self) -> dict[str, str]:
        inside = self.INSIDE
        return {"requests": f"{inside}/{self._requests}", "result": f"{inside}/{self._answers}", "stop": f"{inside}/stop"}

    def answered(self) -> int:
        """How many answers the probe wrote so far (the progress said while waiting)."""
        try:
            with (self.dir / self._answers).open("rb") as answers:
                return sum(1 for _ in answers)
        except OSError:
            return 0

    def answers(self) -> list[Answer]:
        found = []
        for line in (self.dir / self._answers).read_text().splitlines():
            data = json.loads(line)
            body = base64.b64decode(data["body"]) if data.get("body") is not None else None
            found.append(Answer(data["status"], shape_of(data["content_type"], body, data["size"]), app_error=data["error"]))
        return found

    def stop(self) -> None:
        try:
            (self.dir / "stop").touch()
        except FileNotFoundError:  # its run ended meanwhile and removed it
            pass

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Replayer:
    """Replays ``requests`` with the production release and the candidate on the copy (``ReplayCopies``).

    Its runs go in threads of their own, started as early as the gate can (``start``: they need only the
    backup and the two images), so that they overlap the gate's other checks; ``direction`` waits for the
    runs it needs. ``close`` stops what is still running, between two requests.
    """

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
        self.planned = list(planned)  # the directions the checks that will run ask for: started together
        self._saying = threading.Lock()
        kept, skipped = replayable(recorded)
        self.replay = Replay(requests=kept, skipped=skipped)
        self._distinct, self._slot_of = distinct(kept)
        # What every run's probe reads: made once, written into each run's own folder.
        self._requests_file = "".join(f"{kept[index].to_json()}\n" for index in self._distinct)
        # One thread per run: the baseline's two and every direction can all be under way at once.
        self._pool = ThreadPoolExecutor(max_workers=2 + len(DIRECTIONS), thread_name_prefix="replay")
        self._started: dict[str, Future[Run]] = {}
        self._exchanges: dict[str, _Exchange] = {}  # each run's files: its progress, and where it is told to stop
        self._starting = threading.Lock()
        self._stopping = threading.Event()

    def _say(self, message: str) -> None:
        with self._saying:  # the runs go in threads: one line at a time
            self.say(message)

    def _run(self, name: str, number: int, image: Image, schema: str, label: str) -> Run:
        template = self.copies.migrated_template(self.candidate) if schema == MIGRATED else self.copies.settings.db_name
        started = time.monotonic()
        sent = len(self._distinct)
        self._say(f"replay: {label}: {sent} distinct of {len(self.replay.requests)} recorded requests to {image.tag} ({schema})...")
        exchange = self._exchanges[name] = _Exchange(self._requests_file)
        try:
            if self._stopping.is_set():
                raise ReplayError(f"the replay's {label} run was stopped before it began")
            with self.copies.database(template, number) as environment:
                network = self.copies.copy.scratch.database.network
                prober = Prober.configured(self.platform, self.copies.settings, image, environment, network=network)
                summary, _ = prober.run("replay", exchange.spec, exchange={str(exchange.dir): _Exchange.INSIDE})
                answers = exchange.answers()
        finally:
            exchange.remove()
        if summary.get("stopped"):
            raise ReplayError(f"the replay's {label} run was stopped after {len(answers)} requests")
        if len(answers) != sent:
            raise ReplayError(f"the replay's {label} run in {image.tag} answered {len(answers)} of {sent} requests")
        seconds = round(time.monotonic() - started, 3)
        errors = sum(bool(a.app_error) for a in answers)
        self._say(f"replay: {label}: done in {seconds:.1f}s")
        # Each request gets the answer its distinct one got.
        return Run(image.tag, schema, [answers[slot] for slot in self._slot_of], seconds, errors)

    def _jobs(self, directions: Sequence[str]) -> dict[str, tuple[Image, str, str]]:
        """The runs not started yet of ``directions`` (the baseline first; its second run, for noise, only when
        named): name -> (image, schema, label)."""
        wanted = {
            _BASELINE: (self.production, BEFORE, "baseline"),
            _BASELINE_AGAIN: (self.production, BEFORE, "baseline, again (noise)"),
            PRODUCTION_ON_MIGRATED: (self.production, MIGRATED, "production on migrated"),
            CANDIDATE_ON_MIGRATED: (self.candidate, MIGRATED, "candidate on migrated"),
            CANDIDATE_ON_BEFORE: (self.candidate, BEFORE, "candidate on before"),
        }
        return {name: wanted[name] for name in (_BASELINE, *directions) if name not in self._started}

    def start(self, directions: Sequence[str] = ()) -> None:
        """Start the baseline (the production release on the schema before) and ``directions`` (default: the
        planned ones), those not started yet, in the background: each has its own
        database and probe job, and a replay's time is the app's, which the runs share between the machine's
        cores. The runs on the migrated schema begin once the candidate migrated its template."""
        with self._starting:
            jobs = self._jobs(directions or self.planned)
            self.copies.migrated_runs += sum(schema == MIGRATED for _image, schema, _label in jobs.values())
            for name, job in jobs.items():
                self._started[name] = self._pool.submit(self._run, name, len(self._started) + 1, *job)

    def _wait(self, names: Sequence[str]) -> dict[str, Run]:
        """The runs ``names``, once done; says every ``_PROGRESS_EVERY_S`` how far those still going are."""
        pending = {self._started[name] for name in names}
        while True:
            done, pending = wait(pending, timeout=_PROGRESS_EVERY_S, return_when=FIRST_EXCEPTION)
            for future in done:  # a run that failed fails the check at once: the others need not be waited for
                if future.exception() is not None:
                    raise future.exception()
            if not pending:
                return {name: self._started[name].result() for name in names}
            going = [
                f"{name} {self._exchanges[name].answered() if name in self._exchanges else 0}/{len(self._distinct)}"
                for name in names
                if self._started[name] in pending
            ]
            self._say(f"replay: waiting for {', '.join(going)}")

    def direction(self, name: str) -> Replay:
        """``name`` replayed (once), with the baseline; the other planned directions start too if they were not yet.

        Where ``name`` answered any request otherwise than the baseline, the baseline runs again, to tell
        which of those differences are noise (Diffy's way): only then, as noise changes nothing where
        nothing differs, and a release that answers as before costs one run less (a quarter of the replay).
        """
        self.start(list(dict.fromkeys([*self.planned, name])))
        runs = self._wait([_BASELINE, name])
        if not self.replay.baseline:
            self.replay.baseline = [runs[_BASELINE]]
        self.replay.runs[name] = runs[name]
        if self.replay.noise is None and self.replay.differences(name)[0]:
            self._say(f"replay: {name.replace('_', ' ')} answered otherwise: the baseline again, to tell noise...")
            self.start([_BASELINE_AGAIN])
            again = self._wait([_BASELINE_AGAIN])[_BASELINE_AGAIN]
            self.replay.baseline.append(again)
            self.replay.noise = learn_noise(self.replay.baseline[0].answers, again.answers)
        return self.replay

    def close(self) -> None:
        """Stop the runs still going (between two requests) and wait for them to have removed what they made."""
        self._stopping.set()
        for exchange in list(self._exchanges.values()):
            exchange.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)


# Below this share of requests answered as production did, the replay reproduces nothing worth comparing.
AS_PRODUCTION_MIN = 0.5
RUNS_DETAIL = "replay_runs_s"  # the gate result's details: each run's seconds (the replay bench reads them)


def run_seconds(replay: Replay) -> dict[str, float]:
    """Each run's seconds, the baseline's included: they go in the background, beside the gate's other checks."""
    names = [_BASELINE, _BASELINE_AGAIN][: len(replay.baseline)]
    return {**dict(zip(names, (run.seconds for run in replay.baseline), strict=True)), **{n: r.seconds for n, r in replay.runs.items()}}


def summary(replay: Replay, direction: str) -> str:
    """One line: how many requests, how many differed, how many were noise."""
    found, noise = replay.differences(direction)
    run = replay.runs[direction]
    agree, _ = replay.as_production()
    return (
        f"{len(replay.requests)} requests replayed to {run.release} on the schema {run.schema}: {len(found)} answered otherwise "
        f"than {replay.baseline[0].release} on the schema before, "
        + (f"{noise} left out as noise" if replay.noise is not None else "no noise to tell (the baseline ran once)")
        + (f", {len(replay.skipped)} writes not replayed (body over the recorded size)" if replay.skipped else "")
        + f"; the baseline answered {agree} of {len(replay.requests)} as production did"
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
