"""Which networks the app's containers join and which names they resolve without Docker's DNS.

Pure functions: the platforms (``docker_host``, ``swarm``) ask the engine what exists and
where the database is, then build their specs from these.

Two reasons for host entries:
- the team's own (``app.extra_hosts``): a service of theirs reached by a fixed address;
- the database's pin: Docker's DNS (127.0.0.11) is served by the engine, so while the
  engine restarts (``--live-restore`` keeps the containers up) a name the app looks up
  gets no answer, and an app opening a database connection then answers 5xx. With the
  database's address in the container's /etc/hosts, looked up before DNS, it does not.
  A pin can go stale (the database container got another address when it started
  again), so it is checked whenever a color is created or resumed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from deploygate.errors import ConfigError, StackError

# Docker's own stand-in for the host's address in an extra_hosts entry.
HOST_GATEWAY = "host-gateway"


@dataclass(frozen=True)
class Attachments:
    """What an app container is attached to: networks (the project's own first) and host entries."""

    networks: tuple[str, ...]
    extra_hosts: Mapping[str, str] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        """The network the container is created on (the project's own); the others are joined after."""
        return self.networks[0]

    @property
    def extra_networks(self) -> tuple[str, ...]:
        return self.networks[1:]


def _checked_hosts(extra_hosts: Mapping[str, str]) -> dict[str, str]:
    for name, address in extra_hosts.items():
        if not name.strip() or any(c.isspace() or c == ":" for c in name):
            raise ConfigError(f"app.extra_hosts: {name!r} is not a host name")
        if address != HOST_GATEWAY:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(f"app.extra_hosts: {name} = {address!r} is not an IP address (nor {HOST_GATEWAY!r})") from None
    return dict(extra_hosts)


def app_attachments(
    project_network: str, networks: Sequence[str], extra_hosts: Mapping[str, str], pin: Mapping[str, str] | None = None
) -> Attachments:
    """The app's attachments: the project's network, then ``networks`` (``app.networks``, each once);
    ``extra_hosts`` (``app.extra_hosts``) with the database's ``pin`` (name -> address) added.

    Raises ``ConfigError`` for a bad host entry, or one for the pinned database's own name
    (deploygate keeps that one up to date; a fixed one would go stale).
    """
    hosts = _checked_hosts(extra_hosts)
    clash = sorted(set(hosts) & set(pin or {}))
    if clash:
        raise ConfigError(f"app.extra_hosts: {', '.join(clash)} is the database deploygate runs; its address is pinned by deploygate")
    ordered = tuple(dict.fromkeys([project_network, *(n.strip() for n in networks if n.strip())]))
    return Attachments(networks=ordered, extra_hosts={**hosts, **(pin or {})})


def missing_networks(wanted: Iterable[str], existing: Iterable[str]) -> list[str]:
    """The wanted networks the engine does not have (names compared exactly, in the order wanted)."""
    have = set(existing)
    return [name for name in wanted if name not in have]


def missing_networks_error(missing: Sequence[str], where: str) -> StackError:
    """The one-line error for networks of ``app.networks`` that do not exist (``where``: "the engine", "the swarm")."""
    names = ", ".join(missing)
    return StackError(f"app.networks: no network named {names} on {where}; create it first, or remove it from app.networks")


def extra_hosts_of(entries: Sequence[str] | None) -> dict[str, str]:
    """A container's ``HostConfig.ExtraHosts`` (``["name:address", ...]``) as name -> address."""
    hosts = {}
    for entry in entries or ():
        # A name has no colon; an IPv6 address does: split at the first one.
        name, sep, address = entry.partition(":")
        if sep:
            hosts[name] = address
    return hosts


def stale_pin(current: Mapping[str, str], pin: Mapping[str, str]) -> dict[str, str]:
    """The entries of ``pin`` that ``current`` (a container's host entries) lacks or has with another address."""
    return {name: address for name, address in pin.items() if current.get(name) != address}


def hosts_file_pinned(text: str, pin: Mapping[str, str]) -> str:
    """An /etc/hosts ``text`` with every line naming a pinned host replaced by one line with its pinned address.

    How a running container is re-pinned in place: its hosts file is the engine's copy of
    its spec, written at start, so the spec itself cannot be updated without a new container.
    """
    kept = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and set(fields[1:]) & set(pin):
            continue
        kept.append(line)
    return "\n".join([*kept, *(f"{address}\t{name}" for name, address in pin.items())]) + "\n"


def pinned_addresses(text: str) -> dict[str, str]:
    """Name -> address of an /etc/hosts ``text`` as the resolver reads it (the first line naming a host wins)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            found.setdefault(name, fields[0])
    return found
