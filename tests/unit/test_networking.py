"""The app's networks, host entries and the database's pin, as the platforms build them (pure, no engine)."""

from __future__ import annotations

import pytest

from deploygate.errors import ConfigError
from deploygate.platform.docker_containers import recreate_spec
from deploygate.platform.networking import (
    Attachments,
    app_attachments,
    extra_hosts_of,
    hosts_file_pinned,
    missing_networks,
    missing_networks_error,
    pinned_addresses,
    stale_pin,
)


def test_the_project_network_comes_first_then_the_teams_each_once() -> None:
    attachments = app_attachments("shop_net", ["team_net", " ", "shop_net", "team_net", "cache_net"], {})
    assert attachments.networks == ("shop_net", "team_net", "cache_net")
    assert (attachments.primary, attachments.extra_networks) == ("shop_net", ("team_net", "cache_net"))
    assert attachments.extra_hosts == {}


def test_the_database_pin_joins_the_teams_host_entries() -> None:
    attachments = app_attachments("shop_net", [], {"redis.internal": "10.0.0.5", "gw": "host-gateway"}, {"shop_db": "172.18.0.2"})
    assert attachments.extra_hosts == {"redis.internal": "10.0.0.5", "gw": "host-gateway", "shop_db": "172.18.0.2"}


@pytest.mark.parametrize(
    "hosts, message",
    [
        ({"redis.internal": "redis"}, "redis.internal = 'redis' is not an IP address"),
        ({"bad name": "10.0.0.5"}, "'bad name' is not a host name"),
        ({"shop_db": "10.0.0.9"}, "shop_db is the database deploygate runs"),
    ],
)
def test_bad_host_entries_are_configuration_errors(hosts: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        app_attachments("shop_net", [], hosts, {"shop_db": "172.18.0.2"})


def test_missing_networks_are_named_exactly_in_one_line() -> None:
    # The engine's name filter matches "team_net" inside "team_net_old": only an exact name exists.
    assert missing_networks(["team_net", "cache_net"], ["team_net_old", "cache_net"]) == ["team_net"]
    error = missing_networks_error(["team_net"], "this Docker engine")
    assert str(error) == "app.networks: no network named team_net on this Docker engine; create it first, or remove it from app.networks"


def test_a_pin_is_stale_when_the_database_has_another_address() -> None:
    current = extra_hosts_of(["redis.internal:10.0.0.5", "shop_db:172.18.0.2", "v6:fd00::1"])
    assert current == {"redis.internal": "10.0.0.5", "shop_db": "172.18.0.2", "v6": "fd00::1"}
    assert stale_pin(current, {"shop_db": "172.18.0.2"}) == {}
    assert stale_pin(current, {"shop_db": "172.18.0.4"}) == {"shop_db": "172.18.0.4"}
    assert stale_pin(extra_hosts_of(None), {"shop_db": "172.18.0.4"}) == {"shop_db": "172.18.0.4"}


def test_a_running_containers_hosts_file_is_repinned_keeping_the_rest() -> None:
    text = "127.0.0.1\tlocalhost\n10.0.0.5\tredis.internal\n172.18.0.2\tshop_db\n172.18.0.7\tabc123\n"
    repinned = hosts_file_pinned(text, {"shop_db": "172.18.0.4"})
    assert repinned == "127.0.0.1\tlocalhost\n10.0.0.5\tredis.internal\n172.18.0.7\tabc123\n172.18.0.4\tshop_db\n"
    assert pinned_addresses(repinned)["shop_db"] == "172.18.0.4"
    # The resolver takes the first line naming a host; a comment names nothing.
    assert pinned_addresses("10.0.0.1 a # b\n10.0.0.2 a b\n") == {"a": "10.0.0.1", "b": "10.0.0.2"}


def test_a_stopped_container_is_created_again_from_its_own_spec() -> None:
    attrs = {
        "Image": "sha256:abc",
        "Name": "/shop_worker_blue",
        "Config": {
            "Image": "shop:1.4",
            "Cmd": ["python", "manage.py", "process_queue"],
            "Env": ["A=1", "B=x=y", "EMPTY="],
            "Labels": {"deploygate.color": "blue", "deploygate.role": "process"},
        },
        "HostConfig": {"ExtraHosts": ["shop_db:172.18.0.2"]},
    }
    today = Attachments(networks=("shop_net", "team_net"), extra_hosts={"shop_db": "172.18.0.4"})
    spec = recreate_spec(attrs, today)
    # By image id (the tag may have moved); networks and host entries are today's, not the ones it was created with.
    assert (spec.name, spec.role, spec.image) == ("shop_worker_blue", "process", "sha256:abc")
    assert spec.command == ("python", "manage.py", "process_queue")
    assert spec.environment == {"A": "1", "B": "x=y", "EMPTY": ""}
    assert spec.labels == {"deploygate.color": "blue", "deploygate.role": "process"}
    assert (spec.networks, spec.extra_hosts) == (("shop_net", "team_net"), {"shop_db": "172.18.0.4"})
    assert spec.service
