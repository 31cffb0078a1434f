"""Responses of one replay compared with the baseline's, noise learned Diffy's way (pure).

The baseline is the production release on the schema production has, replayed twice on two
identical copies: what differs between those two runs (a timestamp, a generated token, a
request whose answer depends on the clock) is noise, and is never held against a release.
A response is compared by its status class and its shape: a JSON body by its keys and the
types of their values (keys a release adds are allowed: a client that never asked for them
ignores them), any other body by its size band. Values are never compared: the copies are
the same data, and a release may word a page differently without breaking anyone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# A body's size in bands a factor of 8 apart: an error page instead of a list is another band.
_BAND_FACTOR = 8
# The type that matches any other: a value that is null in one answer and set in another is data, not shape.
_ANY = "null"


@dataclass(frozen=True)
class Answer:
    """What one replayed request got: status (0: no answer), shape, and the app's error for it, if any."""

    status: int
    shape: Any
    error: str = ""  # the connection's error when there was no answer
    app_error: str = ""  # the app's exception logged while it answered ("KeyError at views.py in page")

    @property
    def status_class(self) -> str:
        return f"{self.status // 100}xx" if self.status else "no answer"


def size_band(size: int) -> str:
    """``size`` bytes as a band: "0", "<64", "<512", "<4K", ... a factor of 8 apart."""
    if size == 0:
        return "0"
    limit = 64
    while size >= limit:
        limit *= _BAND_FACTOR
    return f"<{limit}"


def _json_shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_shape(item) for key, item in value.items()}
    if isinstance(value, list):
        # A list's shape is its elements' (merged): pages of different length are the same shape.
        merged: Any = _ANY
        for item in value:
            merged = _merge(merged, _json_shape(item))
        return [merged]
    if value is None:
        return _ANY
    if isinstance(value, bool):
        return "bool"
    # 0 and 0.5 are one JSON type: a measurement written as 1 one time and 1.5 the next is no change of shape.
    return "number" if isinstance(value, int | float) else type(value).__name__


def _merge(a: Any, b: Any) -> Any:
    if a == _ANY:
        return b
    if b == _ANY or a == b:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {key: _merge(a.get(key, _ANY), b.get(key, _ANY)) for key in {**a, **b}}
    if isinstance(a, list) and isinstance(b, list):
        return [_merge(a[0], b[0])]
    return a  # elements of different types: the first one's stands for the list


def shape_of(content_type: str, body: bytes | None, size: int | None = None) -> Any:
    """A JSON body's keys and value types; any other body (or one not kept: ``None``, its ``size`` given):
    {"type": ..., "size": band}."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.endswith("json") and body is not None:
        try:
            return {"json": _json_shape(json.loads(body))}
        except ValueError:
            pass
    return {"type": kind or "none", "size": size_band(len(body) if body is not None else size or 0)}


def differences(expected: Any, found: Any, path: str = "$") -> list[str]:
    """How ``found`` departs from the shape ``expected``: a key missing, a type changed ("$.member: int -> str").
    Keys ``found`` adds are not differences."""
    if expected == _ANY or found == _ANY or expected == found:
        return []
    if isinstance(expected, dict) and isinstance(found, dict):
        found_ = []
        for key, value in expected.items():
            if key not in found:
                found_.append(f"{path}.{key} missing")
            else:
                found_ += differences(value, found[key], f"{path}.{key}")
        return found_
    if isinstance(expected, list) and isinstance(found, list):
        return differences(expected[0], found[0], f"{path}[]")
    return [f"{path}: {_describe(expected)} -> {_describe(found)}"]


def _describe(shape: Any) -> str:
    if isinstance(shape, dict):
        return "object"
    if isinstance(shape, list):
        return "list"
    return str(shape)


@dataclass(frozen=True)
class Noise:
    """What two runs of the same release on the same data disagreed on: whole requests, or paths of their shapes."""

    requests: frozenset[int] = frozenset()
    paths: Mapping[int, frozenset[str]] = field(default_factory=dict)


def learn_noise(first: Sequence[Answer], second: Sequence[Answer]) -> Noise:
    """Requests whose status class differed between the two baseline runs are noise; of the others, the shape
    paths that differed."""
    requests: set[int] = set()
    paths: dict[int, frozenset[str]] = {}
    for index, (a, b) in enumerate(zip(first, second, strict=True)):
        if a.status_class != b.status_class:
            requests.add(index)
            continue
        differing = {_path_of(d) for d in differences(a.shape, b.shape) + differences(b.shape, a.shape)}
        if differing:
            paths[index] = frozenset(differing)
    return Noise(frozenset(requests), paths)


def _path_of(difference: str) -> str:
    return difference.split(":")[0].removesuffix(" missing")


@dataclass(frozen=True)
class Difference:
    """One request answered otherwise than the baseline: what it was, and how."""

    index: int
    request: str  # "POST /orders/"
    baseline: str  # "201"
    now: str  # "500"
    detail: str  # the shape's differences, or the app's error

    def describe(self) -> str:
        return f"{self.request}: {self.baseline} -> {self.now}" + (f" ({self.detail})" if self.detail else "")


def compare(requests: Sequence[str], baseline: Sequence[Answer], run: Sequence[Answer], noise: Noise) -> tuple[list[Difference], int]:
    """The requests ``run`` answered otherwise than ``baseline`` (status class, then shape), and how many were
    left out as noise. ``requests`` names each ("GET /orders/{id}/")."""
    found: list[Difference] = []
    ignored = 0
    for index, (name, expected, got) in enumerate(zip(requests, baseline, run, strict=True)):
        if index in noise.requests:
            ignored += 1
            continue
        if expected.status_class != got.status_class:
            detail = got.app_error or got.error
            found.append(Difference(index, name, str(expected.status or expected.error), str(got.status or "no answer"), detail))
            continue
        noisy = noise.paths.get(index, frozenset())
        changed = [d for d in differences(expected.shape, got.shape) if _path_of(d) not in noisy]
        if changed:
            detail = "; ".join(changed[:3]) + (f" (+{len(changed) - 3})" if len(changed) > 3 else "")
            found.append(Difference(index, name, str(expected.status), str(got.status), detail))
    return found, ignored
