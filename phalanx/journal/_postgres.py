"""The shared journal: PostgreSQL, for many worker processes on many machines.

Commit order equals position order, by construction. Every append allocates its
positions from a one-row counter (`phalanx_position`) with `UPDATE ... SET value =
value + n` inside its transaction. The row lock that takes is held until COMMIT, so
appends are serialised store-wide and no later position can become visible before an
earlier one; a subscriber reading "position > last seen" therefore never skips an
event. The rejected alternative, a sequence, lets appends run in parallel but commit
out of order: a reader that saw position N+1 while N was still uncommitted would skip
N for good, and closing that gap means readers tracking in-flight transactions.
The price: one append commits at a time, store-wide, so throughput is bounded by the
server's commit (WAL flush) latency, hundreds to a few thousand appends a second.
That suits agent workloads, whose appends are few next to model calls. Each append
is one round trip (the `phalanx_append` function, holding the lock only from its
counter update to its COMMIT), and appending several events at once amortises it.

The same lock settles lease races. An append takes the counter, then a key-share lock
on the stream's lease row, so a take-over (FOR UPDATE on that row) and an append are
strictly ordered and the fencing check cannot go stale before COMMIT. A stream's first
lease has no row to lock yet, so its acquirers take the counter lock instead.

Timestamps come from the store's `Clock`, not the server's, as in every store. If the
server goes away mid-call the caller gets `StoreUnavailableError` within the connect
or command timeout; an append interrupted like this may or may not have committed, so
retry it with `expected_version` to find out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import asyncpg
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "the PostgreSQL store needs asyncpg: pip install 'phalanx[postgres]'", name=exc.name
    ) from exc

from .._clock import Clock, SystemClock
from .._errors import (
    ConcurrencyError,
    FencedError,
    PhalanxError,
    StoreCorruptError,
    StoreUnavailableError,
)
from ._events import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    AppendResult,
    Event,
    Lease,
    NewEvent,
    Snapshot,
    encode_state,
)
from ._leases import check_append_epoch, check_holder, decide_acquire
from ._rows import EVENT_COLUMNS, decode_row, decode_snapshot, event_rows
from ._subscription import Notifier, tail
from ._url import url_error

logger = logging.getLogger("phalanx")

T = TypeVar("T")

_Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
_Listener: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

#: The NOTIFY channel appends wake subscribers on; the payload is the schema name.
CHANNEL = "phalanx_events"

# A plain identifier, so quoting it is the only escaping needed; PostgreSQL reserves pg_*.
_SCHEMA = re.compile(r"^(?!pg_)[a-z_][a-z0-9_]{0,62}$")

# SQLSTATEs raised by phalanx_append; class "PX" is unused by PostgreSQL.
_CONFLICT = "PX001"
_FENCED = "PX002"

# SQLSTATEs of damaged data (data_corrupted, index_corrupted): StoreCorruptError.
_CORRUPT = ("XX001", "XX002")

# How long subscribers rely on polling alone after LISTEN could not be set up.
_LISTEN_RETRY_SECONDS = 5.0

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        position    BIGINT PRIMARY KEY,
        stream_id   TEXT NOT NULL,
        seq         BIGINT NOT NULL,
        type        TEXT NOT NULL,
        data        TEXT NOT NULL,
        epoch       BIGINT,
        recorded_at DOUBLE PRECISION NOT NULL,
        run_id      TEXT,
        agent_id    TEXT,
        parent_id   TEXT,
        trace_id    TEXT,
        span_id     TEXT,
        indexed     BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (stream_id, seq)
    );
    CREATE TABLE leases (
        stream_id  TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        epoch      BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE snapshots (
        stream_id   TEXT PRIMARY KEY,
        version     BIGINT NOT NULL,
        state       TEXT NOT NULL,
        recorded_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE phalanx_position (
        id    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
        value BIGINT NOT NULL
    );
    INSERT INTO phalanx_position (id, value) VALUES (TRUE, 0);
    CREATE INDEX events_indexed ON events (type, position) WHERE indexed;

    -- One round trip per append. The rules mirror _leases.check_append_epoch and the
    -- expected-version check of the SQLite store; refusals carry the current number
    -- in DETAIL so Python can raise the same errors with the same fields.
    CREATE FUNCTION phalanx_append(
        p_stream_id text,
        p_expected_version bigint,
        p_epoch bigint,
        p_recorded_at double precision,
        p_types text[],
        p_datas text[],
        p_run_ids text[],
        p_agent_ids text[],
        p_parent_ids text[],
        p_trace_ids text[],
        p_span_ids text[],
        p_indexed boolean[],
        OUT new_version bigint,
        OUT last_position bigint
    ) LANGUAGE plpgsql AS $fn$
    DECLARE
        n integer := cardinality(p_types);
        lease_epoch bigint;
        old_version bigint;
    BEGIN
        -- The counter's row lock, held until COMMIT, is what makes commit order
        -- equal position order (see the module docstring of _postgres.py).
        UPDATE phalanx_position SET value = value + n RETURNING value INTO last_position;
        SELECT l.epoch INTO lease_epoch FROM leases AS l
            WHERE l.stream_id = p_stream_id FOR KEY SHARE;
        IF lease_epoch IS DISTINCT FROM p_epoch THEN
            RAISE EXCEPTION 'fenced out of stream %', p_stream_id
                USING ERRCODE = 'PX002', DETAIL = coalesce(lease_epoch::text, '');
        END IF;
        SELECT coalesce(max(e.seq), 0) INTO old_version FROM events AS e
            WHERE e.stream_id = p_stream_id;
        IF p_expected_version IS NOT NULL AND p_expected_version <> old_version THEN
            RAISE EXCEPTION 'stream % is at another version', p_stream_id
                USING ERRCODE = 'PX001', DETAIL = old_version::text;
        END IF;
        INSERT INTO events (position, stream_id, seq, type, data, epoch, recorded_at,
                            run_id, agent_id, parent_id, trace_id, span_id, indexed)
        SELECT last_position - n + i, p_stream_id, old_version + i, p_types[i], p_datas[i],
               p_epoch, p_recorded_at, p_run_ids[i], p_agent_ids[i], p_parent_ids[i],
               p_trace_ids[i], p_span_ids[i], p_indexed[i]
        FROM generate_series(1, n) AS i;
        PERFORM pg_notify('phalanx_events', coalesce(current_schema(), ''));
        new_version := old_version + n;
    END
    $fn$;
    """,
)

