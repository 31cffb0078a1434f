"""Which release this process is.

One source tree serves every release: the image build copies a release's
migration overlay on top of it and writes ``release.json`` next to
``manage.py``. The models, views and middleware read ``RELEASE`` to decide
which ORM names to use and how to behave. Without a release file the code is
the release running in production today, v1.
"""

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

BEHAVIOURS = ("normal", "unhealthy", "error-burst", "drops-member", "hidden-errors", "slow", "raw-sql")
CACHE_NAMESPACES = ("schema", "fixed")
DEFAULT_RELEASE_FILE = Path(__file__).resolve().parent.parent / "release.json"


@dataclass(frozen=True)
class Release:
    """The switches a release image is built with."""

    name: str = "v1"
    # The ORM uses the new names (BMParliamentMember, bm_parliament_member).
    renamed: bool = False
    # New ORM names mapped onto the old table and column (db_table/db_column),
    # so the release runs on the schema v1 uses.
    keep_db_names: bool = False
    behaviour: str = "normal"
    # Its cache's KEY_PREFIX: "schema", the namespace deploygate hands each color (DEPLOYGATE_CACHE_NAMESPACE),
    # or "fixed", one prefix for every schema (an app before deploygate's recipe).
    cache_namespace: str = "schema"


def load_release(path=None):
    """Read a release file; a missing file means v1.

    Keys other than the dataclass fields (the build may copy the whole
    releases.toml table, description included) are ignored. A malformed file
    or an unknown behaviour raises, so a badly built image fails at start
    instead of serving as the wrong release.
    """
    path = Path(path or os.environ.get("BMP_RELEASE_FILE") or DEFAULT_RELEASE_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Release()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    known = {f.name: f.type for f in fields(Release)}
    values = {key: data[key] for key in known if key in data}
    for key, value in values.items():
        if not isinstance(value, known[key]):
            raise ValueError(f"{path}: {key} must be a {known[key].__name__}")
    release = Release(**values)
    if release.cache_namespace not in CACHE_NAMESPACES:
        raise ValueError(f"{path}: cache_namespace {release.cache_namespace!r} is not one of {', '.join(CACHE_NAMESPACES)}")
    if release.behaviour not in BEHAVIOURS:
        raise ValueError(f"{path}: behaviour {release.behaviour!r} is not one of {', '.join(BEHAVIOURS)}")
    return release


RELEASE = load_release()
