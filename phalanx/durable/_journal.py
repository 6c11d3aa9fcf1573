"""The runner's pen: the only way a run writes to its own stream.

Every write carries the runner's lease epoch and the version it last wrote, so a
runner that was taken over is refused by the store itself. Once refused, the pen is
dead: it raises at once on every later write, so a fenced runner writes nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .._errors import FencedError
from ..journal import EventStore, Lease, Metadata, NewEvent
from ._history import STATUS_EVENTS, run_stream


class RunJournal:
    """Appends a run's events under its lease, in order, one writer at a time."""

    def __init__(self, store: EventStore, lease: Lease, version: int, metadata: Metadata):
        self.store = store
        self.lease = lease
        self.stream_id = run_stream(metadata.run_id or "")
        self.version = version
        self.metadata = metadata
        self.fenced: FencedError | None = None
        self.closed: str | None = None
        #: Successful appends so far; watchers read progress from it.
        self.writes = 0
        self._pending: list[NewEvent] = []
        #: (version, deferred events) of an append cancelled in flight, until settled.
        self._unsure: tuple[int, int] | None = None
        self._lock = asyncio.Lock()

    def defer(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Queue an event to be written with the next append (recorded values).

        A deferred event reaches the journal before any effect that could depend on
        it, because every effect is journaled by an append that flushes it first.
        """
        self._pending.append(NewEvent(event_type, data, self.metadata))

    def close(self, reason: str) -> None:
        """Refuse every later write: the runner was stopped and must write nothing more.

        A refused write raises `asyncio.CancelledError(reason)`: the workflow is being
        cancelled anyway, and its cleanup unwinds without journaling anything.
        """
        self.closed = reason

    async def append(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Write one event (after any deferred ones), or raise if fenced out."""
        await self.flush(
            NewEvent(event_type, data, self.metadata, indexed=event_type in STATUS_EVENTS)
        )

    async def flush(self, *extra: NewEvent) -> None:
        """Write deferred events and `extra` in one atomic append."""
        async with self._lock:
            if self.fenced is not None:
                raise self.fenced
            if self.closed is not None:
                raise asyncio.CancelledError(self.closed)
            batch = [*self._pending, *extra]
            if not batch:
                return
            if self._unsure is not None:
                await self._settle(*self._unsure)
                batch = [*self._pending, *extra]
                if not batch:
                    return
            try:
                result = await self.store.append(
                    self.stream_id, batch, expected_version=self.version, epoch=self.lease.epoch
                )
            except FencedError as exc:
                self.fenced = exc
                raise
            except asyncio.CancelledError:
                # Cancelled mid-append (a deadline scope, a cancel request): the write
                # may have committed without us learning the new version. The next
                # write finds out first, so it is not refused as a conflict.
                self._unsure = (self.version, len(self._pending))
                raise
            self._pending.clear()
            self.version = result.version
            self.writes += 1

    async def _settle(self, version: int, deferred: int) -> None:
        """Learn whether an append cancelled in flight committed (only we write here)."""
        now = await self.store.stream_version(self.stream_id)
        if now > version:
            # It did: its deferred events are in the journal, its own event with them
            # (whose writer saw the cancel instead of the success).
            del self._pending[:deferred]
            self.version = now
            self.writes += 1
        self._unsure = None
