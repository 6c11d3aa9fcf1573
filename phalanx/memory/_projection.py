"""A process's projection of a memory: its stream folded as far as this process has read.

Every reader in a process shares one projection per memory (`MemoryState` with every
version kept). Linearizable reads and snapshots catch it up to the stream's head
before reading; eventual reads read it as it is, and say how far behind it is: in
positions (the stream's head minus what was folded) and in seconds (since the
projection was last seen at the head: an upper bound on the age of what it misses,
without reading the events it misses).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .._clock import Clock
from ..journal import EventStore
from ._state import MemoryState, memory_stream

#: Events read at once while catching up.
PAGE = 5000


@dataclass(frozen=True, slots=True)
class Staleness:
    """How far behind the memory's head an eventual read was."""

    positions: int
    seconds: float

    def to_json(self) -> dict[str, float]:
        """The JSON form journaled with the read."""
        return {"positions": self.positions, "seconds": self.seconds}


class Projection:
    """Memory `name` folded from the store, caught up on demand or by a follower."""

    def __init__(self, store: EventStore, name: str, clock: Clock) -> None:
        self.store = store
        self.name = name
        self.clock = clock
        self.state = MemoryState(name)
        self.stream = memory_stream(name)
        #: When the projection was last known to hold everything in the stream (never
        #: yet: the Unix epoch, so a projection that never caught up is as stale as can be).
        self.synced_at = 0.0
        self._lock = asyncio.Lock()

    async def catch_up(self, to: int | None = None) -> int:
        """Fold what the stream holds past the projection (at least up to `to`); the head.

        Returns the position caught up to. Without `to`, reads until the stream has
        nothing more, so every write committed before the call is folded.
        """
        async with self._lock:
            if to is not None and self.state.position >= to:
                return self.state.position
            started = self.clock.now()
            while True:
                events = await self.store.read_stream(
                    self.stream, from_seq=self.state.position + 1, limit=PAGE
                )
                for event in events:
                    self.state.apply(event)
                if len(events) < PAGE:
                    break
            self.synced_at = started
            return self.state.position

    async def staleness(self) -> Staleness:
        """How far behind the stream's head the projection is now."""
        head = await self.store.stream_version(self.stream)
        behind = max(0, head - self.state.position)
        if behind == 0:
            self.synced_at = self.clock.now()
            return Staleness(0, 0.0)
        return Staleness(behind, max(0.0, self.clock.now() - self.synced_at))
