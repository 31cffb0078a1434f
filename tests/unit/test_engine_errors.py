"""Without an engine the user gets one sentence and exit status 2, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_unreachable_remote_engine_is_one_line() -> None:
    env = dict(os.environ, DOCKER_HOST="tcp://127.0.0.1:9")  # discard port: nothing answers
    done = subprocess.run([sys.executable, "-m", "deploygate", "engine"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "deploygate: the Docker engine at DOCKER_HOST=tcp://127.0.0.1:9 does not answer"
    assert "Traceback" not in done.stdout + done.stderr


def test_bad_setting_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deploygate", "--set", "proxy_port=eighty", "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "deploygate: proxy_port from command line: expected an integer, got 'eighty'"
