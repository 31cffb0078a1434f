"""Applied migrations a release's graph does not hold, sorted by why (pure logic, unit-tested).

A database can record migrations its release's graph lacks for three reasons, and only
one of them means the schema is not the release's:

- a squashed migration replaced them: Django records every replaced name when it applies
  a squash (and later releases keep the squash with its ``replaces``), while the graph
  shows only the squash;
- their app is no longer installed: Django never removes an uninstalled app's rows from
  ``django_migrations``;
- a squash another release recorded: a candidate whose history is squashed records its
  squash's name when it migrates a database whose replaced migrations are all applied;
  after a rollback the previous release, which has those migrations and not the squash,
  sees the name (``squashed_elsewhere``, given that release's squashes);
- anything else: another release's migrations (e.g. the candidate's, after a failed
  reversal). Only these are a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class OutsideGraph:
    """Applied ``app.name`` labels outside the release's graph, by reason; ``unknown`` alone is a mismatch."""

    replaced_by_squash: list[str] = field(default_factory=list)
    of_removed_apps: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    squashes_of_its_own: list[str] = field(default_factory=list)  # another release's squash over this one's migrations

    def explained(self) -> str:
        """The names that are history, counted: ``replaced by squash: 476, of apps no longer installed: 3``."""
        line = f"replaced by squash: {len(self.replaced_by_squash)}, of apps no longer installed: {len(self.of_removed_apps)}"
        return line + (
            f", squashes of its own migrations recorded by another release: {len(self.squashes_of_its_own)}"
            if self.squashes_of_its_own
            else ""
        )

    def describe(self) -> str:
        """One line for logs and reports: ``explained()``, then the unknown names (the first five) if any."""
        parts = [self.explained()]
        if self.unknown:
            parts.append(f"unknown: {len(self.unknown)} ({', '.join(self.unknown[:5])}{', ...' if len(self.unknown) > 5 else ''})")
        return ", ".join(parts)


def classify(
    outside_graph: Iterable[str], squash_replaces: Mapping[str, Iterable[str]], installed_apps: Iterable[str] | None
) -> OutsideGraph:
    """Sort applied labels that the release's graph lacks (``outside_graph``) by reason.

    ``squash_replaces``: each squashed migration of the release's graph -> the labels its
    ``replaces`` names; ``installed_apps``: the release's app labels (None: not known, so
    no app counts as removed). A replaced name wins over a removed app.
    """
    replaced = {label for labels in squash_replaces.values() for label in labels}
    outside_graph = set(outside_graph)
    installed = {label.split(".", 1)[0] for label in outside_graph} if installed_apps is None else set(installed_apps)
    result = OutsideGraph()
    for label in sorted(outside_graph):
        if label in replaced:
            result.replaced_by_squash.append(label)
        elif label.split(".", 1)[0] not in installed:
            result.of_removed_apps.append(label)
        else:
            result.unknown.append(label)
    return result


def squashed_elsewhere(outside: OutsideGraph, other_squashes: Mapping[str, Iterable[str]]) -> OutsideGraph:
    """``outside`` with the unknown names that are another release's squashes (``other_squashes``: squash ->
    what it replaces) counted as history, when nothing they replace is unknown to this release too."""
    unknown = set(outside.unknown)
    own = sorted(label for label in unknown if label in other_squashes and not unknown & set(other_squashes[label]))
    return replace(outside, unknown=sorted(unknown - set(own)), squashes_of_its_own=[*outside.squashes_of_its_own, *own])
