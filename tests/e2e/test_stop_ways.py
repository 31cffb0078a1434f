"""Every way a deploy is stopped rolls it back: each sender's exact signals, with its timing, to the processes it signals.

The deploy runs as a user or a CI job runs it, `nox -s deploy`, and is stopped in its
monitoring window (v2-safe serves on green, the migration applied):
- a terminal's Ctrl-C: SIGINT to the process group;
- a closed terminal or dropped ssh session: SIGHUP to the process group;
- a cancelled GitHub Actions job: SIGINT to the step's entry process (the README's recipe
  `exec`s nox in it), SIGTERM 7.5 s later, the whole process tree SIGKILLed 2.5 s after that;
- `docker stop` of the container running the deploy (GitLab's and a Kubernetes pod's
  deletion send the same, with more time): SIGTERM to the container's PID 1 (nox), SIGKILL
  10 s later, which takes everything in the container's PID namespace with it.
Each asserts: users are on the previous release (blue, v1) before the sender's last signal,
no request failed, the next command says what is unfinished and converges, and afterwards
the schema is v1's with every row written during the deploy kept. Each prints its row of the
figures table (way, exit code, seconds to blue, failed requests, what status said).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploygate.platform.scratch import COPIES_DIR
from deploygate.signal_relay import children
from tests.e2e.conftest import ROOT

NOX = Path(sys.executable).with_name("nox")
GITHUB_TERM_AFTER_S, GITHUB_KILL_AFTER_S = 7.5, 2.5
DOCKER_STOP_GRACE_S = 10.0


@dataclass
class NoxRun:
    """A nox session started the way a sender starts it, its output read as it comes."""

    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, marker: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not any(marker in line for line in self.lines):
            assert self.process.poll() is None, f"ended before {marker!r}:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"{marker!r} never appeared:\n{self.output[-3000:]}"
            time.sleep(0.05)

    def wait(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


def nox_argv(session: str, overrides: dict[str, str], *args: str) -> list[str]:
    sets = [item for name, value in overrides.items() for item in ("--set", f"{name}={value}")]
    return [str(NOX), "-f", str(ROOT / "noxfile.py"), "-s", session, "--", *args, *sets]


def start(argv: list[str]) -> NoxRun:
    """In a session of its own: its process group is the terminal's foreground group, or a CI step's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYGATE_")}
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return NoxRun(process)


