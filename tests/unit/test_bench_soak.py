"""The soak's pure parts: where its clients read and write, how a written row is found again, its verdict."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from bench import soak
from bench.__main__ import build_parser
from bench.settings import merged
from deploygate import config
from deploygate.errors import ConfigError
from deploygate.record import MonitoringRecord
from tests.support import serving

ROOT = Path(__file__).resolve().parents[2]


def test_the_clients_use_the_configured_traffic_paths(tmp_path: Path) -> None:
    demo = config.load(root=ROOT, environ={})
    assert soak.paths(demo) == ("/api/links/?page_size=20", "/api/links/{id}/"), "the demo's deploy.toml gives both"
    only_ids = demo.replace(traffic_read_paths="/things/{id}/")
    assert soak.paths(only_ids) == (demo.health_path, "/things/{id}/")
    no_read_back = demo.replace(traffic_read_paths="/things/")
    assert soak.paths(no_read_back) == ("/things/", None)
    with pytest.raises(ConfigError, match="traffic_write_path"):
        soak.paths(config.load(root=tmp_path, environ={}))


def test_a_row_is_present_when_the_app_answers_200_for_it() -> None:
    kept = {1, 2, 5}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            row = int(self.path.strip("/").split("/")[-1])
            self.send_response(200 if row in kept else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(Handler) as (_, url):
        assert soak.rows_served(url, "/api/things/{id}/", [1, 2, 3, 4, 5], workers=2) == 3
    # Nothing answers any more: no row is found, none raises.
    assert soak.rows_served(url, "/api/things/{id}/", [1, 2], timeout_s=1.0) == 0


def test_clean_needs_every_row_back_and_nothing_failed_or_left() -> None:
    clean = soak.SoakResult(cycles=2, clients=4, requests=100, rows_written=20, rows_present=20)
    assert clean.clean
    assert not soak.SoakResult(cycles=2, clients=4, rows_written=20, rows_present=19).clean
    assert not soak.SoakResult(cycles=2, clients=4, rows_written=20, rows_present=None).clean, "unchecked is not clean"
    assert not soak.SoakResult(cycles=2, clients=4, no_answer=1, rows_written=0, rows_present=0).clean
    assert not soak.SoakResult(cycles=2, clients=4, rows_written=0, rows_present=0, leaked=["network x"]).clean
    assert "| rows written / present | 20 / not checked" in soak.render(soak.SoakResult(cycles=2, clients=4, rows_written=20))


def test_the_bench_command_takes_settings_over_its_own() -> None:
    args = build_parser().parse_args(["predeploy", "--rows", "20000", "--set", "project=mybench", "--set", "seed_members=300"])
    assert (args.what, args.rows, args.candidate) == ("predeploy", [20000], "v2-safe")
    sets = config.parse_assignments(args.assignments)
    assert merged({"project": "dgbench", "proxy_port": "1234"}, sets) == {"project": "mybench", "proxy_port": "1234", "seed_members": "300"}


def test_a_failed_window_on_the_good_candidate_makes_the_soak_unclean() -> None:
    passed = MonitoringRecord(30, 10, {}, {}, 0, "ok", verdict="pass", reason="green: 900 requests ...")
    failed = MonitoringRecord(30, 10, {}, {}, 0, "rollback", verdict="fail", reason="p95 158 ms on green above 31 ms")
    result = soak.SoakResult(cycles=2, clients=8, rows_written=3, rows_present=3)
    result.windows = [soak.window_verdict(passed), soak.window_verdict(None)]
    assert result.clean, "a pass and a deploy stopped before its window are no false alarm"
    result.windows.append(soak.window_verdict(failed))
    assert not result.clean
    table = soak.render(result)
    assert "pass ×1, not reached ×1, fail ×1" in table
    assert "fail: p95 158 ms on green above 31 ms" in table
