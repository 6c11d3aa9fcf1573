"""Task-local runtime state: which actor the running code belongs to.

Set by each actor's task at the start of an incarnation (its context is its own
copy, so nothing leaks between actors), and read to find the sender of a message,
to refuse an ask to oneself, and to parent a spawned child.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._cell import Cell

CURRENT_CELL: ContextVar[Cell | None] = ContextVar("phalanx_actor", default=None)