def tree(pid: int) -> list[int]:
    """``pid`` and every process under it, as a runner's kill of the process tree finds them."""
    found = [pid]
    for child in children(pid):
        found += tree(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def sleep_while_alive(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)


def nox(session: str, overrides: dict[str, str], *args: str) -> tuple[int, str]:
    done = subprocess.run(nox_argv(session, overrides, *args), cwd=ROOT, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout + done.stderr


def stop_and_converge(way: str, run: NoxRun, send: Callable[[NoxRun], float | None], overrides, traffic, assert_back_on_v1) -> None:
    """Send the sender's signals once the monitoring window opens; then the next commands, and the checks.

    ``send`` returns when the sender's kill landed (None: it did not kill: it waits, or the rollback ended first).
    """
    run.wait_for("== monitor")
    signalled_at = time.time()
    killed_at = send(run)
    code = run.wait(timeout=900)
    ended = time.time() - signalled_at
    status_code, status_output = nox("status", overrides)
    said = next((line for line in status_output.splitlines() if "is unfinished" in line), "")
    # nox reports a session whose command failed: status exits 3 while a deploy is open.
    assert (status_code != 0) == bool(said), status_output[-2000:]
    # What a CI job's cleanup step runs (`if: cancelled()`, `after_script`): converges only an open deploy.
    converged_code, converged = nox("rollback", overrides, "--if-unfinished")
    assert converged_code == 0, converged[-3000:]
    assert ("is unfinished" in converged) if said else ("nothing to converge" in converged), converged[-3000:]
    responses = traffic.stop()
    failed = [r for r in responses if r.failed]
    on_blue = [r.ts for r in responses if r.ts >= signalled_at and r.color == "blue"]
    assert on_blue, f"{way}: no answer from blue after the signal\n{run.output[-3000:]}"
    to_blue = min(on_blue) - signalled_at
    print(
        f"\n{way}: exit {code}; blue (v1) answered {to_blue:.2f}s after the first signal "
        f"(process ended {ended:.1f}s after it, {f'killed at {killed_at - signalled_at:.1f}s' if killed_at else 'not killed'}); "
        f"failed requests {len(failed)}; rows written {sum(1 for r in responses if r.created_id)}; "
        f"status afterwards: {said or 'no unfinished deploy'}"
    )
    if killed_at is not None:
        assert min(on_blue) < killed_at, f"{way}: users were still on green when the kill landed"
    assert not failed, f"{way}: {len(failed)} requests failed: {failed[:3]}"
    assert_back_on_v1([r.created_id for r in responses if r.created_id])


def test_ctrl_c_in_a_terminal_rolls_back(e2e_overrides, traffic, assert_back_on_v1) -> None:
    def ctrl_c(run: NoxRun) -> None:
        os.killpg(run.process.pid, signal.SIGINT)
        return None

    run = start(nox_argv("deploy", e2e_overrides, "--candidate", "v2-safe"))
    stop_and_converge("Ctrl-C (SIGINT to the group)", run, ctrl_c, e2e_overrides, traffic, assert_back_on_v1)
    assert "SIGINT received: aborting" in run.output and "rollback_record ok" in run.output, run.output[-3000:]


def test_a_closed_terminal_rolls_back(e2e_overrides, traffic, assert_back_on_v1) -> None:
    def hang_up(run: NoxRun) -> None:
        os.killpg(run.process.pid, signal.SIGHUP)
        return None

    run = start(nox_argv("deploy", e2e_overrides, "--candidate", "v2-safe"))
    stop_and_converge("closed terminal (SIGHUP to the group)", run, hang_up, e2e_overrides, traffic, assert_back_on_v1)


def test_a_cancelled_github_job_rolls_back_or_leaves_what_the_next_step_converges(e2e_overrides, traffic, assert_back_on_v1) -> None:
    def cancel(run: NoxRun) -> float:
        entry = run.process.pid  # the `run:` step's shell, which exec'd nox as the README's recipe does
        os.kill(entry, signal.SIGINT)
        sleep_while_alive(entry, GITHUB_TERM_AFTER_S)
        if alive(entry):
            os.kill(entry, signal.SIGTERM)
        sleep_while_alive(entry, GITHUB_KILL_AFTER_S)
        if not alive(entry):
            return None  # the rollback finished before the runner's kill
        killed = time.time()
        for pid in tree(entry):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return killed

    recipe = shlex.join(nox_argv("deploy", e2e_overrides, "--candidate", "v2-safe"))
    run = start(["bash", "-e", "-c", f"exec {recipe}"])
    stop_and_converge("GitHub cancel (SIGINT, SIGTERM +7.5s, tree SIGKILL +2.5s)", run, cancel, e2e_overrides, traffic, assert_back_on_v1)


def test_docker_stop_of_the_deploy_container_rolls_back_or_leaves_what_the_next_command_converges(
    e2e_overrides, traffic, assert_back_on_v1
) -> None:
    def docker_stop(run: NoxRun) -> float:
        pid1 = children(run.process.pid)[0]  # nox, PID 1 of the "container"'s PID namespace
        os.kill(pid1, signal.SIGTERM)
        sleep_while_alive(pid1, DOCKER_STOP_GRACE_S)
        if not alive(pid1):
            return None  # the rollback finished within the grace
        killed = time.time()
        os.kill(pid1, signal.SIGKILL)  # the kernel then kills every process of the namespace
        return killed

    # A PID namespace of its own, with nox as its PID 1: what `docker run image nox -s deploy` gives.
    run = start(["unshare", "--pid", "--fork", "--mount-proc", *nox_argv("deploy", e2e_overrides, "--candidate", "v2-safe")])
    stop_and_converge("docker stop (SIGTERM to PID 1, SIGKILL +10s)", run, docker_stop, e2e_overrides, traffic, assert_back_on_v1)


def _backup_files(backups: Path) -> dict[str, tuple[int, float]]:
    """Every file of the kept backups (a copy's own writes, in .copies, left out) with its size and mtime."""
    if not backups.exists():
        return {}
    return {
        str(p.relative_to(backups)): (p.stat().st_size, p.stat().st_mtime)
        for p in backups.rglob("*")
        if p.is_file() and not p.relative_to(backups).parts[0].startswith(".")
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["ctrl_c", "closed_terminal"])
@pytest.mark.parametrize(
    "stage", ["base backup of the server", "ready in"], ids=["during_pg_basebackup", "during_the_rehearsal_on_its_copy"]
)
def test_a_stopped_predeploy_leaves_no_backup_half_written_and_no_copy(e2e_stack, e2e_overrides, platform, stage: str, signum) -> None:
    """A terminal's Ctrl-C or hang-up (to the process group) while pg_basebackup writes, or while the rehearsal
    runs on its copy: the gate stops, and neither a partial backup, a job, a copy's container, volume or
    directory, nor a changed backup is left."""
    overrides = {**e2e_overrides, "backup_method": "physical"}
    backups = Path(overrides["backup_dir"])
    kept = _backup_files(backups)
    footprint = platform.footprint()
    run = start(nox_argv("predeploy", overrides, "--candidate", "v2-safe"))
    run.wait_for(stage, timeout=300)
    os.killpg(run.process.pid, signum)
    code = run.wait(timeout=300)
    assert code != 0, run.output[-3000:]
    assert not list(backups.glob("*.partial")), f"a backup was left half-written: {list(backups.glob('*.partial'))}"
    copies = backups / COPIES_DIR
    assert not copies.exists() or not any(copies.iterdir()), f"a copy's directory was left: {list(copies.iterdir())}"
    now = _backup_files(backups)
    assert {name: now[name] for name in kept if name in now} == {name: kept[name] for name in kept if name in now}, "a kept backup changed"
    left = platform.footprint() - footprint
    assert not left, f"left behind: {left}"
    print(f"\n{signal.Signals(signum).name} to the group at {stage!r}: exit {code}, nothing left behind")
