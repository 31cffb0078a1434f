"""The images production needs: the offline Debian base, Postgres, nginx, HAProxy, Python, and the app's releases.

Each is built (``image_build``: tagged by a hash of what goes into it, so nothing unchanged
is built twice) or, where a registry answers (``image_source`` auto/registry), the official
Postgres, nginx and HAProxy images are pulled instead and given the same local names, so
the rest of deploygate never knows which path was taken.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from deploygate import resources
from deploygate.config import Settings
from deploygate.errors import ConfigError, ImageBuildError
from deploygate.packages import apt_install, can_apt_install
from deploygate.platform.image_build import HASH_LEN, BuildContext, Image, Say, build, existing, try_pull

# --- the Debian base (debootstrap + docker import) -------------------------------------------


def _ensure_debootstrap(say: Say) -> None:
    if shutil.which("debootstrap"):
        return
    if not can_apt_install():
        raise ImageBuildError("debootstrap is needed to build the offline base image; install it (apt-get install debootstrap)")
    say("installing debootstrap...")
    failure = apt_install("debootstrap")
    if failure:
        raise ImageBuildError(failure)


BASE_PACKAGES = ("ca-certificates",)


def base_image(client: docker.DockerClient, settings: Settings, say: Say = print) -> Image:
    """The Debian base every local image starts from: debootstrap (minbase) + docker import."""
    recipe = json.dumps(
        {"suite": settings.debian_suite, "mirror": settings.debian_mirror, "variant": "minbase", "include": BASE_PACKAGES},
        sort_keys=True,
    )
    version = settings.debian_suite
    tag = f"deploygate/debian:{version}-{hashlib.sha256(recipe.encode()).hexdigest()[:HASH_LEN]}"
    found = existing(client, tag)
    if found is not None:
        found.tag("deploygate/debian", version)
        return Image(tag=f"deploygate/debian:{version}", id=found.id, built=False)

    _ensure_debootstrap(say)
    say(f"building the Debian {version} base with debootstrap (about a minute)...")
    with tempfile.TemporaryDirectory(prefix="deploygate-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        argv = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            settings.debian_suite,
            str(rootfs),
            settings.debian_mirror,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise ImageBuildError(f"debootstrap failed: {tail[0]}")
        # Caches make the image bigger and would make apt in children think lists are fresh.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True, exist_ok=True)
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        try:
            client.api.import_image_from_file(str(archive), repository="deploygate/debian", tag=tag.split(":", 1)[1])
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"docker import of the base image failed: {exc.explanation or exc}") from None
    image = client.images.get(tag)
    image.tag("deploygate/debian", version)
    return Image(tag=f"deploygate/debian:{version}", id=image.id, built=True)


# --- service images ------------------------------------------------------------------------------

OFFICIAL = {
    "postgres": "postgres:{major}",
    "nginx": "nginx:stable-bookworm",
    "haproxy": "haproxy:2.6",
    "redis": "redis:7",
    "python": "python:{python}-slim-{suite}",
}
# The python3 of each Debian suite the local Python image can be built on.
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
# The PostgreSQL major each Debian suite ships: a server of another major gets its client
# tools (pg_dump, pg_restore) and its rehearsal copy from the suite that has that major.
DEBIAN_POSTGRES = {"bookworm": 15, "trixie": 17}


def _service_image(
    client: docker.DockerClient, settings: Settings, name: str, version: str, buildargs: Mapping[str, str], say: Say
) -> Image:
    alias = f"deploygate/{name}:{version}"
    if settings.image_source in ("auto", "registry"):
        reference = OFFICIAL[name].format(major=settings.postgres_major, python=version, suite=settings.debian_suite)
        pulled = try_pull(client, reference, alias, say)
        if pulled is not None:
            return pulled
        if settings.image_source == "registry":
            raise ImageBuildError(f"image_source is 'registry' but {reference} could not be pulled")
    base = base_image(client, settings, say)
    context = BuildContext.empty().add_tree(resources.images_dir() / name)
    return build(
        client,
        repo=f"deploygate/{name}",
        version=version,
        context=context,
        buildargs={"BASE_IMAGE": base.id, **buildargs},
        labels={"deploygate.image": name},
        say=say,
    )


def postgres_image(client: docker.DockerClient, settings: Settings, say: Say = print) -> Image:
    """Postgres of ``settings.postgres_major``; honours POSTGRES_USER/PASSWORD/DB like the official one.

    Built locally on the Debian suite that ships that major. Raises ``ConfigError`` for a
    major no known suite ships (where a registry answers, the official image is pulled instead).
    """
    major = settings.postgres_major
    if DEBIAN_POSTGRES.get(settings.debian_suite) != major:
        suite = next((s for s, m in DEBIAN_POSTGRES.items() if m == major), None)
        if suite is None and settings.image_source == "local":
            known = ", ".join(f"{m} ({s})" for s, m in DEBIAN_POSTGRES.items())
            raise ConfigError(f"PostgreSQL {major} cannot be built here: Debian ships {known}")
        settings = settings.replace(debian_suite=suite or settings.debian_suite)
    return _service_image(client, settings, "postgres", str(major), {"PG_MAJOR": str(major)}, say)


def nginx_image(client: docker.DockerClient, settings: Settings, say: Say = print) -> Image:
    """nginx for the blue-green proxy."""
    return _service_image(client, settings, "nginx", "stable", {}, say)


def haproxy_image(client: docker.DockerClient, settings: Settings, say: Say = print) -> Image:
    """HAProxy 2.6 for the blue-green proxy: Debian's package, or the official image where a registry answers.

    Both run as uid/gid 99 with their configuration under /usr/local/etc/haproxy, so
    ``deploygate.haproxy`` starts either with the same command and mounts.
    """
    return _service_image(client, settings, "haproxy", "2.6", {}, say)


def redis_image(client: docker.DockerClient, settings: Settings, say: Say = print) -> Image:
    """Redis 7 for production's cache (``cache.service``) and the cache gate's scratch one: Debian's redis-server,
    or the official image where a registry answers; either runs ``redis-server`` with the arguments it is given."""
    return _service_image(client, settings, "redis", "7", {}, say)


def python_version(settings: Settings) -> str:
    """The Python version ``python_image`` gives for ``settings.debian_suite``; ``ConfigError`` for a suite it does not know."""
    try:
        return DEBIAN_PYTHON[settings.debian_suite]
    except KeyError:
        raise ConfigError(f"no Python version known for Debian {settings.debian_suite}; known: {', '.join(DEBIAN_PYTHON)}") from None


def python_image(client: docker.DockerClient, settings: Settings, say: Say = print) -> Image:
    """The app image's parent: Debian's python3 of ``settings.debian_suite`` (3.11 on bookworm, 3.13 on trixie)."""
    return _service_image(client, settings, "python", python_version(settings), {}, say)


# --- the app's releases --------------------------------------------------------------------------


# The keys of a release's table that say how deploygate builds it; every other key is the app's own.
_BUILD_KEYS = ("overlay", "extra_overlay", "description")


@dataclass(frozen=True)
class Release:
    """One release of an app source, as declared in ``<app_source>/releases.toml``.

    The image is ``app/`` with ``releases/<overlay>/`` (then ``releases/<extra_overlay>/``)
    copied on top; the release's other keys (``app_keys``) mean something to the app only
    and are baked, with its name, into ``app/release.json`` for the app to read.
    """

    name: str
    overlay: str = ""
    description: str = ""
    extra_overlay: str = ""  # a second overlay on top of the first (a release that adds one migration)
    app_keys: Mapping[str, Any] = field(default_factory=dict)

    def manifest(self) -> bytes:
        """The release.json baked into the image."""
        return json.dumps({**self.app_keys, "name": self.name}, sort_keys=True).encode()


def releases(settings: Settings) -> dict[str, Release]:
    """Every release declared by the app source, by name (none without an app source).

    Raises ``ConfigError`` if the source's releases.toml cannot be read.
    """
    if not settings.app_source:
        return {}
    path = settings.path(settings.app_source) / "releases.toml"
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the releases of {settings.app_source}: {exc}") from None
    return {
        name: Release(
            name=name,
            **{key: str(spec[key]) for key in _BUILD_KEYS if key in spec},
            app_keys={key: value for key, value in spec.items() if key not in _BUILD_KEYS},
        )
        for name, spec in table.items()
    }


def _wheelhouse(settings: Settings, requirements: Path, say: Say, *, python: str) -> Path:
    """Wheels of the pinned ``requirements`` for CPython ``python``, downloaded on the host once per file and version.

    pip inside a container cannot verify PyPI's certificate here, so the image installs
    from this host-built wheelhouse with ``--no-index``. Raises ``ImageBuildError`` when
    pip cannot download them.
    """
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:HASH_LEN]
    # The version is in the directory's name, not in the key: the key is also written into
    # the wheelhouse (.complete), so changing it would change every app image's content hash.
    target = settings.path(settings.cache_dir) / f"wheelhouse-py{python}-{key}"
    if (target / ".complete").exists():
        return target
    say(
        f"downloading wheels for {requirements.relative_to(settings.root) if requirements.is_relative_to(settings.root) else requirements}..."
    )
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    argv = [
        "python3",
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        python,
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "manylinux_2_28_x86_64",
        "--implementation",
        "cp",
        "-r",
        str(requirements),
        "-d",
        str(partial),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = [line for line in (done.stderr or done.stdout).splitlines() if line.startswith("ERROR")][-1:]
        raise ImageBuildError(f"pip download of the app's wheels failed: {tail[0] if tail else done.returncode}")
    (partial / ".complete").write_text(key)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def app_context(settings: Settings, source: Path, say: Say) -> BuildContext:
    """The start of an app image's context: ``source``'s Dockerfile and requirements.txt, and their wheels in ``wheels/``.

    The wheels are for the Python of ``python_image`` on ``settings.debian_suite``; the
    caller adds the app's own files. Raises ``ImageBuildError`` when they cannot be downloaded.
    """
    wheels = _wheelhouse(settings, source / "requirements.txt", say, python=python_version(settings))
    return (
        BuildContext.empty()
        .add_bytes("Dockerfile", (source / "Dockerfile").read_bytes())
        .add_bytes("requirements.txt", (source / "requirements.txt").read_bytes())
        .add_tree(wheels, "wheels/")
    )


def release_image(client: docker.DockerClient, settings: Settings, release_name: str, say: Say = print) -> Image:
    """The app image of one release: app source + the release's migration overlay + release.json.

    Raises ``ConfigError`` for an unknown release and ``ImageBuildError`` when the build fails.
    """
    known = releases(settings)
    if release_name not in known:
        raise ConfigError(f"unknown release {release_name!r}; known: {', '.join(known)}")
    release = known[release_name]
    source = settings.path(settings.app_source)
    parent = python_image(client, settings, say)
    context = app_context(settings, source, say).add_tree(source / "app", "app/")
    for overlay in (release.overlay, release.extra_overlay):
        if overlay:
            context.add_tree(source / "releases" / overlay, "app/")
    context.add_bytes("app/release.json", release.manifest())
    return build(
        client,
        repo=settings.app_image,
        version=release.name,
        context=context,
        buildargs={"PYTHON_IMAGE": parent.id},
        labels={"deploygate.release": release.name},
        say=say,
    )


def resolve_candidate(client: docker.DockerClient, settings: Settings, candidate: str, say: Say = print) -> Image:
    """An image reference (the engine's, or pulled where a registry answers), or a release of app.source (built).

    Raises ``ConfigError`` when it is neither, in one line.
    """
    if candidate in releases(settings):
        return release_image(client, settings, candidate, say)
    found = existing(client, candidate)
    if found is None and settings.image_source != "local":
        try:
            found = client.images.pull(candidate)
            say(f"pulled {candidate}")
        except docker.errors.APIError:
            found = None
    if found is None:
        where = f"a release of {settings.app_source} nor " if settings.app_source else ""
        raise ConfigError(f"candidate {candidate!r} is neither {where}an image the engine has (nor one a registry gave)")
    return Image(tag=candidate, id=found.id, built=False)


def prune_releases(client: docker.DockerClient, settings: Settings, *, keep: set[str], ours: set[str]) -> list[str]:
    """Remove release images deploygate built from app.source (``app_image``) whose id is in ``ours`` and not in ``keep``.

    ``ours``: the images this production's ledger says it deployed. Another production on the same
    engine (or a test run beside this one) builds the same repository's images: never this one's to
    remove. Images deploygate did not build (a user's, from their CI) are never touched, nor is an
    image still used by a container (the engine refuses, and we skip it). Returns the tags removed.
    """
    if not (settings.app_source and settings.app_image):
        return []
    removed = []
    for image in client.images.list(name=settings.app_image, filters={"label": "deploygate.release"}):
        if image.id in keep or image.id not in ours:
            continue
        try:
            for tag in image.tags:
                client.images.remove(tag)
            removed += image.tags
        except docker.errors.APIError:
            continue
    return removed
