"""One image: a build context hashed by content, built under a tag that names the hash, or an official image pulled.

The tag ``repo:<version>-<hash>`` says what went into an image (the context's files, its
build args and labels), so a second build of the same content finds the tag and builds
nothing. ``deploygate.platform.images`` says which images production needs.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from deploygate.errors import ImageBuildError

HASH_LEN = 12
# Files never part of a build context: byte-code and editor droppings change the hash
# without changing the image.
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_IGNORED_SUFFIXES = {".pyc", ".pyo", ".swp"}

Say = Callable[[str], None]


@dataclass(frozen=True)
class Image:
    """A built or pulled image: the tag deploygate uses and the engine's image id."""

    tag: str
    id: str
    built: bool  # False when an existing image was reused


def _context_files(root: Path) -> Iterable[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or _IGNORED_PARTS & set(rel.parts) or path.suffix in _IGNORED_SUFFIXES:
            continue
        yield rel.as_posix(), path


@dataclass
class BuildContext:
    """Files of a docker build, kept as (name in context -> bytes) so they can be hashed and sent."""

    files: dict[str, bytes]

    @classmethod
    def empty(cls) -> BuildContext:
        return cls(files={})

    def add_tree(self, source: Path, prefix: str = "") -> BuildContext:
        for rel, path in _context_files(source):
            self.files[f"{prefix}{rel}"] = path.read_bytes()
        return self

    def add_bytes(self, name: str, data: bytes) -> BuildContext:
        self.files[name] = data
        return self

    def digest(self, *extra: str) -> str:
        """sha256 over every file's name, mode-independent content and the ``extra`` strings."""
        sha = hashlib.sha256()
        for name in sorted(self.files):
            sha.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        for item in extra:
            sha.update(b"\1" + item.encode())
        return sha.hexdigest()

    def tar(self) -> io.BytesIO:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in sorted(self.files):
                info = tarfile.TarInfo(name)
                info.size = len(self.files[name])
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                tar.addfile(info, io.BytesIO(self.files[name]))
        buf.seek(0)
        return buf


def existing(client: docker.DockerClient, tag: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def build(
    client: docker.DockerClient,
    *,
    repo: str,
    version: str,
    context: BuildContext,
    buildargs: Mapping[str, str],
    labels: Mapping[str, str],
    say: Say,
    dockerfile: str = "Dockerfile",
) -> Image:
    """Build ``repo:<version>-<hash>`` unless that tag exists; also tag ``repo:<version>``."""
    content = context.digest(json.dumps(dict(buildargs), sort_keys=True), json.dumps(dict(labels), sort_keys=True))
    tag = f"{repo}:{version}-{content[:HASH_LEN]}"
    alias = f"{repo}:{version}"
    found = existing(client, tag)
    if found is not None:
        found.tag(repo, version)
        return Image(tag=alias, id=found.id, built=False)

    say(f"building {alias} ({len(context.files)} files in context)...")
    log_tail: list[str] = []
    try:
        stream = client.api.build(
            fileobj=context.tar(),
            custom_context=True,
            dockerfile=dockerfile,
            tag=tag,
            buildargs=dict(buildargs),
            labels={**labels, "deploygate.content": content},
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageBuildError(f"building {alias} failed: {chunk['error'].strip()}; last output: {' | '.join(log_tail[-3:])}")
            line = (chunk.get("stream") or "").strip()
            if line:
                log_tail.append(line)
                if line.startswith("Step "):
                    say(f"  {alias}: {line[:110]}")
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"building {alias} failed: {exc.explanation or exc}") from None
    image = client.images.get(tag)
    image.tag(repo, version)
    return Image(tag=alias, id=image.id, built=True)


def try_pull(client: docker.DockerClient, reference: str, alias: str, say: Say) -> Image | None:
    """Pull an official image and give it the local alias; None when no registry answers."""
    try:
        image = client.images.pull(reference)
    except docker.errors.APIError:
        return None
    repo, _, version = alias.partition(":")
    image.tag(repo, version)
    say(f"pulled {reference} as {alias}")
    return Image(tag=alias, id=image.id, built=False)
