"""Markdown pieces the deploy report and the reviewer's plan both write: tables and code fences."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cell: Callable[[Any], str]) -> list[str]:
    """A markdown table, each value written by ``cell`` (which must keep it on one line, pipes escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``, so SQL can never close its own block."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)
