"""The proxy's access log: one JSON line per request, parsed (pure logic; HAProxy's config is in test_haproxy)."""

from __future__ import annotations

from pathlib import Path

from deploygate import proxy


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
