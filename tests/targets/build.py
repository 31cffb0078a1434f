"""Images of the test targets (tests/targets/<name>), built offline with deploygate's own helpers.

A target is a Django app of deploygate's own tests, deployed by configuration alone: the
shop (small, Django 6 on trixie) and bigapp (shaped like a large app, Django 5.2 on
bookworm). Release 1 is ``<name>/app``; release N is release 1 with ``<name>/releases/2.patch``
... ``N.patch`` applied in order, the way a team's later commits change the tree. The image
is the target's ordinary Dockerfile on Debian's Python of the target's suite, with a
host-built wheelhouse (pip inside the build cannot reach PyPI here), tagged
``<repo>:<N>`` like an app's CI would.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker

from deploygate.config import Settings
from deploygate.errors import ConfigError, ImageBuildError
from deploygate.log import Say
from deploygate.platform import image_build, images

TARGETS_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Target:
    """One test target: its name, its directory (Dockerfile, requirements.txt, app/, releases/),
    the image repository its CI would push to, and the Debian suite whose python3 it needs."""

    name: str
    repo: str
    suite: str
    directory: Path

    def releases(self) -> list[int]:
        """The releases the target has: 1 and one more per ``releases/<N>.patch``, in order."""
        return [1, *sorted(int(patch.stem) for patch in (self.directory / "releases").glob("*.patch"))]

    def source(self, release: int) -> images.BuildContext:
        """The files of ``app/`` as ``release`` has them, named ``app/...`` as the Dockerfile copies them.

        Raises ``ConfigError`` for a release the target does not have and ``ImageBuildError``
        when a patch no longer applies (release 1 changed under it).
        """
        if release not in self.releases():
            raise ConfigError(f"the {self.name} has no release {release}; it has {self.releases()}")
        with tempfile.TemporaryDirectory(prefix=f"dg{self.name}-src-") as tmp:
            tree = Path(tmp)
            for name, data in images.BuildContext.empty().add_tree(self.directory / "app").files.items():
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                (tree / name).write_bytes(data)
            for number in range(2, release + 1):
                self._apply(self.directory / "releases" / f"{number}.patch", tree)
            return images.BuildContext.empty().add_tree(tree, "app/")

    def _apply(self, patch: Path, tree: Path) -> None:
        # git apply rather than a hand-written patcher (it also deletes files, as a squash
        # that removes the migrations it replaces needs). The ceiling stops git from finding
        # a checkout around the temporary directory and applying the patch relative to that.
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.parent)}
        done = subprocess.run(["git", "apply", str(patch)], cwd=tree, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            raise ImageBuildError(f"{patch.relative_to(self.directory)} does not apply: {tail[0]}")


# Django 6 needs Python 3.12 or newer: trixie's python3 is 3.13.
SHOP = Target("shop", repo="dgshop", suite="trixie", directory=TARGETS_DIR / "shop")
# Django 5.2 on bookworm's Python 3.11: the demo's base image, so a warm engine builds only the app layer.
BIGAPP = Target("bigapp", repo="dgbigapp", suite="bookworm", directory=TARGETS_DIR / "bigapp")


def build_target(client: docker.DockerClient, settings: Settings, target: Target, release: int, say: Say = print) -> images.Image:
    """The target's image of ``release``, tagged ``<repo>:<release>`` (and ``<repo>:<release>-<content hash>``).

    ``settings`` gives the Debian mirror, the image source and the wheel cache; the suite
    is the target's. Nothing is built when an image of the same content exists, so a second
    call only looks the tags up. Raises ``ConfigError`` for an unknown release and
    ``ImageBuildError`` when the base, the wheels or the image cannot be built.
    """
    suited = settings.replace(debian_suite=target.suite)
    parent = images.python_image(client, suited, say)
    context = images.app_context(suited, target.directory, say)
    context.files.update(target.source(release).files)
    return image_build.build(
        client,
        repo=target.repo,
        version=str(release),
        context=context,
        buildargs={"PYTHON_IMAGE": parent.id},
        # What an app's CI would put there; no deploygate label: deploygate did not build it for production.
        labels={"org.opencontainers.image.title": target.name, "org.opencontainers.image.version": str(release)},
        say=say,
    )
