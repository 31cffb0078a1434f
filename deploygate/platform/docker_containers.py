"""A ``ContainerSpec`` as a container of one Docker engine: the translation (pure) and the one runner.

``create_kwargs`` is the spec in the docker SDK's words; ``create`` makes the container
(joined to every network before it starts); ``run_to_end`` runs a one-off job and gives
its output. Plus what the single host reads back from a container: state, health,
address, its last log lines, and the spec that would create it again.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Mapping
from typing import Any

import docker
import docker.errors
import docker.models.containers

from deploygate.errors import ConfigError, StackError
from deploygate.log import Say
from deploygate.platform.base import JobResult, Replica
from deploygate.platform.naming import PROJECT_LABEL, RELEASE_LABEL, ROLE_LABEL
from deploygate.platform.networking import Attachments, extra_hosts_of, hosts_file_pinned, pinned_addresses, stale_pin
from deploygate.platform.specs import ContainerSpec, Mount
from deploygate.signal_relay import signals_held
from deploygate.waiting import wait_until

Container = docker.models.containers.Container
_LOG_LINES = 3


def api_error(what: str, exc: docker.errors.APIError) -> StackError:
    return StackError(f"{what}: {exc.explanation or exc}")


def log_tail(container: Container, lines: int = _LOG_LINES) -> str:
    """The container's last log lines on one line (``no logs`` when it has none or cannot be asked)."""
    try:
        text = container.logs(tail=lines).decode(errors="replace").strip()
    except docker.errors.APIError:
        return "no logs"
    return " | ".join(text.splitlines()) or "no logs"


def timestamped_output(container: Container, since: float, until: float | None = None) -> str:
    """The container's output (stdout and stderr) from ``since`` (to ``until``), each line after its RFC 3339 time."""
    window = {"since": since} | ({"until": until} if until is not None else {})
    try:
        return container.logs(stdout=True, stderr=True, timestamps=True, **window).decode(errors="replace")
    except docker.errors.APIError as exc:
        raise api_error(f"could not read the output of {container.name}", exc) from None


def address(container: Container, network: str) -> str:
    return ((container.attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network, {}).get("IPAddress") or ""


def health(container: Container) -> str:
    """Docker's HEALTHCHECK verdict, or "none" when the image declares no healthcheck."""
    found = (container.attrs.get("State") or {}).get("Health")
    return found.get("Status", "unknown") if found else "none"


def status(container: Container) -> str:
    return (container.attrs.get("State") or {}).get("Status", "unknown")


def replica(container: Container, network: str) -> Replica:
    return Replica(name=container.name, state=status(container), health=health(container), address=address(container, network))


def fail_if_dead(container: Container) -> None:
    """Raise ``StackError`` (with its last log lines) when the container's process died.

    Not transient: a process that died will not become healthy (its restart policy only
    makes it crash again), so a wait fails now, not at its deadline.
    """
    try:
        container.reload()
    except docker.errors.NotFound:
        raise StackError(f"{container.name} was removed while deploygate waited for it") from None
    state, restarts = status(container), container.attrs.get("RestartCount", 0)
    if state in ("exited", "dead"):
        code = (container.attrs.get("State") or {}).get("ExitCode")
        raise StackError(f"{container.name} exited (code {code}): {log_tail(container)}")
    if state == "restarting" or restarts > 0:
        raise StackError(f"{container.name} exited and keeps being restarted ({restarts} so far): {log_tail(container)}")


def create_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """The keyword arguments of ``containers.create`` for ``spec`` (on its first network; the others are joined after).

    A port without ``published`` is not published: this host reaches the container at its address.
    """
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": spec.name,
        "network": spec.networks[0] if spec.networks else None,
        "environment": dict(spec.environment),
        "labels": dict(spec.labels),
    }
    if spec.command is not None:
        kwargs["command"] = list(spec.command)
    if spec.extra_hosts:
        kwargs["extra_hosts"] = dict(spec.extra_hosts)
    if spec.mounts:
        kwargs["volumes"] = {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts}
    ports = {f"{p.inside}/tcp": (p.host_ip, p.published) for p in spec.ports if p.published is not None}
    if ports:
        kwargs["ports"] = ports
    if spec.user:
        kwargs["user"] = spec.user
    if spec.service:
        kwargs["restart_policy"] = {"Name": "unless-stopped"}
    if not spec.healthcheck:
        kwargs["healthcheck"] = {"test": ["NONE"]}
    return kwargs


