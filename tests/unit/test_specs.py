"""What production runs, as data: the exact fields of each spec for given settings, and their translations."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploygate import config
from deploygate.errors import ConfigError
from deploygate.platform.base import INSTANCE
from deploygate.platform.docker_containers import create_kwargs
from deploygate.platform.images import Image
from deploygate.platform.specs import (
    Mount,
    Port,
    database_spec,
    for_instance,
    job_spec,
    process_spec,
    proxy_spec,
    standby_spec,
    web_spec,
)
from deploygate.platform.swarm_services import NODE_HOSTNAME, service_kwargs

IMAGE = Image(tag="shop:1.4", id="sha256:abc", built=False)


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    loaded = config.load(root=tmp_path, environ={})
    return loaded.replace(
        project="shop",
        app_port=8000,
        health_path="/health/",
        db_user="shop",
        db_name="shopdb",
        app_networks=("team_net",),
        app_extra_hosts={"redis.internal": "10.0.0.5"},
        proxy_bind="127.0.0.1",
        proxy_port=8081,
    )


def test_a_web_server_joins_the_teams_networks_with_its_host_entries_and_the_database_pin(settings) -> None:
    spec = web_spec(settings, "green", IMAGE, {"A": "1"}, pin={"shop_db": "172.18.0.4"})
    assert (spec.role, spec.name, spec.image, spec.command) == ("web", "shop_web_green", "shop:1.4", None)
    assert spec.environment == {"A": "1"}
    assert spec.networks == ("shop_net", "team_net")
    assert spec.extra_hosts == {"redis.internal": "10.0.0.5", "shop_db": "172.18.0.4"}
    assert spec.labels == {
        "deploygate.project": "shop",
        "deploygate.role": "web",
        "deploygate.color": "green",
        "deploygate.release": "1.4",
        "deploygate.image_digest": "sha256:abc",
    }
    assert spec.ports == (Port(8000),) and spec.mounts == ()
    assert (spec.service, spec.replicas, spec.per_node, spec.pinned_node, spec.healthcheck) == (True, 1, False, False, True)
    assert (spec.readiness.http_path, spec.readiness.port) == ("/health/", 8000)


def test_a_swarm_color_has_its_replicas_and_no_pin(settings) -> None:
    spec = web_spec(settings, "blue", IMAGE, {}, replicas=3)
    assert spec.replicas == 3
    assert spec.extra_hosts == {"redis.internal": "10.0.0.5"}


def test_a_host_entry_for_the_pinned_database_is_refused(settings) -> None:
    with pytest.raises(ConfigError, match="shop_db is the database deploygate runs"):
        web_spec(settings.replace(app_extra_hosts={"shop_db": "10.0.0.9"}), "green", IMAGE, {}, pin={"shop_db": "172.18.0.4"})


def test_a_process_runs_its_command_beside_the_web_server(settings) -> None:
    spec = process_spec(settings, "blue", IMAGE, {"A": "1"}, "worker", "python manage.py 'process queue'")
    assert (spec.role, spec.name) == ("process", "shop_worker_blue")
    assert spec.command == ("python", "manage.py", "process queue")
    assert spec.labels["deploygate.process"] == "worker" and spec.labels["deploygate.role"] == "process"
    assert spec.networks == ("shop_net", "team_net") and spec.ports == ()


def test_a_job_against_production_is_attached_as_the_app_with_read_only_mounts_but_the_writable(settings) -> None:
    spec = job_spec(
        settings,
        "shop:1.4",
        ["python", "manage.py", "migrate"],
        {"A": "1"},
        mounts={"/srv/in": "/in", "/srv/out": "/out"},
        writable=["/srv/out"],
        pin={"shop_db": "172.18.0.4"},
    )
    assert (spec.role, spec.name, spec.command) == ("oneoff", None, ("python", "manage.py", "migrate"))
    assert spec.mounts == (Mount("/srv/in", "/in", read_only=True), Mount("/srv/out", "/out", read_only=False))
    assert spec.networks == ("shop_net", "team_net")
    assert spec.extra_hosts == {"redis.internal": "10.0.0.5", "shop_db": "172.18.0.4"}
    assert spec.labels == {"deploygate.project": "shop", "deploygate.role": "oneoff"}
    assert (spec.service, spec.pinned_node, spec.healthcheck) == (False, True, False)


def test_a_job_against_a_scratch_database_joins_its_network_alone(settings) -> None:
    spec = job_spec(settings, "pg:17", ["pg_dump"], {}, network="bridge", pin={"shop_db": "172.18.0.4"})
    assert spec.networks == ("bridge",) and spec.extra_hosts == {}


def test_the_standby_is_the_databases_image_on_a_volume_of_its_own_following_the_primary_through_its_slot(settings) -> None:
    spec = standby_spec(settings, IMAGE, "s3cret")
    assert (spec.role, spec.name, spec.image, spec.networks) == ("db-replica", "shop_db_replica", "shop:1.4", ("shop_net",))
    assert spec.environment == {
        "POSTGRES_USER": "shop",
        "POSTGRES_PASSWORD": "s3cret",
        "POSTGRES_STANDBY_OF": "shop_db",
        "POSTGRES_STANDBY_SLOT": "shop_db_replica",
        "POSTGRES_STANDBY_NAME": "shop_db_replica",
    }
    assert spec.mounts == (
        Mount(
            "shop_pgdata_replica",
            "/var/lib/postgresql/data",
            read_only=False,
            volume=True,
            volume_labels={"deploygate.project": "shop", "deploygate.role": "db-replica-data"},
        ),
    )
    assert spec.labels == {"deploygate.project": "shop", "deploygate.role": "db-replica", "deploygate.image_digest": "sha256:abc"}
    assert spec.readiness.command == ("pg_isready", "-q", "-h", "127.0.0.1", "-U", "shop", "-d", "shopdb")


def test_a_standbys_slot_name_is_what_postgres_allows() -> None:
    from deploygate.platform.naming import Names

    assert Names("My-Shop.prod").db_standby_slot == "my_shop_prod_db_replica"


def test_the_database_keeps_its_data_in_the_projects_volume_and_is_ready_when_it_accepts_connections(settings) -> None:
    spec = database_spec(settings, IMAGE, "s3cret")
    assert (spec.role, spec.name, spec.networks) == ("db", "shop_db", ("shop_net",))
    assert spec.environment == {"POSTGRES_USER": "shop", "POSTGRES_PASSWORD": "s3cret", "POSTGRES_DB": "shopdb"}
    assert spec.mounts == (
        Mount(
            "shop_pgdata",
            "/var/lib/postgresql/data",
            read_only=False,
            volume=True,
            volume_labels={"deploygate.project": "shop", "deploygate.role": "db-data"},
        ),
    )
    assert spec.ports == (Port(5432),) and spec.extra_hosts == {}
    assert spec.labels == {"deploygate.project": "shop", "deploygate.role": "db", "deploygate.image_digest": "sha256:abc"}
    assert spec.readiness.command == ("pg_isready", "-q", "-h", "127.0.0.1", "-U", "shop", "-d", "shopdb")
    assert spec.readiness.timeout_s == 90 and spec.pinned_node


def test_the_proxy_publishes_its_port_and_gets_its_directories_per_instance(settings) -> None:
    mounts = {f"/state/shop/proxy/{INSTANCE}/conf": "/etc/h", f"/state/shop/proxy/{INSTANCE}/run": "/run/h"}
    spec = proxy_spec(settings, IMAGE, ["haproxy"], mounts, [f"/state/shop/proxy/{INSTANCE}/run"], user="99:99", port_in_container=8080)
    assert (spec.role, spec.name, spec.user, spec.command, spec.per_node) == ("proxy", "shop_proxy", "99:99", ("haproxy",), True)
    assert spec.ports == (Port(8080, published=8081, host_ip="127.0.0.1"),)
    assert spec.networks == ("shop_net",) and spec.extra_hosts == {}
    single = for_instance(spec, "")
    assert [(m.source, m.read_only) for m in single.mounts] == [("/state/shop/proxy/conf", True), ("/state/shop/proxy/run", False)]
    assert [m.source for m in for_instance(spec, "node1").mounts] == ["/state/shop/proxy/node1/conf", "/state/shop/proxy/node1/run"]


def test_a_single_host_creates_the_container_the_spec_says(settings) -> None:
    job = job_spec(settings, "shop:1.4", ["true"], {}, mounts={"/srv/out": "/out"}, writable=["/srv/out"])
    assert create_kwargs(job) == {
        "image": "shop:1.4",
        "name": None,
        "network": "shop_net",
        "environment": {},
        "command": ["true"],
        "labels": {"deploygate.project": "shop", "deploygate.role": "oneoff"},
        "extra_hosts": {"redis.internal": "10.0.0.5"},
        "volumes": {"/srv/out": {"bind": "/out", "mode": "rw"}},
        "healthcheck": {"test": ["NONE"]},
    }
    proxy = create_kwargs(for_instance(proxy_spec(settings, IMAGE, ["haproxy"], {}, [], user="99:99", port_in_container=8080), ""))
    assert proxy["ports"] == {"8080/tcp": ("127.0.0.1", 8081)} and proxy["restart_policy"] == {"Name": "unless-stopped"}
    # Unpublished ports: this host reaches the container at its address on the project's network.
    assert "ports" not in create_kwargs(web_spec(settings, "blue", IMAGE, {}))


def test_a_swarm_creates_the_service_the_spec_says(settings) -> None:
    web = service_kwargs(web_spec(settings, "blue", IMAGE, {"A": "1"}, replicas=2), ["net1", "net2"], "node9")
    assert (web["image"], web["name"], web["networks"], web["env"]) == ("shop:1.4", "shop_web_blue", ["net1", "net2"], {"A": "1"})
    assert web["mode"] == {"replicated": {"Replicas": 2}} and web["hosts"] == {"redis.internal": "10.0.0.5"}
    assert web["endpoint_spec"] == {"Mode": "dnsrr", "Ports": [{"Protocol": "tcp", "TargetPort": 8000, "PublishMode": "host"}]}
    assert "constraints" not in web and web["restart_policy"]["Condition"] == "any"
    job = service_kwargs(job_spec(settings, "shop:1.4", ["true"], {}, name="shop_job_1"), ["net1"], "node9")
    assert job["mode"] == {"ReplicatedJob": {}}
    assert job["constraints"] == ["node.id==node9"] and job["restart_policy"]["Condition"] == "none"
    assert job["healthcheck"]["Test"] == ["NONE"] and job["endpoint_spec"] == {"Mode": "dnsrr"}
    proxy = service_kwargs(
        proxy_spec(
            settings, IMAGE, ["haproxy"], {f"/p/{INSTANCE}/run": "/run/h"}, [f"/p/{INSTANCE}/run"], user="99:99", port_in_container=8080
        ),
        ["net1"],
        "node9",
    )
    assert proxy["mode"] == {"global": {}} and proxy["user"] == "99:99"
    assert proxy["endpoint_spec"]["Ports"] == [{"Protocol": "tcp", "TargetPort": 8080, "PublishMode": "host", "PublishedPort": 8081}]
    assert [(m["Source"], m["ReadOnly"]) for m in proxy["mounts"]] == [(f"/p/{NODE_HOSTNAME}/run", False)]
    db = service_kwargs(database_spec(settings, IMAGE, "s3cret"), ["net1"], "node9")
    assert db["mounts"][0]["Type"] == "volume" and db["mounts"][0]["VolumeOptions"]["Labels"]["deploygate.role"] == "db-data"
    assert db["constraints"] == ["node.id==node9"]
