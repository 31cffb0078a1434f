"""Production's requests recorded by its proxy (secrets redacted at the proxy) and replayed by the predeploy.

v2-raw-sql is v2-safe (state-only migrations: every ORM gate passes it) whose links page counts
members in raw SQL naming the renamed column, which its migrations never create: only the replay
of production's own requests stops it, naming the route and the app's exception. v2-safe, on the
same recorded requests, shows no difference at all (no false difference).
"""

from __future__ import annotations

import base64
import re
import stat

import requests

from deploygate import recording

PASSWORD = "hunter2-never-logged"
# The other e2e deploys replay nothing (replay_max_requests = 0 in their overrides).
REPLAYED = 300


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_requests_are_recorded_with_secrets_redacted_at_the_proxy_and_kept_private(dg, e2e_stack, proxy) -> None:
    traffic = dg.run("traffic", "--seconds", "6")
    assert traffic.code == 0, traffic.output[-2000:]
    body = {"full_name": "Secret Sender", "email": "secret@traffic.invalid", "password": PASSWORD}
    sent = requests.post(f"{proxy.url}/api/links/", json=body, headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=10)
    assert sent.status_code == 201, sent.text
    shown = dg.run("record", replay_max_requests=str(REPLAYED))
    assert shown.code == 0, shown.output[-2000:]
    for route in ("GET /", "GET /api/links/", "GET /api/links/{id}/", "POST /api/links/"):
        assert re.search(rf"^\s+\d+\s+{re.escape(route)}$", shown.output, re.MULTILINE), f"{route} not recorded:\n{shown.output}"
    sample = recording.sample_path(e2e_stack)
    assert _mode(sample) == 0o600 and _mode(sample.parent) == 0o700, (oct(_mode(sample)), oct(_mode(sample.parent)))
    for log in [*proxy.access_logs, sample]:
        text = log.read_text(errors="replace")
        decoded = " ".join(base64.b64decode(b).decode(errors="replace") for b in re.findall(r'"body":"([A-Za-z0-9+/=]{8,})"', text))
        assert PASSWORD not in text and PASSWORD not in decoded, f"the password reached {log}"
    mine = [r for r in recording.read_sample(sample) if b"Secret Sender" in r.body]
    assert mine and b'"password":"[redacted]"' in mine[-1].body.replace(b" ", b""), mine[-1:]


def test_replay_stops_raw_sql_on_a_renamed_column_and_finds_no_difference_for_v2_safe(dg, e2e_stack) -> None:
    assert dg.run("traffic", "--seconds", "6").code == 0
    stopped = dg.run("predeploy", "--candidate", "v2-raw-sql", "-k", "replay", replay_max_requests=str(REPLAYED))
    assert stopped.code == 1, stopped.output[-3000:]
    out = stopped.output
    assert re.search(r"test_replay_candidate_on_migrated_schema\S*\s+FAILED|FAILED \S*test_replay_candidate_on_migrated_schema", out), out[
        -3000:
    ]
    assert re.search(r"GET /: 200 -> 500 \(\S*ProgrammingError at \S*views.py in _members_on_page_sql\)", out), out[-3000:]
    assert not re.search(r"FAILED \S*test_replay_production_release_on_migrated_schema", out), out[-3000:]
    clean = dg.run("predeploy", "--candidate", "v2-safe", "-k", "replay", replay_max_requests=str(REPLAYED))
    assert clean.code == 0, clean.output[-3000:]
    lines = re.findall(r"replayed to \S+ on the schema \w+: (\d+) answered otherwise", clean.output)
    assert lines and set(lines) == {"0"}, clean.output[-3000:]
    agreement = re.findall(r"the baseline answered (\d+) of (\d+) as production did", clean.output)
    assert agreement and all(int(a) >= 0.9 * int(b) for a, b in agreement), "the replay does not reproduce production's answers"
    found = re.search(r"(\d+) requests replayed", clean.output)
    print(f"\nreplay: v2-raw-sql stopped ({out.count('-> 500')} lines name a 500); v2-safe: {found.group(1)} requests, 0 differences")
