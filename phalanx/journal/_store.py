"""The `EventStore` protocol that every journal backend implements.

Two backends implement it side by side (`SqliteEventStore`, `PostgresEventStore`) and
pass one conformance suite (`tests/conformance`). Code above the journal sees only this
protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ._events import AppendResult, Event, Lease, NewEvent, Snapshot, StreamAppend


@runtime_checkable
class EventStore(Protocol):
    """An append-only, optimistically concurrent, fenced event journal.

    Lifecycle: open with `await store.open()` (or `async with`), close with
    `await store.close()`; closing twice is harmless. Every method may raise
    `StoreUnavailableError` when the backend cannot be reached in bounded time, and
    `StoreCorruptError` when its files are damaged (then it writes nothing more).
    """

    #: A short description of where the data lives, safe to print (no password).
    url: str

    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent."""
        ...

    async def close(self) -> None:
        """Release connections and stop subscriptions; idempotent."""
        ...

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        epoch: int | None = None,
    ) -> AppendResult:
        """Append `events` atomically at the end of `stream_id`.

        Args:
            stream_id: The stream to append to; created on first append.
            events: One or more events, written all or none.
            expected_version: The version (last seq, 0 for an empty stream) the caller
                decided on; another version raises `ConcurrencyError`. None skips the
                check.
            epoch: The caller's lease epoch. A leased stream accepts only its current
                epoch; anything else raises `FencedError`, checked in the same
                transaction as the write.

        Raises:
            EventDataError: data that is not a JSON object of values every store holds
                (see `journal._json`), naming the path of the first bad value; or a
                stream id, type or metadata value with NUL or a lone surrogate.
            PayloadTooLargeError: an event above the store's payload limit.
            ConcurrencyError: the stream is not at `expected_version`.
            FencedError: a stale, missing or unknown epoch for a leased stream.
        """
        ...

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one transaction: all of them or none.

        Each stream is checked exactly as `append` checks it (its own
        `expected_version`, its own `epoch` against its own lease), in the same
        transaction as the whole write, so a conflict or a fence on any one stream
        raises and writes nothing on every stream. Readers never see part of it. The
        events take positions in the order of `appends`. Use it to commit a reaction
        together with the reader's own position (a choreographed saga's participant),
        or to move something between two streams.

        Returns:
            One `AppendResult` per stream, in the order of `appends`.

        Raises:
            ValueError: no streams, a stream without events, or a stream named twice.
            EventDataError, PayloadTooLargeError: as `append`, for any stream's events.
            FencedError, ConcurrencyError: for the first stream, in the order of
                `appends`, that refuses (its fencing checked before its version).
        """
        ...

    async def read_stream(
        self, stream_id: str, *, from_seq: int = 1, limit: int | None = None
    ) -> list[Event]:
        """Events of one stream with `seq >= from_seq`, in order (empty if none)."""
        ...

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """A page of the global log: events with `position > after`, in order."""
        ...

    async def read_indexed(
        self, types: Sequence[str], *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """A page of the global log holding only indexed events of the given types.

        Only events appended with `indexed=True` are in the index, so projections
        that care about a few event types (the list of runs and their statuses, say)
        need not scan the whole log, and other appends do not pay for the index.
        """
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last seq, 0 if it has no events."""
        ...

    async def head_position(self) -> int:
        """The largest global position committed, 0 for an empty store."""
        ...

    def subscribe(self, *, after: int = 0) -> AsyncIterator[Event]:
        """Tail the global log from `after`, forever, never skipping an event.

        Close the iterator (or cancel the task consuming it) to stop.
        """
        ...

    async def save_snapshot(self, stream_id: str, version: int, state: Mapping[str, Any]) -> None:
        """Store `state` as the stream's folded state up to `version`."""
        ...

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The latest snapshot of the stream, or None."""
        ...

    async def acquire_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Take the stream's lease if it is free or expired (or already `owner`'s).

        A new holder gets an epoch strictly larger than every earlier one.

        Raises:
            LeaseHeldError: another owner holds a live lease.
        """
        ...

    async def take_over_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Take the lease at once, live or not, with a strictly larger epoch."""
        ...

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend a lease still held at its epoch.

        Raises:
            FencedError: the lease was taken over (its epoch is no longer current).
        """
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up so the next acquirer need not wait for expiry.

        Raises:
            FencedError: the lease was already taken over.
        """
        ...

    async def get_lease(self, stream_id: str) -> Lease | None:
        """The stream's current lease (possibly expired), or None if never leased."""
        ...
