"""The in-memory journal (`memory://`): the full `EventStore` protocol, NOT durable.

Everything lives in this process's memory and is gone when the process exits, so use
it for tests, benchmarks, simulations and throw-away runs, never for work that must
survive a crash: `phalanx resume` in another process cannot see these runs.

`memory://` (no name) is a fresh, private database for each store built from it.
`memory://NAME` names a database shared by every store opened on that name in this
process, from any thread, for as long as the process lives (as SQLite's shared-cache
`file:NAME?mode=memory` does): several runtimes, or racing threads, meet there.

Rows are kept exactly as the SQL stores keep them (data as encoded JSON text) and
decoded with the same `decode_row`, so every read returns fresh objects, bad data is
refused alike, and the protocol's rules (expected versions, fencing epochs, leases,
snapshots) come from the same shared code. Each operation runs under one lock with no
await inside, so operations are atomic and commit order is position order. Appends
wake subscribers of every store on the database at once (on their own event loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from .._clock import Clock, SystemClock
from .._errors import ConcurrencyError, StoreUnavailableError
from ._events import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    AppendResult,
    Event,
    Lease,
    NewEvent,
    Snapshot,
    StreamAppend,
    encode_state,
)
from ._leases import check_append_epoch, check_holder, decide_acquire
from ._rows import Row, batch_rows, decode_rows, decode_snapshot, event_rows
from ._subscription import Notifier, tail

#: The URL scheme of the in-memory store.
MEMORY_SCHEME = "memory"


class MemoryDatabase:
    """The tables of one in-memory journal; shared by the stores opened on it.

    `rows[i]` is the event at global position i+1, laid out as `decode_row` reads it.
    Every method takes the lock for its whole (synchronous) body.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[Row] = []
        self.streams: dict[str, list[int]] = {}  # stream id -> positions, in seq order
        self.indexed: dict[str, list[int]] = {}  # event type -> positions of indexed events
        self.leases: dict[str, Lease] = {}
        self.snapshots: dict[str, tuple[int, str, float]] = {}
        # By joining order, not by address: wake-ups replay alike under simulation.
        self.stores: weakref.WeakValueDictionary[int, MemoryEventStore] = (
            weakref.WeakValueDictionary()
        )
        self.joined = itertools.count()
        #: Subscriptions open on this database (appends wake subscribers only if any).
        self.tailing = 0

    def events(self) -> list[Event]:
        """Every event, in position order (for simulations that inspect a whole world)."""
        with self.lock:
            rows = list(self.rows)
        return decode_rows(rows)


_named: dict[str, MemoryDatabase] = {}
_named_lock = threading.Lock()


def named_database(name: str) -> MemoryDatabase:
    """The process-wide database called `name`, created on first use."""
    with _named_lock:
        return _named.setdefault(name, MemoryDatabase())


def _check_stream(
    db: MemoryDatabase, stream_id: str, expected_version: int | None, epoch: int | None
) -> int:
    """The stream's version, once its fence and `expected_version` allow a write."""
    lease = db.leases.get(stream_id)
    check_append_epoch(stream_id, None if lease is None else lease.epoch, epoch)
    positions = db.streams.get(stream_id)
    version = 0 if positions is None else len(positions)
    if expected_version is not None and expected_version != version:
        raise ConcurrencyError(
            stream_id=stream_id, expected_version=expected_version, actual_version=version
        )
    return version


def _write_stream(
    db: MemoryDatabase, stream_id: str, version: int, rows: list[Row]
) -> AppendResult:
    """Add a checked stream's rows at the end of the log (the caller holds the lock)."""
    positions = db.streams.setdefault(stream_id, [])
    first = len(db.rows) + 1
    for offset, row in enumerate(rows):
        position = first + offset
        # (position, stream_id, seq, type, data, epoch, recorded_at, metadata...)
        db.rows.append((position, stream_id, version + 1 + offset, *row[2:11]))
        positions.append(position)
        if row[11]:
            db.indexed.setdefault(row[2], []).append(position)
    return AppendResult(version + len(rows), first + len(rows) - 1)


