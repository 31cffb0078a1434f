"""Proxy configuration rendering and access-log parsing (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploygate import proxy


def test_render_routes_to_upstream_and_records_it() -> None:
    upstream = proxy.Upstream(color="green", servers=("proj_web_green:8000",), release="v2-safe")
    text = proxy.render_config(upstream)
    assert "server proj_web_green:8000;" in text
    assert 'default "green";' in text
    assert proxy.live_route(text) == proxy.Route(color="green", release="v2-safe")
    held = proxy.render_config(upstream, hold_s=10)
    assert proxy.live_route(held) == proxy.Route(color="green", release="v2-safe", hold=True)


def test_render_rejects_odd_colour() -> None:
    with pytest.raises(ValueError):
        proxy.render_config(proxy.Upstream(color='blue";', servers=("h:1",), release="r"))


def test_write_config_is_atomic_and_readable(tmp_path: Path) -> None:
    paths = proxy.ProxyPaths(config_dir=tmp_path / "conf", log_dir=tmp_path / "logs")
    assert paths.current() is None
    upstream = proxy.Upstream(color="blue", servers=("h:8000",), release="v1")
    proxy.write_config(paths, upstream)
    assert paths.current() == proxy.Route(color="blue", release="v1")
    assert paths.log_dir.is_dir()
    assert not list(paths.config_dir.glob(".*.tmp"))


def test_parse_access_line() -> None:
    line = (
        '{"ts":1700000000.123,"color":"blue","method":"GET","uri":"/api/links/?page=2","status":502,'
        '"request_time":0.004,"upstream":"172.18.0.3:8000","upstream_status":"502","upstream_time":"0.004"}'
    )
    record = proxy.parse_access_line(line)
    assert record == proxy.AccessRecord(
        ts=1700000000.123, color="blue", method="GET", uri="/api/links/?page=2", status=502, request_time=0.004
    )
    assert proxy.parse_access_line("") is None
    assert proxy.parse_access_line("nginx: [warn] something") is None
    assert proxy.parse_access_line('{"ts": "x"}') is None


def test_read_access_log_filters_by_time(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    rows = [
        '{"ts":10.0,"color":"blue","method":"GET","uri":"/","status":200,"request_time":0.001}',
        "garbage",
        '{"ts":20.0,"color":"green","method":"POST","uri":"/api/links/","status":201,"request_time":0.010}',
    ]
    log.write_text("\n".join(rows) + "\n")
    assert [r.color for r in proxy.read_access_log(log)] == ["blue", "green"]
    assert [r.color for r in proxy.read_access_log(log, since=15)] == ["green"]
    assert list(proxy.read_access_log(tmp_path / "missing.log")) == []
