"""Tables that fit the terminal without cutting the ids a user types next.

Rich shrinks every column of a table wider than the terminal, ids included, and an
id cut to `e657013af…` cannot be typed into the next command. Here id columns are
never wrapped or cut: less important columns are dropped first (the least important
first), and the remaining text columns wrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

#: Narrowest a wrapping column is assumed to get before a column is dropped instead.
_MIN_TEXT = 8
#: What each column costs besides its text: a border and one space each side.
_COLUMN_FRAME = 3


@dataclass(frozen=True)
class Column:
    """A table column.

    `whole` columns (ids, short status words) are printed whole on one line. `drop`
    orders the columns that may be left out on a narrow terminal (the highest first);
    0 is never dropped.
    """

    header: str
    whole: bool = False
    drop: int = 0


def fit_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> Table:
    """A table of `rows` that fits `console`'s width, id columns whole."""

    def width(index: int) -> int:
        column = columns[index]
        longest = max([len(column.header), *(len(row[index]) for row in rows)])
        return longest if column.whole else min(longest, max(len(column.header), _MIN_TEXT))

    kept = list(range(len(columns)))
    droppable = sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop)
    for index in droppable:
        if sum(width(i) + _COLUMN_FRAME for i in kept) + 1 <= console.width:
            break
        kept.remove(index)
    table = Table()
    for index in kept:
        column = columns[index]
        if column.whole:
            table.add_column(column.header, no_wrap=True, min_width=width(index))
        else:
            table.add_column(column.header, overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table
