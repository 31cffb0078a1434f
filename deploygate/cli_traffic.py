"""The commands about production's requests: `traffic` (users for a production that has none, the demo's)
and `record` (the sample of requests the proxy recorded, which the predeploy replays on its copies).

Kept apart from ``cli.py``'s production commands; ``register`` adds them to its parser.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable

from deploygate.errors import ConfigError

_MAX_SECONDS = 600


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cmd_traffic(args: argparse.Namespace) -> int:
    """The configured traffic (traffic.*) through production's proxy for ``--seconds``; 1 when a request failed."""
    from deploygate.cli_common import settings_from
    from deploygate.platform import connect
    from deploygate.proxy import Proxy
    from deploygate.traffic import configured_probe

    if not 0 < args.seconds <= _MAX_SECONDS:
        raise ConfigError(f"--seconds must be more than 0 and at most {_MAX_SECONDS}, got {args.seconds:g}")
    settings = settings_from(args)
    url = Proxy(settings, connect(settings, _say)).url
    writes = settings.traffic_write_path or "none"
    _say(f"{settings.traffic_rate} requests/s to {url} for {args.seconds:g}s (reads {settings.traffic_read_paths}; writes {writes})...")
    with configured_probe(settings, url).start() as probe:
        time.sleep(args.seconds)
        responses = probe.stop()
    by_status = Counter(str(r.status or r.error) for r in responses)
    _say(f"{len(responses)} requests: " + ", ".join(f"{status} x{n}" for status, n in sorted(by_status.items())))
    return 0 if responses and not any(r.failed for r in responses) else 1


def cmd_record(args: argparse.Namespace) -> int:
    """Bring the sample up to date from the proxies' access logs and show it by route."""
    from deploygate import recording
    from deploygate.cli_common import settings_from
    from deploygate.platform import connect
    from deploygate.proxy import Proxy

    settings = settings_from(args)
    path = recording.sample_path(settings)
    logs = Proxy(settings, connect(settings, _say)).access_logs
    summary = recording.update_sample(path, logs, recording.SampleLimits.of(settings), now=time.time())
    print(f"{path}: {summary.describe()}")
    for route, count in sorted(summary.route_counts.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {count:6d}  {route}")
    return 0


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``traffic`` and ``record`` through cli's ``command(name, func, help)``."""
    p_traffic = command("traffic", cmd_traffic, "send the configured traffic (traffic.*) to production for a while: users for a demo")
    p_traffic.add_argument("--seconds", type=float, default=10, help=f"how long (at most {_MAX_SECONDS})")
    command("record", cmd_record, "update and show the sample of production's requests the predeploy replays (replay.*)")
