"""The receiver's memory of recent message ids: at-least-once in, processed once.

A bounded window, because a receiver cannot remember every id forever: the ids of the
last `size` to `2 * size` messages. It keeps two generations of dicts and drops the
older one whole when the newer fills up, which costs one dict lookup and one insert
per message; an LRU (OrderedDict) would be exact to the message but slower on the hot
path and heavier per entry, and "at least the last `size`" is the guarantee a sender
needs to size its redelivery window against.

Values are what a duplicate needs: None for a tell (drop the copy), the original
`Envelope` for an ask (a duplicate ask gets the original's answer, now or when known).
The window belongs to the actor's cell, so it survives restarts: a message processed
by the crashed incarnation is not processed again by the new one.
"""

from __future__ import annotations

from typing import Final

from ._envelope import Envelope

#: Returned by `lookup` for an id the window does not hold.
MISSING: Final = object()


class DedupWindow:
    """Recent message ids (at least the last `size`) and what a duplicate should get."""

    __slots__ = ("_current", "_previous", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._current: dict[str, Envelope | None] = {}
        self._previous: dict[str, Envelope | None] = {}

    def lookup(self, message_id: str) -> Envelope | object | None:
        """The remembered value for `message_id`, or `MISSING`."""
        value = self._current.get(message_id, MISSING)
        if value is MISSING:
            return self._previous.get(message_id, MISSING)
        return value

    def remember(self, message_id: str, envelope: Envelope | None) -> None:
        """Remember `message_id` (with the envelope, for an ask)."""
        current = self._current
        if len(current) >= self._size:
            self._previous = current
            self._current = current = {}
        current[message_id] = envelope

    def forget(self, message_id: str) -> None:
        """Drop `message_id`: it was never processed, so a copy must be accepted."""
        self._current.pop(message_id, None)
        self._previous.pop(message_id, None)
