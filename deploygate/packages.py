"""Installing a host tool from Debian's packages when the project needs one and the machine lacks it."""

from __future__ import annotations

import os
import shutil
import subprocess


def can_apt_install() -> bool:
    """Whether this process may install Debian packages (root, with apt-get)."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(package: str) -> str | None:
    """``apt-get update`` then ``apt-get install -y package``; None on success, else the failing step in one line."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"`{' '.join(argv)}` failed: {tail[0]}"
    return None