def create(client: docker.DockerClient, spec: ContainerSpec, *, start: bool = True, what: str = "") -> Container:
    """The container of ``spec``, joined to all its networks, started unless ``start`` is false.

    Created, joined to the other networks, then started: this engine's API (1.41) takes
    one network at creation, and a process that started before joining could not reach
    what it needs at its start. Raises ``StackError`` (and leaves nothing) when the engine refuses.
    """
    what = what or spec.name or spec.image
    container = None
    try:
        with signals_held():  # a Ctrl-C mid-request would leave a container whose id never came back
            container = client.containers.create(**create_kwargs(spec))
        for network in spec.networks[1:]:
            client.networks.get(network).connect(container)
        if start:
            container.start()
    except BaseException as exc:
        if container is not None:
            _remove_quietly(client, container.id)
        if isinstance(exc, docker.errors.APIError):
            raise api_error(f"could not start {what}", exc) from None
        raise
    return container


def _remove_quietly(client: docker.DockerClient, name_or_id: str | None) -> None:
    """Remove a container that failed half-way to start, if there is one; cleanup never hides the first error."""
    if not name_or_id:
        return
    try:
        client.containers.get(name_or_id).remove(force=True, v=True)
    except docker.errors.DockerException:
        pass


def whole_lines(pending: str, text: str) -> tuple[list[str], str]:
    """The complete lines of ``pending + text`` and what is left of an unfinished last line.

    A log chunk may end mid-line (a long JSON result arrives in pieces): saying only whole
    lines lets a caller that filters lines (the probe's result marker) see each one whole.
    """
    *lines, rest = (pending + text).split("\n")
    return lines, rest


def say_lines(lines: list[str], say: Say | None) -> None:
    """Every non-blank line of a job's output to ``say``, indented."""
    for line in lines if say else ():
        if line.strip():
            say(f"  | {line}")


def run_to_end(client: docker.DockerClient, spec: ContainerSpec, say: Say | None = None) -> JobResult:
    """Run the one-off ``spec`` and remove it; lines it prints go to ``say`` as they come (progress of long work).

    Removed even when streaming fails. Raises ``StackError`` when the engine refuses.
    """
    argv = " ".join(spec.command or ())
    container = None
    try:
        container = create(client, spec, what=f"`{argv}` in {spec.image}")
        chunks, pending = [], ""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for raw in container.logs(stream=True, follow=True):
            text = decoder.decode(raw)
            chunks.append(text)
            if say:
                lines, pending = whole_lines(pending, text)
                say_lines(lines, say)
        say_lines([pending], say)
        exit_code = container.wait().get("StatusCode", 1)
        return JobResult(exit_code=exit_code, output="".join(chunks))
    except docker.errors.APIError as exc:
        raise api_error(f"the job `{argv}` in {spec.image} failed", exc) from None
    finally:
        # By name when a signal came between its creation and this frame learning of it.
        # v=True: an image with a VOLUME (Postgres, for pg_dump) leaves an anonymous volume per run otherwise.
        _remove_quietly(client, container.id if container is not None else spec.name)


def pinned_as(container: Container, pin: Mapping[str, str]) -> bool:
    """Whether ``container`` resolves the names of ``pin`` to its addresses, after rewriting its hosts file if it
    runs and can be; False: it must be created again (its spec is what the engine writes into that file at start).

    A running one may serve: it is rewritten in place rather than replaced.
    """
    created_with = extra_hosts_of((container.attrs.get("HostConfig") or {}).get("ExtraHosts"))
    if container.status != "running":
        return not stale_pin(created_with, pin)
    code, output = container.exec_run(["cat", "/etc/hosts"])
    text = output.decode(errors="replace")
    if code != 0:
        # No cat in the image: nothing rewrote its hosts file, which is then what it was created with.
        return not stale_pin(created_with, pin)
    if not stale_pin(pinned_addresses(text), pin):
        return True
    hosts = hosts_file_pinned(text, pin)
    # As root whatever the image's user; `>` keeps the file the engine bind-mounts (a rename would not).
    code, _ = container.exec_run(["sh", "-c", 'printf "%s" "$HOSTS" > /etc/hosts'], user="0", environment={"HOSTS": hosts})
    # A stale pin that cannot be rewritten: the container cannot reach its database, replacing it costs less.
    return code == 0


def recreate_spec(attrs: Mapping[str, Any], attachments: Attachments) -> ContainerSpec:
    """The spec that creates an app's container again from its inspect ``attrs`` (by image id: the tag may
    have moved since), with ``attachments``: today's networks and host entries, which is the point."""
    config = attrs.get("Config") or {}
    labels = dict(config.get("Labels") or {})
    command = config.get("Cmd")
    return ContainerSpec(
        role=labels.get(ROLE_LABEL, ""),
        name=(attrs.get("Name") or "").lstrip("/") or None,
        image=attrs["Image"],
        command=tuple(command) if command is not None else None,
        environment=dict(entry.partition("=")[::2] for entry in config.get("Env") or []),
        networks=attachments.networks,
        extra_hosts=dict(attachments.extra_hosts),
        labels=labels,
    )


