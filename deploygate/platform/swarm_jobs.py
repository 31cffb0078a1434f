"""One-off jobs on a swarm: a ``replicated-job`` service that runs once, read back from its logs and removed."""

from __future__ import annotations

import time
from collections.abc import Sequence

import docker
import docker.errors
import docker.models.services

from deploygate.errors import StackError
from deploygate.log import Say
from deploygate.platform.base import JobResult
from deploygate.platform.docker_containers import say_lines
from deploygate.platform.swarm_services import ENDED, service_logs

Service = docker.models.services.Service
# A job not running this long after its creation is stuck (no node can run it, its image is missing...).
_JOB_START_TIMEOUT_S = 120
_JOB_LOGS_DEADLINE_S = 60.0


def run_to_end(manager: docker.DockerClient, service: Service, argv: Sequence[str], image: str, say: Say | None = None) -> JobResult:
    """The result of the job ``service`` (``argv`` in ``image``), its output said to ``say`` once it ended; the service
    and its task's container are removed even when that fails. Raises ``StackError`` when it could not start."""
    command = " ".join(argv)
    try:
        task = _wait_ended(service, command)
        # Bounded like every read of service logs (the job ran on the manager's node: it has them all).
        output = service_logs(manager.api, service.id, timestamps=False, deadline_s=_JOB_LOGS_DEADLINE_S).decode(errors="replace")
        say_lines(output.splitlines(), say)
        status = task["Status"]
        if status["State"] == "rejected":
            raise StackError(f"the job `{command}` in {image} could not start: {status.get('Err', '')}")
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        return JobResult(exit_code=0 if status["State"] == "complete" else (code if code is not None else 1), output=output)
    except docker.errors.APIError as exc:
        raise StackError(f"the job `{command}` in {image} failed: {exc.explanation or exc}") from None
    finally:
        _remove(manager, service)


def _remove(manager: docker.DockerClient, service: Service) -> None:
    """Remove the job's service and its task's container (with its anonymous volumes, e.g. Postgres' VOLUME).

    Swarm leaves the container of a completed job's task behind, attached to the overlay.
    """
    try:
        containers = [(t.get("Status") or {}).get("ContainerStatus", {}).get("ContainerID") for t in service.tasks()]
        service.remove()
    except docker.errors.APIError:
        return
    for container_id in filter(None, containers):
        try:
            # Jobs run on the manager's node: its engine is the one that holds the container.
            manager.containers.get(container_id).remove(force=True, v=True)
        except docker.errors.APIError:
            pass


def _wait_ended(service: Service, command: str) -> dict:
    """The job's task once it ended; raises ``StackError`` when it never starts."""
    created = time.monotonic()
    while True:
        tasks = service.tasks()
        ended = [t for t in tasks if t["Status"]["State"] in ENDED]
        if ended:
            return ended[0]
        started = [t for t in tasks if t["Status"]["State"] == "running"]
        if not started and time.monotonic() - created > _JOB_START_TIMEOUT_S:
            last = tasks[0]["Status"] if tasks else {"State": "not scheduled"}
            detail = f"{last['State']} {last.get('Err', '')}".strip()
            raise StackError(f"the job `{command}` did not start within {_JOB_START_TIMEOUT_S}s: {detail}")
        time.sleep(0.3)
