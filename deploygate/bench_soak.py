"""The soak: deploy and roll back again and again under keep-alive traffic with writes; count what was lost.

``nox -s bench -- soak`` (not CI: it runs for many minutes). One production of its own
(project ``dgsoak``) takes ``cycles`` deploys of a candidate, each followed by a forced
rollback, while keep-alive clients (1 request in 4 a POST) run throughout. At the end:
requests that got no answer or a 5xx, rows written vs rows present, and every container,
volume or network the cycles left behind that production does not need.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploygate import config, production
from deploygate.bench import free_port
from deploygate.database import connect
from deploygate.deploy import Request, deploy, rollback
from deploygate.log import Say, quiet
from deploygate.platform import connect as connect_platform
from deploygate.proxy import Proxy
from deploygate.traffic import body_template

SOAK_PROJECT = "dgsoak"


@dataclass
class SoakResult:
    cycles: int
    clients: int
    requests: int = 0
    no_answer: int = 0
    server_errors: int = 0
    rows_written: int = 0
    rows_present: int = 0
    outcomes: list[str] = field(default_factory=list)
    cycle_s: list[float] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)


def soak(root: Path, *, cycles: int, clients: int, candidate: str = "v2-safe", say: Say = print) -> SoakResult:
    """Run the soak; raises what a deploy or rollback raised (the result so far is lost with it)."""
    from deploygate.loadgen import KeepAliveLoad  # the soak's clients: one keep-alive connection each

    result = SoakResult(cycles=cycles, clients=clients)
    with tempfile.TemporaryDirectory(prefix="dgsoak-") as tmp:
        overrides = {
            "project": SOAK_PROJECT, "proxy_port": str(free_port()), "state_dir": f"{tmp}/state",
            "backup_dir": f"{tmp}/backups", "reports_dir": f"{tmp}/reports", "logs_dir": f"{tmp}/logs",
            "seed_rows": "5000", "seed_members": "200", "monitor_window_s": "5",
            # The soak's own clients are the traffic; deploys follow each other within a minute.
            "traffic_rate": "0", "min_hours_between_deploys": "0",
        }  # fmt: skip
        settings = config.load(root=root, environ={}, overrides=overrides)
        platform = connect_platform(settings, say)
        production.down(platform, settings, volumes=True)
        say("bringing up the soak production...")
        production.up(platform, settings, say=quiet)
        before = platform.footprint()
        body = body_template(settings.traffic_write_body)
        load = KeepAliveLoad(
            Proxy(settings, platform).url, clients=clients, max_requests=10_000_000, max_duration_s=cycles * 300.0,
            get_path="/api/links/?page_size=5", post_path=settings.traffic_write_path, post_body=lambda k, n: body(k * 1_000_000 + n),
        ).start()  # fmt: skip
        try:
            for cycle in range(1, cycles + 1):
                started = time.monotonic()
                deployed = deploy(platform, settings, Request(candidate_ref=candidate), echo=False)
                back = rollback(platform, settings, force=True, echo=False)
                result.outcomes.append(f"{deployed.outcome.value}/{back.outcome.value}")
                result.cycle_s.append(round(time.monotonic() - started, 1))
                say(f"cycle {cycle}/{cycles}: {result.outcomes[-1]} in {result.cycle_s[-1]:.0f}s")
        finally:
            samples = load.stop()
        result.requests = len(samples)
        result.no_answer = sum(s.status == 0 for s in samples)
        result.server_errors = sum(s.status >= 500 for s in samples)
        created = [s.created_id for s in samples if s.created_id is not None]
        result.rows_written = len(created)
        with connect(platform.database()) as conn:
            result.rows_present = conn.execute("SELECT count(*) FROM unified_db_personlink WHERE id = ANY(%s)", [created]).fetchone()[0]
        # Production at rest after a rollback: the same objects as before the cycles (green removed, blue running).
        result.leaked = sorted(platform.footprint() - before)
        production.down(platform, settings, volumes=True)
    return result


def render(result: SoakResult) -> str:
    lines = [
        f"| soak | {result.cycles} deploy + rollback cycles, {result.clients} keep-alive clients (1 in 4 a POST) |",
        "|---|---|",
        f"| outcomes | {', '.join(sorted(set(result.outcomes)))} |",
        f"| cycle time | median {sorted(result.cycle_s)[len(result.cycle_s) // 2] if result.cycle_s else 0:.0f} s |",
        f"| requests | {result.requests:,} |",
        f"| no answer | {result.no_answer} |",
        f"| 5xx | {result.server_errors} |",
        f"| rows written / present | {result.rows_written:,} / {result.rows_present:,} |",
        f"| left behind (containers, networks, volumes) | {', '.join(result.leaked) or 'none'} |",
    ]
    return "\n".join(lines)


def save(result: SoakResult, reports_dir: Path) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"bench_soak_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(asdict(result), indent=2))
    return path