class MemoryEventStore:
    """An `EventStore` held in this process's memory: fast, complete and NOT durable.

    Example::

        async with MemoryEventStore() as store:
            await store.append("orders-1", [NewEvent("Placed", {"sku": "x"})],
                               expected_version=0)

    Args:
        database: The tables to use; a fresh private one by default (see
            `named_database` for one shared by name, which `memory://NAME` uses).
        max_payload_bytes: The largest encoded event data accepted.
        clock: Stamps events and decides lease expiry.

    Lifecycle as every store: `open()`, `close()` (both idempotent); closing a store
    keeps its database's contents for other stores and later opens.
    """

    def __init__(
        self,
        database: MemoryDatabase | None = None,
        *,
        name: str = "",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self.url = f"memory://{name}"
        self.max_payload_bytes = max_payload_bytes
        self._db = database or MemoryDatabase()
        self._clock: Clock = clock or SystemClock()
        self._notifier = Notifier()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._joined = next(self._db.joined)

    async def __aenter__(self) -> MemoryEventStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Join the database; idempotent."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            with self._db.lock:
                self._db.stores[self._joined] = self

    async def close(self) -> None:
        """Leave the database (its contents stay); idempotent."""
        if self._loop is not None:
            self._loop = None
            with self._db.lock:
                self._db.stores.pop(self._joined, None)
            self._notifier.notify()

    def _open_db(self) -> MemoryDatabase:
        if self._loop is None:
            raise StoreUnavailableError(store=self.url, reason="the store is not open")
        return self._db

    def _wake_subscribers(self) -> None:
        if not self._db.tailing:
            return  # nobody subscribed: the common case, kept to one attribute read
        # Stores on other threads have their own loops: hand them the wake-up there.
        here = self._loop
        with self._db.lock:
            stores = list(self._db.stores.values())
        for store in stores:
            loop = store._loop
            if loop is here:
                store._notifier.notify()
            elif loop is not None and not loop.is_closed():
                # RuntimeError: that loop closed meanwhile, and has nobody to wake.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(store._notifier.notify)

    # -- events ---------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        epoch: int | None = None,
    ) -> AppendResult:
        """Append atomically; see `EventStore.append`."""
        if not events:
            raise ValueError("append needs at least one event")
        db = self._open_db()
        rows = event_rows(stream_id, events, 0, epoch, self._clock.now(), self.max_payload_bytes)
        with db.lock:
            version = _check_stream(db, stream_id, expected_version, epoch)
            result = _write_stream(db, stream_id, version, rows)
        self._wake_subscribers()
        return result

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams at once; see `EventStore.append_many`."""
        db = self._open_db()
        batch = batch_rows(appends, self._clock.now(), self.max_payload_bytes)
        with db.lock:
            # Every check before any write: a refusal leaves nothing to roll back.
            versions = [
                _check_stream(db, a.stream_id, a.expected_version, a.epoch) for a in appends
            ]
            results = [
                _write_stream(db, a.stream_id, version, rows)
                for a, version, rows in zip(appends, versions, batch, strict=True)
            ]
        self._wake_subscribers()
        return results

    async def read_stream(
        self, stream_id: str, *, from_seq: int = 1, limit: int | None = None
    ) -> list[Event]:
        """Events of one stream from `from_seq`, in order."""
        db = self._open_db()
        with db.lock:
            positions = db.streams.get(stream_id, ())
            start = max(from_seq, 1) - 1
            stop = None if limit is None else start + max(limit, 0)
            rows = [db.rows[p - 1] for p in positions[start:stop]]
        return decode_rows(rows)

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """A page of the global log after `after`."""
        db = self._open_db()
        with db.lock:
            start = max(after, 0)
            rows = db.rows[start : start + max(limit, 0)]
        return decode_rows(rows)

    async def read_indexed(
        self, types: Sequence[str], *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """A page of the indexed events of `types`."""
        db = self._open_db()
        with db.lock:
            found = sorted(p for t in set(types) for p in db.indexed.get(t, ()) if p > after)
            rows = [db.rows[p - 1] for p in found[: max(limit, 0)]]
        return decode_rows(rows)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last seq, 0 if empty."""
        db = self._open_db()
        with db.lock:
            return len(db.streams.get(stream_id, ()))

    async def head_position(self) -> int:
        """The largest committed position."""
        db = self._open_db()
        with db.lock:
            return len(db.rows)

    def subscribe(self, *, after: int = 0) -> AsyncIterator[Event]:
        """Tail the global log after `after`; see `EventStore.subscribe`."""
        return self._tail(after)

    async def _tail(self, after: int) -> AsyncIterator[Event]:
        db = self._db
        with db.lock:
            db.tailing += 1
        try:
            async for event in tail(
                lambda pos, n: self.read_all(after=pos, limit=n),
                self._notifier,
                after=after,
                clock=self._clock,
            ):
                yield event
        finally:
            with db.lock:
                db.tailing -= 1

    # -- snapshots ------------------------------------------------------------------

    async def save_snapshot(self, stream_id: str, version: int, state: Mapping[str, Any]) -> None:
        """Store the stream's state up to `version`, replacing an older snapshot."""
        db = self._open_db()
        text = encode_state(stream_id, state, self.max_payload_bytes)
        now = self._clock.now()
        with db.lock:
            old = db.snapshots.get(stream_id)
            if old is None or version >= old[0]:
                db.snapshots[stream_id] = (version, text, now)

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The stream's latest snapshot, or None."""
        db = self._open_db()
        with db.lock:
            row = db.snapshots.get(stream_id)
        return None if row is None else decode_snapshot(stream_id, *row)

    # -- leases ---------------------------------------------------------------------

    async def _acquire(self, stream_id: str, owner: str, ttl: float, force: bool) -> Lease:
        db = self._open_db()
        now = self._clock.now()
        with db.lock:
            current = db.leases.get(stream_id)
            lease = decide_acquire(current, stream_id, owner, now, ttl, force=force)
            db.leases[stream_id] = lease
        return lease

    async def acquire_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Take a free or expired lease; see `EventStore.acquire_lease`."""
        return await self._acquire(stream_id, owner, ttl, False)

    async def take_over_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Take the lease now with a larger epoch."""
        return await self._acquire(stream_id, owner, ttl, True)

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend a lease still held at its epoch."""
        db = self._open_db()
        renewed = Lease(lease.stream_id, lease.owner, lease.epoch, self._clock.now() + ttl)
        with db.lock:
            check_holder(db.leases.get(lease.stream_id), lease)
            db.leases[lease.stream_id] = renewed
        return renewed

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up, keeping its epoch so the next holder's is larger."""
        db = self._open_db()
        with db.lock:
            check_holder(db.leases.get(lease.stream_id), lease)
            db.leases[lease.stream_id] = Lease(lease.stream_id, "", lease.epoch, 0.0)

    async def get_lease(self, stream_id: str) -> Lease | None:
        """The stream's lease, or None."""
        db = self._open_db()
        with db.lock:
            return db.leases.get(stream_id)