def remove_labelled(client: docker.DockerClient, project: str, *, volumes: bool = False) -> list[str]:
    """Remove every container and network (and volume if asked) labelled with ``project``."""
    selector = {"label": f"{PROJECT_LABEL}={project}"}
    removed = []
    for container in client.containers.list(all=True, filters=selector):
        container.remove(force=True, v=True)  # anonymous volumes only; named ones go with `volumes`
        removed.append(f"container {container.name}")
    for network in client.networks.list(filters=selector):
        network.remove()
        removed.append(f"network {network.name}")
    if volumes:
        for volume in client.volumes.list(filters=selector):
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
    return removed


def inventory(client: docker.DockerClient, project: str) -> dict[str, str]:
    """Every long-running container of ``project`` (not one-off jobs): name -> health or state, and its release."""
    found = {}
    for container in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"}):
        if container.labels.get(ROLE_LABEL) == "oneoff":
            continue
        # A stopped container keeps its last health ("unhealthy" once its checks stopped answering): its state says more.
        state = health(container) if container.status == "running" else "none"
        state = (container.attrs.get("State") or {}).get("Status", "unknown") if state == "none" else state
        release = container.labels.get(RELEASE_LABEL)
        found[container.name] = state + (f" (release {release})" if release else "")
    return found


def labelled_objects(client: docker.DockerClient, project: str) -> set[str]:
    """The project's containers (with their state), networks and volumes, and the engine's unnamed volumes nobody uses."""
    selector = {"label": f"{PROJECT_LABEL}={project}"}
    found = {f"container {c.name} ({c.status})" for c in client.containers.list(all=True, filters=selector)}
    found |= {f"network {n.name}" for n in client.networks.list(filters=selector)}
    found |= {f"volume {v.name}" for v in client.volumes.list(filters=selector)}
    # Unnamed volumes nobody uses: a one-off removed without its volume leaves one each (engine-wide).
    return found | {f"dangling volume {v.name}" for v in client.volumes.list(filters={"dangling": True})}


def check_volume_options(volume: Any, mount: Mount) -> None:
    """Raises ``ConfigError`` when an existing volume keeps its data elsewhere than the configuration says
    (database.data_dir set or changed after the first start): the server would silently run on the old data."""
    has = dict(volume.attrs.get("Options") or {})
    if has.get("device", "") != mount.volume_options.get("device", ""):
        where = has.get("device") or "Docker's own storage"
        wanted = mount.volume_options.get("device") or "Docker's own storage (database.data_dir is empty)"
        raise ConfigError(
            f"volume {mount.source} keeps production's data in {where}, the configuration asks for {wanted}: "
            "move the data and remove the volume, or set database.data_dir back"
        )


def ensure_service(client: docker.DockerClient, spec: ContainerSpec) -> list[str]:
    """The service of ``spec`` (its volumes, its container: a Postgres, the cache) created or started, then waited for
    until its readiness command succeeds;
    returns what changed. Raises ``StackError`` when it exits, ``WaitTimeout`` when it never answers."""
    changes: list[str] = []
    for mount in (m for m in spec.mounts if m.volume):
        try:
            existing = client.volumes.get(mount.source)
        except docker.errors.NotFound:
            if mount.volume_options.get("device"):
                os.makedirs(mount.volume_options["device"], mode=0o700, exist_ok=True)
            client.volumes.create(mount.source, driver="local", driver_opts=dict(mount.volume_options), labels=dict(mount.volume_labels))
            changes.append(f"created volume {mount.source}" + (f" on {mount.volume_options['device']}" if mount.volume_options else ""))
        else:
            check_volume_options(existing, mount)
    try:
        container = client.containers.get(spec.name)
    except docker.errors.NotFound:
        container = create(client, spec)
        changes.append(f"created {spec.name}")
    else:
        if container.status != "running":
            container.start()
            changes.append(f"started {container.name}")
    readiness = spec.readiness

    def ready() -> bool:
        container.reload()
        if container.status in ("exited", "dead"):
            raise StackError(f"{spec.name} exited: {log_tail(container)}")
        return container.exec_run(list(readiness.command))[0] == 0

    what = f"{spec.name} to accept connections"
    wait_until(ready, timeout=readiness.timeout_s, interval=0.5, what=what, last_seen=lambda: log_tail(container))
    return changes
