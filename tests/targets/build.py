"""Images of the second target, the shop (tests/targets/shop), built offline with deploygate's own helpers.

Release 1 is ``shop/app``; release N is release 1 with ``shop/releases/2.patch`` ...
``N.patch`` applied in order, the way a team's later commits change the tree. The image is
the shop's ordinary Dockerfile on Debian trixie's Python 3.13, with a host-built wheelhouse
(pip inside the build cannot reach PyPI here), tagged ``dgshop:<N>`` like an app's CI would.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import docker

from deploygate.config import Settings
from deploygate.errors import ConfigError, ImageBuildError
from deploygate.log import Say
from deploygate.platform import images

SHOP_DIR = Path(__file__).parent / "shop"
SHOP_REPO = "dgshop"
# Django 6 needs Python 3.12 or newer: trixie's python3 is 3.13.
SHOP_SUITE = "trixie"


def shop_releases() -> list[int]:
    """The releases the shop has: 1 and one more per ``releases/<N>.patch``, in order."""
    return [1, *sorted(int(patch.stem) for patch in (SHOP_DIR / "releases").glob("*.patch"))]


def shop_source(release: int) -> images.BuildContext:
    """The files of ``app/`` as ``release`` has them, named ``app/...`` as the Dockerfile copies them.

    Raises ``ConfigError`` for a release the shop does not have and ``ImageBuildError`` when a
    patch no longer applies (release 1 changed under it).
    """
    if release not in shop_releases():
        raise ConfigError(f"the shop has no release {release}; it has {shop_releases()}")
    with tempfile.TemporaryDirectory(prefix="dgshop-src-") as tmp:
        tree = Path(tmp)
        for name, data in images.BuildContext.empty().add_tree(SHOP_DIR / "app").files.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(data)
        for number in range(2, release + 1):
            _apply(SHOP_DIR / "releases" / f"{number}.patch", tree)
        return images.BuildContext.empty().add_tree(tree, "app/")


def _apply(patch: Path, tree: Path) -> None:
    # git apply rather than a hand-written patcher. The ceiling stops git from finding a
    # checkout around the temporary directory and applying the patch relative to that.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.parent)}
    done = subprocess.run(["git", "apply", str(patch)], cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise ImageBuildError(f"{patch.relative_to(SHOP_DIR)} does not apply: {tail[0]}")


def build_shop(client: docker.DockerClient, settings: Settings, release: int, say: Say = print) -> images.Image:
    """The shop's image of ``release``, tagged ``dgshop:<release>`` (and ``dgshop:<release>-<content hash>``).

    ``settings`` gives the Debian mirror, the image source and the wheel cache; the suite is
    always trixie. Nothing is built when an image of the same content exists, so a second
    call only looks the tags up. Raises ``ConfigError`` for an unknown release and
    ``ImageBuildError`` when the base, the wheels or the image cannot be built.
    """
    trixie = settings.replace(debian_suite=SHOP_SUITE)
    parent = images.python_image(client, trixie, say)
    context = images.app_context(trixie, SHOP_DIR, say)
    context.files.update(shop_source(release).files)
    return images._build(
        client,
        repo=SHOP_REPO,
        version=str(release),
        context=context,
        buildargs={"PYTHON_IMAGE": parent.id},
        # What an app's CI would put there; no deploygate label: deploygate did not build it for production.
        labels={"org.opencontainers.image.title": "shop", "org.opencontainers.image.version": str(release)},
        say=say,
    )
