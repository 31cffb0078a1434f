"""The cache gate: what one release caches, the other reads, through a scratch Redis on the rehearsal's copy.

Two directions, as the deploy meets them: the candidate reads what the production release
cached (after the switch) and the production release reads what the candidate cached (after
a rollback). Each release runs with the app's own ``CACHES``, pointed at the scratch cache
and given its schema's namespace (``deploygate.cache``). A direction passes when the two
releases' keys differ (their namespaces keep them apart: the reader misses every entry), or
when the reader unpickles every entry the writer cached without an error and with exactly
its own model's fields. It fails on any entry that breaks or that carries another schema's
fields: in production that entry would be served to the reader.

The reader's view of a field's *value* is not judged: the writer's rows are the copy's,
read before the reader runs, so a value cannot have gone stale between them; a class the
reader lacks, a field under another name or one it has no field for is what breaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploygate import cache
from deploygate.config import Settings
from deploygate.log import Say
from deploygate.platform import Platform
from deploygate.platform.images import Image
from deploygate.probe import Prober
from deploygate.rehearsal import DatabaseCopy

# The keys the probe writes, beside nothing the app caches itself (the scratch cache is empty anyway).
KEY_PREFIX = "deploygate-cache-probe"


@dataclass(frozen=True)
class CacheRead:
    """One key as the reader found it: missed, read (with how it differs from the reader's models), or an error."""

    key: str
    outcome: str  # missed | read | error
    error: str = ""
    differences: tuple[str, ...] = ()

    @property
    def problem(self) -> str:
        """Why serving this entry to the reader breaks it ("" when it does not)."""
        if self.outcome == "error":
            return f"{self.key}: {self.error}"
        if self.differences:
            return f"{self.key}: {'; '.join(self.differences)}"
        return ""


@dataclass(frozen=True)
class Exchange:
    """One direction: ``writer`` cached, ``reader`` read, each under its namespace."""

    writer: str
    reader: str
    writer_namespace: str
    reader_namespace: str
    writer_key: str  # the probe's key prefix as the writer's CACHES makes it
    reader_key: str  # ... and as the reader's does
    reads: tuple[CacheRead, ...]
    unread: dict[str, str] = field(default_factory=dict)  # models the writer could not load (cached unsaved instances)

    @property
    def separated(self) -> bool:
        """The releases' keys differ: nothing one caches is read by the other."""
        return self.writer_key != self.reader_key

    @property
    def problems(self) -> list[str]:
        return [read.problem for read in self.reads if read.problem]

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: how the direction went."""
        hits = sum(r.outcome != "missed" for r in self.reads)
        if self.separated and not hits:
            return (
                f"{self.reader} missed all {len(self.reads)} entries {self.writer} cached: "
                f"different keys ({self.writer_key} / {self.reader_key})"
            )
        if not self.reads:
            return f"{self.writer} cached nothing (no model in scope)"
        shared = f"shared keys ({self.reader_key})" if not self.separated else f"keys {self.writer_key} / {self.reader_key}"
        line = f"{self.reader} read {hits} of {len(self.reads)} entries {self.writer} cached under {shared}: {len(self.problems)} broken"
        return line + (f", e.g. {self.problems[0]}" if self.problems else "")

    def explain(self) -> str:
        lines = [self.summary()]
        lines += [f"  {problem}" for problem in self.problems]
        if self.problems and not self.separated:
            lines.append(
                f"  both releases cache under one prefix whatever the schema: use the namespace deploygate hands each "
                f"color as KEY_PREFIX (the README's CACHES recipe; {self.writer}: {self.writer_namespace}, "
                f"{self.reader}: {self.reader_namespace})"
            )
        lines += [f"  {label}: cached unsaved (the table could not be read: {error})" for label, error in self.unread.items()]
        return "\n".join(lines)


def parse_reads(payload: dict) -> tuple[CacheRead, ...]:
    return tuple(
        CacheRead(key=r["key"], outcome=r["outcome"], error=r.get("error", ""), differences=tuple(r.get("differences", ())))
        for r in payload["read"]
    )


@dataclass(frozen=True)
class Side:
    """A release in the exchange: its image and the namespace of the schema it runs on."""

    image: Image
    namespace: str


def exchange(
    platform: Platform,
    settings: Settings,
    copy: DatabaseCopy,
    scratch_url: str,
    writer: Side,
    reader: Side,
    *,
    scope: dict | None,
    direction: str,
    say: Say | None = None,
) -> Exchange:
    """``writer`` caches the instances of the models in ``scope`` on ``copy``, ``reader`` reads them back."""
    prefix = f"{KEY_PREFIX}-{direction}"

    def prober(side: Side) -> Prober:
        environment = copy.app_environment(settings) | cache.environment(settings, scratch_url, side.namespace)
        return Prober.configured(platform, settings, side.image, environment, network=copy.scratch.database.network, say=say)

    written, _ = prober(writer).run("cache-write", {"key_prefix": prefix, "scope": scope})
    keys = [entry["key"] for entry in written["written"]]
    read, _ = prober(reader).run("cache-read", {"key_prefix": prefix, "keys": keys})
    return Exchange(
        writer=writer.image.tag,
        reader=reader.image.tag,
        writer_namespace=writer.namespace,
        reader_namespace=reader.namespace,
        writer_key=written["made_key"],
        reader_key=read["made_key"],
        reads=parse_reads(read),
        unread=written.get("unread", {}),
    )
