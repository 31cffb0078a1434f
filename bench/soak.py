"""The soak: deploy and roll back again and again under keep-alive traffic with writes; count what was lost.

``nox -s bench -- soak`` (not CI: it runs for many minutes). One production of its own
(project ``dgsoak``) takes ``cycles`` deploys of a candidate, each followed by a forced
rollback, while keep-alive clients (1 request in 4 a POST) run throughout. At the end:
requests that got no answer or a 5xx, rows written vs rows the app still serves, and every
container, volume or network the cycles left behind that production does not need.

What the clients send is the configured traffic: they GET the first ``traffic_read_paths``
entry without ``{id}`` (else ``health_path``) and POST ``traffic_write_body`` to
``traffic_write_path``; a written row counts as present when the app answers 200 for it at
the first read path with ``{id}``, the way a user would find it again.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from bench import settings as bench_settings
from bench.loadgen import KeepAliveLoad
from bench.settings import free_port
from deploygate import config, production
from deploygate.deploy import Request, deploy, rollback
from deploygate.log import Say, quiet
from deploygate.platform import connect as connect_platform
from deploygate.proxy import Proxy
from deploygate.record import MonitoringRecord
from deploygate.traffic import ID_PLACEHOLDER, body_template

SOAK_PROJECT = "dgsoak"


@dataclass
class SoakResult:
    cycles: int
    clients: int
    requests: int = 0
    no_answer: int = 0
    server_errors: int = 0
    rows_written: int = 0
    rows_present: int | None = None  # None: not checked (no read path with {id} is configured)
    outcomes: list[str] = field(default_factory=list)
    windows: list[str] = field(default_factory=list)  # each deploy's monitoring verdict and its reason
    cycle_s: list[float] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Every request answered without a 5xx, every row still served, nothing left behind, no window failed.

        The soak's candidate is a good release: a window that fails it is a false alarm.
        """
        lost = self.rows_present is None or self.rows_present != self.rows_written
        false_alarm = any(verdict_word(w) == "fail" for w in self.windows)
        return not (self.no_answer or self.server_errors or self.leaked or lost or false_alarm)


def paths(settings: config.Settings) -> tuple[str, str | None]:
    """(the clients' GET path, the path a written row is read back at or None): from the traffic settings.

    Raises ``ConfigError`` when no write path is configured: a soak without writes cannot count lost rows.
    """
    if not settings.traffic_write_path:
        raise config.ConfigError("the soak POSTs to traffic_write_path, which is empty")
    reads = [p.strip() for p in settings.traffic_read_paths.split(",") if p.strip()]
    get_path = next((p for p in reads if ID_PLACEHOLDER not in p), settings.health_path)
    read_back = next((p for p in reads if ID_PLACEHOLDER in p), None)
    return get_path, read_back


def rows_served(base_url: str, read_back: str, ids: Iterable[int], *, workers: int = 8, timeout_s: float = 10.0) -> int:
    """How many of ``ids`` the app answers 200 for at ``read_back`` (its ``{id}`` filled in)."""
    local = threading.local()

    def served(row_id: int) -> bool:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = False  # an HTTP(S)_PROXY from the environment must not see local traffic
        url = base_url.rstrip("/") + read_back.replace(ID_PLACEHOLDER, str(row_id))
        try:
            return local.session.get(url, timeout=timeout_s, allow_redirects=False).status_code == 200
        except requests.RequestException:
            return False

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="soak-read-back") as pool:
        return sum(pool.map(served, ids))


