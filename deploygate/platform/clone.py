"""Block-level copy-on-write clones of a directory: reflinks (XFS made with reflink=1, btrfs, bcachefs).

A clone shares every block with its source until a block is written, so a rehearsal copy costs only the
blocks it writes. An overlay cannot do that: it copies a whole file up (a table segment, up to 1 GB)
the first time the server opens it read-write, and Postgres opens every segment it reads read-write.

Cloning is coreutils' ``cp --reflink=always``: it clones file by file with the kernel's FICLONE and keeps
owners, modes and holes; nothing in the standard library or on PyPI does that better.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from deploygate.errors import StackError
from deploygate.packages import apt_install, can_apt_install


class CloneError(StackError):
    """A directory could not be cloned (the filesystem refused, or ran out of room)."""


def clones_in(directory: str | os.PathLike) -> bool:
    """Whether files in ``directory`` can be cloned (a reflink of a probe file succeeds there)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".clone-probe-") as probe:
        source = Path(probe, "source")
        source.write_bytes(b"deploygate")
        done = subprocess.run(["cp", "--reflink=always", str(source), str(Path(probe, "clone"))], capture_output=True, check=False)
        return done.returncode == 0


def clone_tree(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """``target`` (which must not exist) made a clone of the directory ``source``; nothing left on failure."""
    done = subprocess.run(["cp", "-a", "--reflink=always", str(source), str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        lines = done.stderr.strip().splitlines()
        raise CloneError(f"{source} could not be cloned: {lines[-1] if lines else 'cp failed'}")


def empty_directory(directory: str | os.PathLike) -> bool:
    """Delete everything inside ``directory`` (kept itself, with its owner and mode); whether anything was there."""
    entries = list(os.scandir(directory))
    for entry in entries:
        shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)
    return bool(entries)


def make_clone_filesystem(image: Path, mount_dir: Path, size_gb: int) -> None:
    """An XFS with reflinks in the sparse file ``image``, loop-mounted on ``mount_dir`` (root only).

    For machines whose disks cannot clone (ext4): the benchmark and the tests put ``backup.dir`` on it.
    The image file takes only the room its filesystem uses.
    """
    if shutil.which("mkfs.xfs") is None:
        failure = apt_install("xfsprogs") if can_apt_install() else "mkfs.xfs is missing (Debian: apt-get install xfsprogs)"
        if failure:
            raise CloneError(failure)
    mount_dir.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as sparse:
        sparse.truncate(size_gb * 1024**3)
    for argv in (["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(image)], ["mount", "-o", "loop", str(image), str(mount_dir)]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise CloneError(f"{' '.join(argv[:1])} failed: {done.stderr.strip() or done.returncode}")


def remove_clone_filesystem(image: Path, mount_dir: Path) -> None:
    """Unmount ``mount_dir`` (freeing its loop device) and delete ``image``."""
    subprocess.run(["umount", str(mount_dir)], capture_output=True, check=False)
    image.unlink(missing_ok=True)
