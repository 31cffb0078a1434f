"""A table's columns before and after a migration, paired (pure).

By name first, then by attribute number for a rename: RenameField keeps the number and
changes the name, while a column dropped and re-created (a reversal re-adding what the
plan dropped) keeps its name and type but gets a new number, after every other column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    attnum: int
    name: str
    type: str


@dataclass(frozen=True)
class ColumnMatch:
    """How one table's columns before pair with its columns after (``match_columns``)."""

    pairs: list[tuple[Column, Column]]  # (before, after), in the order of before
    dropped: list[Column]
    added: list[Column]

    @property
    def renamed(self) -> list[tuple[str, str]]:
        return [(old.name, new.name) for old, new in self.pairs if old.name != new.name]

    @property
    def reordered(self) -> bool:
        """The columns kept are no longer in their old relative order (one was re-created after another)."""
        numbers = [new.attnum for _, new in self.pairs]
        return numbers != sorted(numbers)

    def order(self, side: int) -> list[str]:
        """The names of the paired columns in their order before (``side`` 0) or after (1)."""
        kept = sorted(self.pairs, key=lambda pair: pair[side].attnum)
        return [pair[1].name for pair in kept]


def match_columns(old: dict[int, Column], new: dict[int, Column], *, same_object: bool = True) -> ColumnMatch:
    """Pair a table's columns before with its columns after: by name (and so type, compared by the caller),
    then, for a column whose name is gone, with the column at its attribute number when that one's name is
    new (a rename: same table object only, a re-created table numbers its columns afresh).

    Names come first because a column dropped and re-created (a reversal re-adding what the plan dropped)
    keeps its name but not its number; a number pairs only what a name cannot.
    """
    by_name = {column.name: column for column in new.values()}
    old_names = {column.name for column in old.values()}
    pairs, dropped, used = [], [], set()
    for attnum in sorted(old):
        column = old[attnum]
        partner = by_name.get(column.name)
        if partner is None and same_object:
            at_number = new.get(attnum)
            partner = at_number if at_number is not None and at_number.name not in old_names else None
        if partner is None or partner.attnum in used:
            dropped.append(column)
            continue
        used.add(partner.attnum)
        pairs.append((column, partner))
    added = [new[n] for n in sorted(new) if n not in used]
    return ColumnMatch(pairs=pairs, dropped=dropped, added=added)