def soak(
    root: Path,
    *,
    cycles: int,
    clients: int,
    candidate: str = "v2-safe",
    say: Say = print,
    sets: dict[str, str] | None = None,
    config_file: str | None = None,
) -> SoakResult:
    """Run the soak; raises what a deploy or rollback raised (the result so far is lost with it)."""
    result = SoakResult(cycles=cycles, clients=clients)
    with tempfile.TemporaryDirectory(prefix="dgsoak-") as tmp:
        own = {
            "project": SOAK_PROJECT,
            "proxy_port": str(free_port()),
            "state_dir": f"{tmp}/state",
            "backup_dir": f"{tmp}/backups",
            "reports_dir": f"{tmp}/reports",
            "logs_dir": f"{tmp}/logs",
            "seed_rows": "5000",
            "seed_members": "200",
            "monitor_window_s": "5",
            # The soak's own clients are the traffic; deploys follow each other within a minute.
            "traffic_rate": "0",
            "min_hours_between_deploys": "0",
        }
        settings = bench_settings.load(root, bench_settings.merged(own, sets), config_file)
        get_path, read_back = paths(settings)
        platform = connect_platform(settings, say)
        production.down(platform, settings, volumes=True)
        say("bringing up the soak production...")
        production.up(platform, settings, say=quiet)
        before = platform.footprint()
        body = body_template(settings.traffic_write_body)
        url = Proxy(settings, platform).url
        load = KeepAliveLoad(
            url,
            clients=clients,
            max_requests=10_000_000,
            max_duration_s=cycles * 300.0,
            get_path=get_path,
            post_path=settings.traffic_write_path,
            post_body=lambda k, n: body(k * 1_000_000 + n),
        ).start()
        try:
            for cycle in range(1, cycles + 1):
                started = time.monotonic()
                deployed = deploy(platform, settings, Request(candidate_ref=candidate), echo=False)
                back = rollback(platform, settings, force=True, echo=False)
                result.outcomes.append(f"{deployed.outcome.value}/{back.outcome.value}")
                result.windows.append(window_verdict(deployed.monitoring))
                result.cycle_s.append(round(time.monotonic() - started, 1))
                say(f"cycle {cycle}/{cycles}: {result.outcomes[-1]} in {result.cycle_s[-1]:.0f}s, window {result.windows[-1]}")
        finally:
            samples = load.stop()
        result.requests = len(samples)
        result.no_answer = sum(s.status == 0 for s in samples)
        result.server_errors = sum(s.status >= 500 for s in samples)
        created = [s.created_id for s in samples if s.created_id is not None]
        result.rows_written = len(created)
        if read_back is not None:
            say(f"reading the {len(created):,} written rows back through the proxy...")
            result.rows_present = rows_served(url, read_back, created)
        # Production at rest after a rollback: the same objects as before the cycles (green removed, blue running).
        result.leaked = sorted(platform.footprint() - before)
        production.down(platform, settings, volumes=True)
    return result


def window_verdict(monitoring: MonitoringRecord | None) -> str:
    """``pass: <reason>``, ``fail: <reason>``...; ``not reached`` when the deploy stopped before its window."""
    if monitoring is None:
        return "not reached"
    return f"{monitoring.verdict}: {monitoring.reason}" if monitoring.reason else monitoring.verdict


def verdict_word(window: str) -> str:
    return window.split(":", 1)[0]


def tally(values: Iterable[str]) -> str:
    """``a ×3, b ×1``, most frequent first: ten identical verdicts read as one line."""
    counts = Counter(values)
    return ", ".join(f"{value} ×{n}" for value, n in counts.most_common()) or "none"


def render(result: SoakResult) -> str:
    """A markdown table of the soak's outcome."""
    present = "not checked (no traffic_read_paths entry has {id})" if result.rows_present is None else f"{result.rows_present:,}"
    lines = [
        f"| soak | {result.cycles} deploy + rollback cycles, {result.clients} keep-alive clients (1 in 4 a POST) |",
        "|---|---|",
        f"| outcomes (deploy/rollback) | {tally(result.outcomes)} |",
        f"| monitoring windows | {tally(verdict_word(w) for w in result.windows)} |",
        f"| windows not passed | {'; '.join(w for w in result.windows if verdict_word(w) != 'pass') or 'none'} |",
        f"| cycle time | median {sorted(result.cycle_s)[len(result.cycle_s) // 2] if result.cycle_s else 0:.0f} s |",
        f"| requests | {result.requests:,} |",
        f"| no answer | {result.no_answer} |",
        f"| 5xx | {result.server_errors} |",
        f"| rows written / present | {result.rows_written:,} / {present} |",
        f"| left behind (containers, networks, volumes) | {', '.join(result.leaked) or 'none'} |",
    ]
    return "\n".join(lines)


def save(result: SoakResult, reports_dir: Path) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"bench_soak_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(asdict(result), indent=2))
    return path
