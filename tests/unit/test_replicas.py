"""Which replicas a deploy waits for, how their replay is told, and how [[database.replicas]] is read."""

from __future__ import annotations

import threading

import pytest

from deploygate import config, replicas
from deploygate.database import DatabaseAddress

PRIMARY = DatabaseAddress(host="10.0.0.2", port=5432, name="app", user="app", password="secret")


def test_configured_replicas_are_reached_with_the_primarys_database_and_credentials() -> None:
    settings = config.load(
        None,
        environ={},
        overrides={"db_replicas": '[{"host": "replica-1", "port": 5433, "application_name": "r1"}, {"host": "replica-2"}]'},
    )
    found = replicas.configured(PRIMARY, settings)
    assert [s.name for s in found] == ["r1", "replica-2:5432"]
    assert (found[0].address.host, found[0].address.port, found[0].address.name, found[0].address.password) == (
        "replica-1",
        5433,
        "app",
        "secret",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('[{"port": 5433}]', "every table needs 'host'"),
        ('[{"host": "r", "port": "5433"}]', "port expects int"),
        ('[{"host": "r", "slot": "x"}]', "unknown key(s) slot"),
        ('{"host": "r"}', "expected a JSON array of objects"),
    ],
)
def test_a_bad_replica_entry_is_one_line_naming_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.load(None, environ={}, overrides={"db_replicas": raw})


def test_replicas_from_deploy_toml_are_a_list_of_tables(tmp_path) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text('[[database.replicas]]\nhost = "r1"\nport = 6432\n\n[[database.replicas]]\nhost = "r2"\napplication_name = "east"\n')
    settings = config.load(path, environ={})
    assert settings.db_replicas == ({"host": "r1", "port": 6432}, {"host": "r2", "application_name": "east"})


def test_a_replay_says_how_long_it_took_or_how_far_behind_it_is() -> None:
    assert replicas.Replay("r1", True, 0.031, 0).describe() == "r1 replayed it in 0.03s"
    assert replicas.Replay("r1", False, 3.02, 81_920).describe() == "r1 81,920 bytes behind after 3.0s"
    unreachable = replicas.Replay("r2", False, 3.0, None, "could not translate host name")
    assert unreachable.describe() == "r2 never answered after 3.0s (could not translate host name)"
    report = replicas.ReplayReport("0/3000000", (replicas.Replay("r1", True, 0.1, 0), unreachable))
    assert not report.ok and report.lagging == (unreachable,)


def test_the_lag_summary_gives_each_replicas_worst_and_says_when_it_never_answered() -> None:
    samples = [
        replicas.LagSample(1.0, "a", 100, 0.5),
        replicas.LagSample(2.0, "a", 4_000, None),
        replicas.LagSample(3.0, "a", None, None, "connection refused"),
        replicas.LagSample(1.0, "b", None, None, "connection refused"),
    ]
    assert replicas.lag_summary(samples) == [
        "a at most 4,000 bytes behind, replay lag at most 0.50s, 1 of 3 samples unanswered",
        "b never answered (connection refused)",
    ]
    assert replicas.lag_summary([]) == []


def test_a_replica_that_replayed_past_the_position_read_is_sampled_as_not_behind(monkeypatch) -> None:
    from contextlib import nullcontext
    from unittest.mock import MagicMock

    conn = MagicMock()
    conn.execute.return_value.fetchone.return_value = ("0/3000000", {"r1": 0.0})
    monkeypatch.setattr(replicas, "connect", lambda address: nullcontext(conn))
    answers = {"r1": (True, -161_888, ""), "r2": (False, 4096, "")}
    monkeypatch.setattr(replicas, "_ask", lambda standby, target: answers[standby.name])
    standbys = [replicas.Standby(name, None) for name in ("r1", "r2")]
    samples = replicas.sample_lag(None, standbys, clock=lambda: 1.0)
    assert [(s.name, s.behind_bytes) for s in samples] == [("r1", 0), ("r2", 4096)]


def test_a_replica_that_breaks_off_mid_query_is_an_unanswered_sample_not_a_dead_sampler(monkeypatch) -> None:
    """Seen in CI: the standby stopped while the sampler's query was in flight; psycopg raised from ``execute``
    (not ``connect``), the sampler's thread died, and the deploy's timeline had no sample of the standby."""
    from contextlib import nullcontext
    from unittest.mock import MagicMock

    import psycopg

    conn = MagicMock()
    conn.execute.side_effect = psycopg.OperationalError("server closed the connection unexpectedly\n\tThis probably means ...")
    monkeypatch.setattr(replicas, "connect", lambda address: nullcontext(conn))
    assert replicas._ask(replicas.Standby("r1", None), "0/3000000") == (
        False,
        None,
        "r1 broke off: OperationalError: server closed the connection unexpectedly",
    )
    (sample,) = replicas.sample_lag(None, [replicas.Standby("r1", None)], clock=lambda: 1.0)
    assert (sample.behind_bytes, sample.error) == (None, "the primary: OperationalError: server closed the connection unexpectedly")


def test_the_lag_sampler_keeps_sampling_through_an_unexpected_error(monkeypatch) -> None:
    calls = []

    def sample(primary, standbys):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("something nobody expected")
        return [replicas.LagSample(2.0, "r1", 0)]

    monkeypatch.setattr(replicas, "sample_lag", sample)
    sampler = replicas.LagSampler(None, [replicas.Standby("r1", None)], every_s=0.01).start()
    for _ in range(500):
        if len(calls) >= 2:
            break
        threading.Event().wait(0.01)
    samples = sampler.stop()
    assert samples[0].error == "RuntimeError: something nobody expected" and samples[0].behind_bytes is None
    assert any(s.behind_bytes == 0 for s in samples[1:]), "the sampler stopped after the error"