_SELECT = f"SELECT {EVENT_COLUMNS} FROM events"
_APPEND = (
    "SELECT new_version, last_position"
    " FROM phalanx_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)
_LEASE = "SELECT owner, epoch, expires_at FROM leases WHERE stream_id = $1"


def _split_dsn(dsn: str) -> tuple[str, str | None, str]:
    """Split `?schema=` off a DSN: (DSN for asyncpg, schema or None, printable URL).

    Raises:
        ConfigError: a schema name that is not a plain lower-case identifier.
    """
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
    masked = [(k, "***" if k == "password" else v) for k, v in query]
    url = urlunsplit(parts._replace(netloc=netloc, query=urlencode(masked)))
    schemas = [v for k, v in query if k == "schema"]
    if not schemas:
        return dsn, None, url
    schema = schemas[-1]
    if not _SCHEMA.match(schema):
        raise url_error(
            url,
            f"schema {schema!r} must be 1-63 lower-case letters, digits and underscores, "
            "not starting with a digit or pg_",
        )
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema, url


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Skip asyncpg's reset query on release; the store leaves no session state.

    asyncpg still rolls back an open transaction first. Its default reset (unlock
    advisory locks, CLOSE ALL, UNLISTEN, RESET ALL) adds a round trip to every call
    (reads took 1.7x as long with it), and undoes nothing this store does: it takes
    only transaction-scoped locks and settings and listens on a connection of its own.
    """


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
        self._dsn, self.schema, self.url = _split_dsn(dsn)
        self.max_payload_bytes = max_payload_bytes
        self._clock: Clock = clock or SystemClock()
        self._min_pool = min_pool
        self._max_pool = max_pool
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        # Waiting for a pooled connection covers connecting plus, when every
        # connection is busy, one command finishing elsewhere.
        self._acquire_timeout = connect_timeout + command_timeout
        self._settings = {} if self.schema is None else {"search_path": f'"{self.schema}"'}
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._open_lock = asyncio.Lock()
        self._notifier = Notifier()
        self._listener: _Listener | None = None
        self._listen_lock = asyncio.Lock()
        self._listen_retry_at = 0.0

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
                            reset=_keep_session,
                        )
                except (OSError, asyncpg.PostgresError) as exc:
                    raise self._unavailable(exc) from exc
                try:
                    await self._with_connection(pool, self._migrate)
                except BaseException:
                    pool.terminate()
                    raise
            except ValueError as exc:  # a DSN asyncpg cannot parse (ClientConfigurationError)
                raise url_error(self.url, str(exc)) from exc
            self._pool = pool

    async def _migrate(self, conn: _Conn) -> None:
        # The advisory lock makes concurrent openers (many workers starting at once)
        # take turns; each later one finds the schema current and does nothing.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._migration_key())
            if self.schema is not None:
                quoted = f'"{self.schema}"'
                # Look before creating: CREATE SCHEMA IF NOT EXISTS still demands the
                # CREATE privilege on the database, which a deployed role may lack.
                found = await conn.fetchval(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema
                )
                if not found:
                    await conn.execute(f"CREATE SCHEMA {quoted}")
                await conn.execute(f"SET LOCAL search_path TO {quoted}")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            for version, script in enumerate(_MIGRATIONS[current:], start=current + 1):
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    def _migration_key(self) -> int:
        digest = hashlib.blake2b(f"phalanx-migrate:{self.schema or ''}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)

    async def close(self) -> None:
        """Close the pool and the LISTEN connection; idempotent, never hangs."""
        async with self._open_lock:
            pool, self._pool = self._pool, None
            listener, self._listener = self._listener, None
            if listener is not None:
                try:
                    await listener.close(timeout=self._command_timeout)
                except Exception:  # the server is gone or slow: drop the socket instead
                    listener.terminate()
            if pool is not None:
                try:
                    async with asyncio.timeout(self._command_timeout):
                        await pool.close()
                except Exception:
                    # pool.close() terminates every connection itself when it fails.
                    logger.debug("closed the pool of %s by force", self.url)

    # -- connections ----------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        if isinstance(exc, TimeoutError) and not str(exc):
            reason = "no answer in time (connect_timeout / command_timeout)"
        else:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        return StoreUnavailableError(store=self.url, reason=reason)

    async def _with_connection(
        self, pool: asyncpg.Pool[asyncpg.Record], op: Callable[[_Conn], Awaitable[T]]
    ) -> T:
        """Run `op` on a pooled connection, turning "server gone" into our error.

        A failed call cannot poison the pool: asyncpg discards a connection that
        died or failed its release, and the next acquire connects afresh.
        """
        try:
            try:
                async with asyncio.timeout(self._acquire_timeout):
                    conn = await pool.acquire()
            except TimeoutError as exc:
                reason = (
                    f"no connection within the {self._connect_timeout:g}s connect timeout"
                    f" (or no free pooled one within {self._acquire_timeout:g}s)"
                )
                raise StoreUnavailableError(store=self.url, reason=reason) from exc
            try:
                return await op(conn)
            except asyncpg.InternalClientError as exc:
                # The connection's protocol state broke (seen as the server shut down
                # mid-call): drop it, and report the store unavailable like any outage.
                conn.terminate()
                raise self._unavailable(exc) from exc
            finally:
                try:
                    await pool.release(conn, timeout=self._command_timeout)
                except Exception as exc:
                    # The pool has already terminated the connection; what the caller
                    # needs is the operation's own outcome, not the cleanup's.
                    logger.debug("dropped a broken connection to %s: %s", self.url, exc)
        except PhalanxError:
            raise
        except asyncpg.PostgresError as exc:
            if exc.sqlstate in _CORRUPT:
                raise StoreCorruptError(store=self.url, reason=str(exc)) from exc
            raise self._unavailable(exc) from exc
        except OSError as exc:  # TimeoutError is an OSError
            raise self._unavailable(exc) from exc
        except asyncpg.InterfaceError as exc:
            if "closed" not in str(exc) and "closing" not in str(exc):
                raise
            raise self._unavailable(exc) from exc

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
        columns = list(zip(*rows, strict=True))
        args = (
            stream_id,
            expected_version,
            epoch,
            now,
            *(list(columns[i]) for i in (2, 3, 6, 7, 8, 9, 10, 11)),
        )
        hook = self._before_commit

        async def op(conn: _Conn) -> AppendResult:
            try:
                if hook is None:
                    row = await conn.fetchrow(_APPEND, *args)
                else:
                    async with conn.transaction():
                        row = await conn.fetchrow(_APPEND, *args)
                        await hook()
            except asyncpg.PostgresError as exc:
                self._refuse(exc, stream_id, expected_version, epoch)
                raise
            if row is None:  # the function always returns one row
                raise StoreUnavailableError(
                    store=self.url, reason="phalanx_append returned nothing"
                )
            return AppendResult(int(row[0]), int(row[1]))

        result = await self._run(op)
        self._notifier.notify()
        return result

    @staticmethod
    def _refuse(
        exc: asyncpg.PostgresError,
        stream_id: str,
        expected_version: int | None,
        epoch: int | None,
    ) -> None:
        """Raise the domain error for a refused append, if it is one."""
        if exc.sqlstate == _FENCED:
            try:
                check_append_epoch(stream_id, int(exc.detail) if exc.detail else None, epoch)
            except FencedError as fenced:
                raise fenced from exc
        if exc.sqlstate == _CONFLICT and expected_version is not None:
            actual = int(exc.detail or 0)
            raise ConcurrencyError(
                stream_id=stream_id, expected_version=expected_version, actual_version=actual
            ) from exc

    async def read_stream(
        self, stream_id: str, *, from_seq: int = 1, limit: int | None = None
    ) -> list[Event]:
        """Events of one stream from `from_seq`, in order."""
        sql = f"{_SELECT} WHERE stream_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3"
        rows = await self._run(lambda c: c.fetch(sql, stream_id, from_seq, limit))
        return [decode_row(tuple(r)) for r in rows]

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """A page of the global log after `after`."""
        sql = f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"
        rows = await self._run(lambda c: c.fetch(sql, after, limit))
        return [decode_row(tuple(r)) for r in rows]

    async def read_indexed(
        self, types: Sequence[str], *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """A page of the indexed events of `types`."""
        if not types:
            return []
        sql = (
            f"{_SELECT} WHERE indexed AND type = ANY($1::text[]) AND position > $2"
            " ORDER BY position LIMIT $3"
        )
        rows = await self._run(lambda c: c.fetch(sql, list(types), after, limit))
        return [decode_row(tuple(r)) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last seq, 0 if empty."""
        sql = "SELECT coalesce(max(seq), 0) FROM events WHERE stream_id = $1"
        return int(await self._run(lambda c: c.fetchval(sql, stream_id)))

    async def head_position(self) -> int:
        """The largest committed position."""
        sql = "SELECT coalesce(max(position), 0) FROM events"
        return int(await self._run(lambda c: c.fetchval(sql)))

    def subscribe(self, *, after: int = 0) -> AsyncIterator[Event]:
        """Tail the global log after `after`; see `EventStore.subscribe`."""
        return tail(self._read_page, self._notifier, after=after)

    async def _read_page(self, after: int, limit: int) -> list[Event]:
        # LISTEN before reading, so an append committed after this read wakes us.
        await self._ensure_listener()
        return await self.read_all(after=after, limit=limit)

    async def _ensure_listener(self) -> None:
        """Keep one LISTEN connection open; on failure, subscribers simply poll."""
        if self._pool is None or (self._listener is not None and not self._listener.is_closed()):
            return
        if self._clock.monotonic() < self._listen_retry_at:
            return
        async with self._listen_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            conn: _Listener | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                    server_settings=self._settings,
                )
                await conn.add_listener(CHANNEL, self._on_notification)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if conn is not None:
                    conn.terminate()
                self._listen_retry_at = self._clock.monotonic() + _LISTEN_RETRY_SECONDS
                logger.warning(
                    "cannot LISTEN on %s (%s); subscribers poll until it is back", self.url, exc
                )
                return
            if self._pool is None:  # closed while we connected
                conn.terminate()
                return
            conn.add_termination_listener(self._on_listener_lost)
            self._listener = conn

    def _on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        # Every schema's appends share one channel; wake only for our own.
        if self.schema is None or payload == self.schema:
            self._notifier.notify()

    def _on_listener_lost(self, conn: object) -> None:
        if conn is self._listener:
            self._listener = None
            logger.info("lost the LISTEN connection to %s; subscribers poll meanwhile", self.url)

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
        sql = f"{_LEASE} FOR UPDATE" if lock else _LEASE
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

    async def _acquire(self, stream_id: str, owner: str, ttl: float, force: bool) -> Lease:
        now = self._clock.now()

        async def txn(conn: _Conn) -> Lease:
            current = await self._lease_row(conn, stream_id, lock=True)
            if current is None:
                # No row to lock yet. The counter lock orders this first lease against
                # other first acquirers (who then see our row) and against appends
                # (which take it before reading the lease), as the row lock would.
                await conn.execute("SELECT value FROM phalanx_position FOR UPDATE")
                current = await self._lease_row(conn, stream_id, lock=True)
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
        renewed = Lease(lease.stream_id, lease.owner, lease.epoch, self._clock.now() + ttl)

        async def txn(conn: _Conn) -> Lease:
            check_holder(await self._lease_row(conn, lease.stream_id, lock=True), lease)
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
