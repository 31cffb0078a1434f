"""The Swarm platform's pure pieces: endpoint specs, task payloads as the engine gives them, timestamps."""

from __future__ import annotations

from deploygate.platform.specs import Port
from deploygate.platform.swarm_services import dnsrr, published_port, when


def test_a_web_service_is_dns_round_robin_with_a_host_port_the_engine_picks() -> None:
    spec = dnsrr([Port(8000)])
    # No virtual IP (this kernel has no IPVS) and no fixed published port (two tasks on a node would collide).
    assert spec == {"Mode": "dnsrr", "Ports": [{"Protocol": "tcp", "TargetPort": 8000, "PublishMode": "host"}]}


def test_the_published_port_is_read_from_the_task_status() -> None:
    task = {
        "Status": {
            "State": "running",
            "PortStatus": {"Ports": [{"Protocol": "tcp", "TargetPort": 8000, "PublishedPort": 32771, "PublishMode": "host"}]},
        }
    }
    assert published_port(task) == 32771
    assert published_port({"Status": {"State": "starting", "PortStatus": {}}}) is None
    assert published_port({"Status": {"State": "pending"}}) is None


def test_engine_timestamps_order_by_time_whatever_their_digits() -> None:
    # Nanoseconds, microseconds, none: compared as text these would misorder.
    assert when("2026-12-02T14:02:10.5Z") > when("2026-12-02T14:02:10.036224245Z") > when("2026-12-02T14:02:10Z")
    assert when("") < when("1970-01-01T00:00:01Z")
