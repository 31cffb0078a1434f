"""The traffic recording: routes, the bounded sample, its file, and what the proxy logs for it (redacted)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from deploygate import haproxy
from deploygate.proxy import AccessRecord, parse_access_line
from deploygate.recording import (
    RecordedRequest,
    SampleLimits,
    from_access,
    read_sample,
    route_of,
    sample,
    update_sample,
)

OLD_LINE = (
    '{"ts":1700000000.123,"color":"blue","method":"GET","uri":"\\/orders\\/?page=2","status":200,"request_time":0.004,'
    '"upstream":"10.0.0.2:8000","upstream_status":"200","upstream_time":"0.003","server":"blue/blue1","term":"----",'
    '"retries":"0","timers":"0/0/0/3/4"}'
)


def _line(
    ts: float, method: str = "POST", uri: str = "/api/orders/", *, body: bytes = b"", bsize: int | None = None, color: str = "blue"
) -> str:
    return json.dumps(
        {
            "ts": ts,
            "color": color,
            "method": method,
            "uri": uri,
            "status": 201,
            "request_time": 0.01,
            "ctype": "application/json",
            "accept": "-",
            "body": base64.b64encode(body).decode() if body else "-",
            "bsize": len(body) if bsize is None else bsize,
        },
        separators=(",", ":"),
    )


def _request(ts: float, path: str = "/a/", method: str = "GET") -> RecordedRequest:
    return RecordedRequest(ts=ts, method=method, path=path, query="", headers={}, body=b"", status=200, color="blue")


# --- routes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("post", "/api/orders/42/", "POST /api/orders/{id}/"),
        ("GET", "/api/orders/", "GET /api/orders/"),
        ("GET", "/u/6f1c2a9e-3b4d-4c5e-9f00-123456789abc/files/7", "GET /u/{id}/files/{id}"),
        ("GET", "/blob/9f86d081884c7d659a2feaa0c55ad015/", "GET /blob/{id}/"),
        ("GET", "/posts/summer-sale-2024/", "GET /posts/{id}/"),
        ("GET", "/api/v2/health/", "GET /api/v2/health/"),
        ("GET", "/decadebeefcafe/", "GET /decadebeefcafe/"),  # a word of hex letters is not an id
        ("GET", "/search?q=1", "GET /search"),
        ("GET", "", "GET /"),
    ],
)
def test_route_of_names_ids_as_placeholders(method: str, path: str, route: str) -> None:
    assert route_of(method, path) == route


# --- the access log's new keys -------------------------------------------------------------------------


def test_an_old_log_line_parses_with_nothing_recorded() -> None:
    record = parse_access_line(OLD_LINE)
    assert record == AccessRecord(1700000000.123, "blue", "GET", "/orders/?page=2", 200, 0.004)
    assert (record.ctype, record.accept, record.body, record.bsize) == ("", "", b"", 0)


def test_a_new_log_line_gives_headers_and_the_decoded_body() -> None:
    record = parse_access_line(_line(5.0, body=b'{"password":"[redacted]"}'))
    assert record is not None
    assert (record.ctype, record.accept, record.body, record.bsize) == ("application/json", "", b'{"password":"[redacted]"}', 25)
    broken = parse_access_line(_line(5.0, bsize=3).replace('"body":"-"', '"body":"not base64!"'))
    assert broken is not None and (broken.body, broken.bsize) == (b"", 3)  # still counted; the body is not kept


# --- one request ---------------------------------------------------------------------------------------


def test_from_access_keeps_a_request_and_skips_what_no_app_answered() -> None:
    request = from_access(AccessRecord(1.0, "green", "put", "/api/orders/3/?x=1", 200, 0.1, "application/json", "*/*", b"{}", 2))
    assert request == RecordedRequest(
        1.0, "PUT", "/api/orders/3/", "x=1", {"Content-Type": "application/json", "Accept": "*/*"}, b"{}", 200, "green"
    )
    assert request.route == "PUT /api/orders/{id}/"
    assert RecordedRequest.from_json(request.to_json()) == request
    assert from_access(AccessRecord(1.0, haproxy.HOLD, "GET", "/", 503, 0.0)) is None
    assert from_access(AccessRecord(1.0, haproxy.NO_COLOR, "<BADREQ>", "", 400, 0.0)) is None


def test_a_write_whose_body_was_not_captured_is_marked_truncated() -> None:
    not_logged = from_access(AccessRecord(1.0, "blue", "POST", "/up/", 201, 0.1, "multipart/form-data", "", b"", 9000))
    over_limit = from_access(AccessRecord(1.0, "blue", "POST", "/up/", 201, 0.1, "text/plain", "", b"x" * 100, 100), max_body_bytes=50)
    empty = from_access(AccessRecord(1.0, "blue", "DELETE", "/up/1/", 204, 0.1))
    assert not_logged is not None and not_logged.body_truncated and not_logged.body == b""
    assert over_limit is not None and over_limit.body_truncated and over_limit.body == b""
    assert empty is not None and not empty.body_truncated


# --- the sample ----------------------------------------------------------------------------------------


def test_sample_keeps_the_newest_per_route_and_drops_the_old() -> None:
    requests = [_request(float(ts), "/busy/") for ts in range(100)] + [_request(5.0, "/rare/")]
    kept = sample(requests, max_requests=1000, per_route=10, max_age_s=1000, now=100.0)
    assert [r.ts for r in kept if r.path == "/busy/"] == [float(ts) for ts in range(90, 100)]
    assert [r.path for r in kept if r.ts == 5.0] == ["/rare/"]
    assert sample(requests, max_requests=1000, per_route=10, max_age_s=50, now=100.0) == kept[1:]  # /rare/ too old now
    assert kept == sorted(kept, key=lambda r: r.ts)


def test_sample_trimmed_to_its_size_keeps_every_route_and_is_deterministic() -> None:
    requests = [_request(float(ts), "/busy/") for ts in range(200)]
    requests += [_request(10.0 + n, f"/rare{n}/") for n in range(4)]
    kept = sample(requests, max_requests=8, per_route=50, max_age_s=10_000, now=300.0)
    assert len(kept) == 8
    assert {r.route for r in kept} == {"GET /busy/", *(f"GET /rare{n}/" for n in range(4))}
    assert [r.ts for r in kept if r.path == "/busy/"] == [196.0, 197.0, 198.0, 199.0]
    assert sample(list(reversed(requests)), max_requests=8, per_route=50, max_age_s=10_000, now=300.0) == kept
    assert sample(requests, max_requests=0, per_route=5, max_age_s=10, now=300.0) == []
    with pytest.raises(ValueError):
        sample(requests, max_requests=-1, per_route=5, max_age_s=10, now=300.0)


def test_update_sample_merges_only_newer_requests_into_a_private_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        "# deploygate: haproxy starting\n" + "\n".join(_line(float(ts), uri=f"/api/orders/{ts}/", body=b"{}") for ts in (1, 2, 3)) + "\n"
    )
    path = tmp_path / "state" / "app" / "replay" / "requests.jsonl"
    limits = SampleLimits(max_requests=100, per_route=100, max_age_s=3600, max_body_bytes=4096)

    first = update_sample(path, [log], limits, now=10.0)
    assert (first.requests, first.routes, first.oldest, first.newest, first.added) == (3, 1, 1.0, 3.0, 3)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert [r.body for r in read_sample(path)] == [b"{}"] * 3

    with log.open("a") as handle:
        handle.write(_line(4.0, "GET", "/health/") + "\n" + _line(5.0, color="hold") + "\n")
    second = update_sample(path, [log], limits, now=10.0)
    assert (second.requests, second.routes, second.added) == (4, 2, 1)  # the first three are not added twice
    assert [p.name for p in path.parent.iterdir()] == ["requests.jsonl"]  # no temporary file left
    assert update_sample(path, [log], limits, now=10.0).added == 0


def test_update_sample_refuses_a_corrupt_sample_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text("not json\n")
    with pytest.raises(ValueError):
        update_sample(path, [], SampleLimits(), now=0.0)
    assert path.read_text() == "not json\n"


# --- what the proxy logs -------------------------------------------------------------------------------


def test_the_proxy_redacts_configured_fields_before_logging_and_never_logs_credentials() -> None:
    text = haproxy.render_config({"blue": ["web:8000"]})
    assert "    option http-buffer-request\n" in text
    assert '"body":"%[var(txn.body)]","bsize":%[var(txn.bsize,0)]}' in text
    redactions = [line for line in text.splitlines() if "regsub(" in line]
    assert len(redactions) == 2 and all(line.endswith(",ig)' if { var(txn.body) -m found }") for line in redactions)
    assert "password|passwd|secret|token|api_key" in redactions[0] and '"\\"\\1\\":\\"[redacted]\\""' in redactions[0]
    assert '"\\1\\2=[redacted]"' in redactions[1]
    # The body is logged only once redacted: captured first, then each step in place, then base64.
    rules = [line.strip() for line in text.splitlines() if "txn.body)" in line and line.strip().startswith("http-request")]
    assert rules[0].startswith(
        "http-request set-var(txn.body) req.body if { method POST PUT PATCH DELETE } { var(txn.bsize) -m int le 4096 }"
    )
    assert rules[-1] == "http-request set-var(txn.body) var(txn.body),base64 if { var(txn.body) -m found }"
    assert "authorization" not in text.replace("|authorization|", "").lower() and "cookie" not in text.lower()


def test_recording_can_be_limited_or_switched_off_and_rejects_bad_field_names() -> None:
    custom = haproxy.render_config({"blue": ["web:8000"]}, record_body_bytes=100, redact_fields=["pin", "user.ssn"])
    assert "{ var(txn.bsize) -m int le 100 }" in custom and "(pin|user[.]ssn)" in custom
    off = haproxy.render_config({"blue": ["web:8000"]}, record_body_bytes=0)
    assert "regsub(" not in off and "http-buffer-request" not in off and "req.body " not in off
    assert '"ctype":"%[var(txn.ctype),json(utf8s)]"' in off  # the headers are still logged
    for bad in (["pass word"], ["a)|(.*"], "password", []):
        with pytest.raises(ValueError):
            haproxy.render_config({"blue": ["web:8000"]}, redact_fields=bad)
    with pytest.raises(ValueError):
        haproxy.render_config({"blue": ["web:8000"]}, record_body_bytes=haproxy.MAX_RECORD_BODY_BYTES + 1)


def test_both_log_formats_are_json_with_the_same_keys() -> None:
    from deploygate.haproxy.config import _ERROR_LOG_FORMAT, _LOG_FORMAT

    def keys(fmt: str) -> list[str]:
        # Every %-expression stands for a value; replace each by a number to read the keys.
        import re

        return list(json.loads(re.sub(r"%\[[^\]]*\]|%[A-Za-z]+", "0", fmt)))

    assert keys(_LOG_FORMAT) == keys(_ERROR_LOG_FORMAT)
    assert keys(_LOG_FORMAT)[-4:] == ["ctype", "accept", "body", "bsize"]
