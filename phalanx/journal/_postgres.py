"""The shared journal: PostgreSQL, for many worker processes on many machines.

Appends to different streams run in parallel; subscribers still never skip an event.
A position is `(xid << 20) + k`: the appending transaction's id, then its k-th event
(a transaction may append to several streams, `append_many`). Commits happen in any
order, so readers stop at a watermark: below the oldest transaction id still in flight
in this schema's sessions (they carry `application_name` `phalanx:SCHEMA`; see
`phalanx_watermark`). Every event a reader returns was written by a transaction that
had ended when the reader looked, and every transaction that ends later has a larger
id than the watermark, hence larger positions: a reader of "position > last seen"
never skips a late commit. The price: an event becomes visible to `read_all`,
`read_indexed`, `head_position` and subscriptions only once every appender that
started before it ended (milliseconds; a transaction of this schema left open stalls
readers, never loses events). `read_stream` is not affected. Positions are sparse.
Rejected: a counter row locked per append (the former design: commit order equals
position order, but one append commits at a time, store-wide), and a sequence alone
(a reader that saw N+1 while N was in flight skips N for good). For the watermark to
see every appender, all processes on a store use the same database role (another
role's `backend_xid` is hidden from `pg_stat_activity` without `pg_read_all_stats`).

Appends to one stream are serialised by a transaction-scoped advisory lock on the
stream, which a stream's first lease acquisition takes too (it has no lease row to
lock yet). An append also takes a key-share lock on the stream's lease row, so a
take-over (FOR UPDATE on that row) and an append are strictly ordered and the fencing
check cannot go stale before COMMIT. NOTIFY is sent after the append, once per burst
(`_pg_notify`), never inside it: a NOTIFYing transaction holds a cluster-wide lock
through its commit, which would serialise every append again.

Event timestamps come from the store's `Clock`, as in every store; lease expiry comes
from the server's clock (see `_lease_now`), so workers on many machines agree on it. If the
server goes away mid-call the caller gets `StoreUnavailableError` within the connect
or command timeout; an append interrupted like this may or may not have committed, so
retry it with `expected_version` to find out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

try:
    import asyncpg
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "the PostgreSQL store needs asyncpg: pip install 'phalanx[postgres]'", name=exc.name
    ) from exc

from .._clock import Clock, SystemClock
from .._errors import StoreUnavailableError
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
from ._leases import check_holder, decide_acquire
from ._pg_connect import Conn as _Conn
from ._pg_connect import keep_session, split_dsn, unavailable, with_connection
from ._pg_listen import Listener
from ._pg_notify import Announcer
from ._pg_schema import (
    APPEND,
    CHANNEL,
    HEAD,
    LEASE,
    READ_ALL,
    READ_INDEXED,
    SELECT,
    SERVER_NOW,
    STREAM_LOCK,
    migrate,
    refuse,
)
from ._rows import Row, batch_rows, decode_rows, decode_snapshot, event_rows
from ._subscription import Notifier, tail
from ._url import url_error

logger = logging.getLogger("phalanx")

T = TypeVar("T")


class PostgresEventStore:
    """The shared `EventStore`: PostgreSQL, for workers on many machines.

    Example::

        async with PostgresEventStore("postgresql://app@db/phalanx?schema=agents") as store:
            await store.append("orders-1", [NewEvent("Placed", {"sku": "x"})],
                               expected_version=0)

    `?schema=NAME` keeps phalanx's tables in their own schema, created on `open()`.
    Appends in any process wake every store's subscribers through LISTEN/NOTIFY;
    if that connection is lost, subscribers poll (within ~100 ms) until it is back.
    Every method raises `StoreUnavailableError` when the server cannot be reached
    within `connect_timeout` or does not answer within `command_timeout`; the next
    call after the server is back works again. `min_pool` is 0 by default: with a
    floor, asyncpg reconnects in the background after an outage and logs a full
    traceback at every failed try; without one, the next call simply connects.

    Raises:
        ConfigError: from the constructor, a malformed `?schema=`.
    """

    #: Test hook: awaited inside an append's transaction after its positions are
    #: allocated and before COMMIT, so a test can hold an append open there.
    _before_commit: Callable[[], Awaitable[None]] | None = None

    def __init__(
        self,
        dsn: str,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Clock | None = None,
        min_pool: int = 0,
        max_pool: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
    ) -> None:
        if not 0 <= min_pool <= max_pool or max_pool < 1:
            raise ValueError(f"need 0 <= min_pool <= max_pool >= 1, got {min_pool}, {max_pool}")
        self._dsn, self.schema, self.url = split_dsn(dsn)
        self.max_payload_bytes = max_payload_bytes
        self._clock: Clock = clock or SystemClock()
        self._min_pool = min_pool
        self._max_pool = max_pool
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        # Waiting for a pooled connection covers connecting plus, when every
        # connection is busy, one command finishing elsewhere.
        self._acquire_timeout = connect_timeout + command_timeout
        # TCP keepalives from the server: a client cut off mid-transaction (a network
        # partition) would otherwise hold its row locks (a lease row, say) until the
        # kernel's default of two hours; with these its session ends within ~25 s.
        self._settings = {
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "3",
        }
        if self.schema is not None:
            self._settings["search_path"] = f'"{self.schema}"'
        # How `phalanx_watermark` finds this schema's appenders among all sessions.
        self._settings["application_name"] = f"phalanx:{self.schema or ''}"[:63]
        self._announcer = Announcer(self)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._open_lock = asyncio.Lock()
        self._notifier = Notifier()
        self._listener = Listener(self, CHANNEL, self._notifier.notify, who="subscribers")

    async def __aenter__(self) -> PostgresEventStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, then create or migrate the schema; idempotent and safe to race."""
        async with self._open_lock:
            if self._pool is not None:
                return
            try:
                try:
                    async with asyncio.timeout(self._acquire_timeout):
                        pool = await asyncpg.create_pool(
                            self._dsn,
                            min_size=self._min_pool,
                            max_size=self._max_pool,
                            timeout=self._connect_timeout,
                            command_timeout=self._command_timeout,
                            server_settings=self._settings,
                            reset=keep_session,
                        )
                except (OSError, asyncpg.PostgresError) as exc:
                    raise unavailable(self.url, exc) from exc
                try:
                    await self._with_connection(pool, lambda c: migrate(c, self.schema))
                except BaseException:
                    pool.terminate()
                    raise
            except ValueError as exc:  # a DSN asyncpg cannot parse (ClientConfigurationError)
                raise url_error(self.url, str(exc)) from exc
            self._pool = pool

    async def close(self) -> None:
        """Close the pool and the LISTEN connection; idempotent, never hangs."""
        await self._announcer.stop()
        async with self._open_lock:
            pool, self._pool = self._pool, None
            await self._listener.close()
            if pool is not None:
                try:
                    async with asyncio.timeout(self._command_timeout):
                        await pool.close()
                except Exception:
                    # pool.close() terminates every connection itself when it fails.
                    logger.debug("closed the pool of %s by force", self.url)

    # -- connections ----------------------------------------------------------------

    async def _with_connection(
        self, pool: asyncpg.Pool[asyncpg.Record], op: Callable[[_Conn], Awaitable[T]]
    ) -> T:
        return await with_connection(
            pool,
            op,
            url=self.url,
            connect_timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            acquire_timeout=self._acquire_timeout,
        )

    async def _run(self, op: Callable[[_Conn], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreUnavailableError(store=self.url, reason="the store is not open")
        return await self._with_connection(pool, op)

    async def _transaction(self, op: Callable[[_Conn], Awaitable[T]]) -> T:
        async def txn(conn: _Conn) -> T:
            async with conn.transaction():
                return await op(conn)

        return await self._run(txn)

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
        now = self._clock.now()
        # Encode before any SQL: bad data is refused without touching the server.
        rows = event_rows(stream_id, events, 0, epoch, now, self.max_payload_bytes)
        part = StreamAppend(stream_id, events, expected_version, epoch)
        hook = self._before_commit

        async def op(conn: _Conn) -> AppendResult:
            if hook is None:
                return await self._call_append(conn, part, rows, now)
            async with conn.transaction():
                result = await self._call_append(conn, part, rows, now)
                await hook()
            return result

        result = await self._run(op)
        self._appended()
        return result

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one transaction; see `EventStore.append_many`.

        One `phalanx_append` call per stream inside one transaction, so every rule of
        a single append (the counter lock, fencing, the version check) holds per
        stream, and a refusal on any stream rolls all of them back. It costs a round
        trip per stream (plus BEGIN and COMMIT); a set-based function for the whole
        batch would save those but state the append rules twice in PL/pgSQL.
        """
        now = self._clock.now()
        batch = batch_rows(appends, now, self.max_payload_bytes)
        hook = self._before_commit

        async def op(conn: _Conn) -> list[AppendResult]:
            async with conn.transaction():
                results = [
                    await self._call_append(conn, part, rows, now)
                    for part, rows in zip(appends, batch, strict=True)
                ]
                if hook is not None:
                    await hook()
            return results

        results = await self._run(op)
        self._appended()
        return results

    async def _call_append(
        self, conn: _Conn, part: StreamAppend, rows: list[Row], now: float
    ) -> AppendResult:
        """One `phalanx_append` call: one stream's checks and inserts, one round trip."""
        columns = list(zip(*rows, strict=True))
        args = (
            part.stream_id,
            part.expected_version,
            part.epoch,
            now,
            *(list(columns[i]) for i in (2, 3, 6, 7, 8, 9, 10, 11)),
        )
        try:
            row = await conn.fetchrow(APPEND, *args)
        except asyncpg.PostgresError as exc:
            refuse(exc, part.stream_id, part.expected_version, part.epoch)
            raise
        if row is None:  # the function always returns one row
            raise StoreUnavailableError(store=self.url, reason="phalanx_append returned nothing")
        return AppendResult(int(row[0]), int(row[1]))

    def _appended(self) -> None:
        """Wake this store's subscribers now, and other processes' by a NOTIFY soon."""
        self._notifier.notify()
        self._announcer.poke(CHANNEL)

    async def read_stream(
        self, stream_id: str, *, from_seq: int = 1, limit: int | None = None
    ) -> list[Event]:
        """Events of one stream from `from_seq`, in order."""
        sql = f"{SELECT} WHERE stream_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3"
        rows = await self._run(lambda c: c.fetch(sql, stream_id, from_seq, limit))
        return decode_rows(tuple(r) for r in rows)

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """A page of the global log after `after`, below the watermark (see the module)."""
        rows = await self._run(lambda c: c.fetch(READ_ALL, after, limit))
        return decode_rows(tuple(r) for r in rows)

    async def read_indexed(
        self, types: Sequence[str], *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """A page of the indexed events of `types`, below the watermark."""
        if not types:
            return []
        rows = await self._run(lambda c: c.fetch(READ_INDEXED, list(types), after, limit))
        return decode_rows(tuple(r) for r in rows)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last seq, 0 if empty."""
        sql = "SELECT coalesce(max(seq), 0) FROM events WHERE stream_id = $1"
        return int(await self._run(lambda c: c.fetchval(sql, stream_id)))

    async def head_position(self) -> int:
        """The largest position a reader may pass now (below the watermark)."""
        return int(await self._run(lambda c: c.fetchval(HEAD)))

    def subscribe(self, *, after: int = 0) -> AsyncIterator[Event]:
        """Tail the global log after `after`; see `EventStore.subscribe`."""
        return tail(self._read_page, self._notifier, after=after, clock=self._clock)

    async def _read_page(self, after: int, limit: int) -> list[Event]:
        # LISTEN before reading, so an append committed after this read wakes us.
        if self._pool is not None:
            await self._listener.ensure()
        return await self.read_all(after=after, limit=limit)

    # -- snapshots ------------------------------------------------------------------

    async def save_snapshot(self, stream_id: str, version: int, state: Mapping[str, Any]) -> None:
        """Store the stream's state up to `version`, replacing an older snapshot."""
        text = encode_state(stream_id, state, self.max_payload_bytes)
        now = self._clock.now()
        sql = (
            "INSERT INTO snapshots (stream_id, version, state, recorded_at) VALUES ($1,$2,$3,$4)"
            " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version,"
            " state = excluded.state, recorded_at = excluded.recorded_at"
            " WHERE excluded.version >= snapshots.version"
        )
        await self._run(lambda c: c.execute(sql, stream_id, version, text, now))

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The stream's latest snapshot, or None."""
        sql = "SELECT version, state, recorded_at FROM snapshots WHERE stream_id = $1"
        row = await self._run(lambda c: c.fetchrow(sql, stream_id))
        if row is None:
            return None
        return decode_snapshot(stream_id, row[0], row[1], row[2])

    # -- leases ---------------------------------------------------------------------

    @staticmethod
    async def _lease_row(conn: _Conn, stream_id: str, *, lock: bool) -> Lease | None:
        sql = f"{LEASE} FOR UPDATE" if lock else LEASE
        row = await conn.fetchrow(sql, stream_id)
        return None if row is None else Lease(stream_id, row[0], int(row[1]), float(row[2]))

    @staticmethod
    async def _put_lease(conn: _Conn, lease: Lease) -> None:
        await conn.execute(
            "INSERT INTO leases (stream_id, owner, epoch, expires_at) VALUES ($1,$2,$3,$4)"
            " ON CONFLICT (stream_id) DO UPDATE SET owner = excluded.owner,"
            " epoch = excluded.epoch, expires_at = excluded.expires_at",
            lease.stream_id,
            lease.owner,
            lease.epoch,
            lease.expires_at,
        )

    async def _lease_now(self, conn: _Conn) -> float:
        """Now, for lease expiry: the server's clock, which every worker shares.

        One machine's clock running ahead must not make it see other workers' live
        leases as expired. A store on virtual time (a `Clock` whose `virtual` is true:
        tests, simulations) keeps its leases on that time, which no server can follow.
        """
        if getattr(self._clock, "virtual", False):
            return self._clock.now()
        return float(await conn.fetchval(SERVER_NOW))

    async def _acquire(self, stream_id: str, owner: str, ttl: float, force: bool) -> Lease:
        async def txn(conn: _Conn) -> Lease:
            current = await self._lease_row(conn, stream_id, lock=True)
            if current is None:
                # No row to lock yet. The stream's advisory lock orders this first lease
                # against other first acquirers (who then see our row) and against
                # appends (which take it before reading the lease), as the row lock would.
                await conn.execute(STREAM_LOCK, stream_id)
                current = await self._lease_row(conn, stream_id, lock=True)
            now = await self._lease_now(conn)  # after the lock: no stale "now"
            lease = decide_acquire(current, stream_id, owner, now, ttl, force=force)
            await self._put_lease(conn, lease)
            return lease

        return await self._transaction(txn)

    async def acquire_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Take a free or expired lease; see `EventStore.acquire_lease`."""
        return await self._acquire(stream_id, owner, ttl, False)

    async def take_over_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Take the lease now with a larger epoch."""
        return await self._acquire(stream_id, owner, ttl, True)

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend a lease still held at its epoch."""

        async def txn(conn: _Conn) -> Lease:
            check_holder(await self._lease_row(conn, lease.stream_id, lock=True), lease)
            now = await self._lease_now(conn)
            renewed = Lease(lease.stream_id, lease.owner, lease.epoch, now + ttl)
            await self._put_lease(conn, renewed)
            return renewed

        return await self._transaction(txn)

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up, keeping its epoch so the next holder's is larger."""

        async def txn(conn: _Conn) -> None:
            check_holder(await self._lease_row(conn, lease.stream_id, lock=True), lease)
            await self._put_lease(conn, Lease(lease.stream_id, "", lease.epoch, 0.0))

        await self._transaction(txn)

    async def get_lease(self, stream_id: str) -> Lease | None:
        """The stream's lease row, or None."""
        return await self._run(lambda c: self._lease_row(c, stream_id, lock=False))
