"""Build contexts hash by content; releases are read from the app source (pure logic)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from deploygate import config
from deploygate.errors import ConfigError
from deploygate.platform import images

ROOT = Path(__file__).resolve().parents[2]


def test_digest_depends_on_content_not_on_order_or_bytecode(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("print(2)")
    first = images.BuildContext.empty().add_tree(tmp_path).digest("arg")
    (tmp_path / "sub" / "__pycache__").mkdir()
    (tmp_path / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"\0")
    assert images.BuildContext.empty().add_tree(tmp_path).digest("arg") == first
    (tmp_path / "a.txt").write_text("two")
    assert images.BuildContext.empty().add_tree(tmp_path).digest("arg") != first


def test_digest_depends_on_build_args() -> None:
    context = images.BuildContext.empty().add_bytes("Dockerfile", b"FROM x")
    assert context.digest("a") != context.digest("b")


def test_tar_holds_every_file_with_exec_bit_on_scripts() -> None:
    context = images.BuildContext.empty().add_bytes("run.sh", b"#!/bin/sh").add_bytes("Dockerfile", b"FROM x")
    with tarfile.open(fileobj=context.tar()) as tar:
        members = {m.name: m.mode for m in tar.getmembers()}
    assert members == {"Dockerfile": 0o644, "run.sh": 0o755}


def test_demo_declares_the_releases_the_gates_need() -> None:
    settings = config.load(root=ROOT, environ={})
    found = images.releases(settings)
    assert {"v1", "v2", "v2-safe", "v2-broken-migration", "v2-unhealthy", "v2-error-burst", "v2-hidden-errors", "v2-slow"} <= set(found)
    assert not found["v1"].app_keys["renamed"] and found["v2"].app_keys["renamed"] and not found["v2"].app_keys["keep_db_names"]
    assert found["v2-safe"].app_keys["keep_db_names"] and found["v2-unhealthy"].app_keys["behaviour"] == "unhealthy"
    assert found["v2-slow-migration"].extra_overlay == "slow-migration" and "description" not in found["v1"].app_keys
    for release in found.values():
        for overlay in (release.overlay, release.extra_overlay):
            if overlay:
                assert (ROOT / "demo" / "releases" / overlay).is_dir(), release.name


def test_a_release_json_carries_the_apps_own_keys_and_the_name(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "releases.toml").write_text('[one]\noverlay = "o"\ndescription = "first"\nflavour = "mint"\nlevel = 3\n[two]\n')
    found = images.releases(config.load(root=tmp_path, environ={}, overrides={"app_source": "app"}))
    assert found["one"].manifest() == b'{"flavour": "mint", "level": 3, "name": "one"}'
    assert (found["one"].overlay, found["one"].description) == ("o", "first")
    assert found["two"] == images.Release(name="two") and found["two"].manifest() == b'{"name": "two"}'


def test_unknown_app_source_is_a_config_error(tmp_path: Path) -> None:
    settings = config.load(root=tmp_path, environ={}, overrides={"app_source": "nowhere"})
    with pytest.raises(ConfigError, match="cannot read the releases"):
        images.releases(settings)


def test_python_version_follows_the_debian_suite(tmp_path: Path) -> None:
    settings = config.load(root=tmp_path, environ={})
    assert images.python_version(settings) == "3.11"  # bookworm, the default
    assert images.python_version(settings.replace(debian_suite="trixie")) == "3.13"
    with pytest.raises(ConfigError, match="no Python version known for Debian sid"):
        images.python_version(settings.replace(debian_suite="sid"))


class _FakeImage:
    def __init__(self, image_id: str, *tags: str) -> None:
        self.id, self.tags = image_id, list(tags)


class _FakeImages:
    """The two calls prune_releases makes of docker's image collection (the rest is the engine's)."""

    def __init__(self, *found: _FakeImage) -> None:
        self.found, self.removed = list(found), []

    def list(self, name: str, filters: dict) -> list[_FakeImage]:
        return self.found

    def remove(self, tag: str) -> None:
        self.removed.append(tag)


def test_pruning_removes_only_this_productions_old_releases(tmp_path: Path) -> None:
    settings = config.load(root=tmp_path, environ={}).replace(app_source="demo", app_image="shop")
    client = type("Client", (), {})()
    client.images = _FakeImages(
        _FakeImage("sha256:old", "shop:1"), _FakeImage("sha256:kept", "shop:2"), _FakeImage("sha256:theirs", "shop:9")
    )
    removed = images.prune_releases(client, settings, keep={"sha256:kept"}, ours={"sha256:old", "sha256:kept"})
    # shop:9 was built by another production on the same engine (or a parallel test run): not this one's to remove.
    assert removed == ["shop:1"] and client.images.removed == ["shop:1"]
