"""The work queue on PostgreSQL: SKIP LOCKED claims, server-clock leases, LISTEN wake-ups.

See `_queue.py` for the protocol. The tables are created on `open()` under an advisory
lock (many workers start at once), apart from the store's own migrations: the queue
is an optional layer over the journal, and a store that never runs workers never has
them. Wake-ups ride on their own channel (`phalanx_work`), not the journal's
(`phalanx_events`, one NOTIFY per append), so a busy journal does not wake every idle
worker; a lost LISTEN connection only means workers fall back to their poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._errors import LeaseHeldError
from ._buckets import Bucket, RateLimit, check_rate, decide_take
from ._events import Lease
from ._leases import decide_acquire
from ._pg_connect import Conn
from ._pg_listen import Listener
from ._pg_schema import LEASE, NOW, SERVER_NOW
from ._queue import Claim, Submission, WorkerInfo, check_limit, within_limits

if TYPE_CHECKING:
    from ._postgres import PostgresEventStore

logger = logging.getLogger("phalanx")

CHANNEL = "phalanx_work"

_TABLES = """
CREATE TABLE IF NOT EXISTS work_queue (
    run_id       TEXT PRIMARY KEY,
    stream_id    TEXT NOT NULL,
    inbox_id     TEXT NOT NULL,
    queue        TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    submitted    BIGSERIAL,
    parked_inbox BIGINT,
    done         BOOLEAN NOT NULL DEFAULT FALSE
);
ALTER TABLE work_queue ADD COLUMN IF NOT EXISTS parked_until DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS work_queue_open ON work_queue (queue, priority DESC, submitted)
    WHERE NOT done;
CREATE TABLE IF NOT EXISTS queue_limits (
    queue       TEXT PRIMARY KEY,
    max_running INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_limits (
    key     TEXT PRIMARY KEY,
    rate    DOUBLE PRECISION NOT NULL,
    burst   DOUBLE PRECISION NOT NULL,
    tokens  DOUBLE PRECISION,
    updated DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    host      TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    queues    TEXT NOT NULL,
    runs      INTEGER NOT NULL,
    started   DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    ttl       DOUBLE PRECISION NOT NULL
);
"""


# Candidates, best first; the lease is decided again on the locked lease row below.
_CANDIDATES = """
SELECT q.run_id, q.stream_id, q.queue FROM work_queue AS q
LEFT JOIN leases AS l ON l.stream_id = q.stream_id
WHERE NOT q.done AND q.queue = ANY($1::text[]) AND NOT (q.run_id = ANY($4::text[]))
  AND (l.stream_id IS NULL OR l.owner = '' OR l.expires_at <= $2)
  AND EXISTS (SELECT 1 FROM events AS e WHERE e.stream_id = q.stream_id)
  AND (q.parked_inbox IS NULL OR q.parked_until <= $2 OR q.parked_inbox <
       (SELECT coalesce(max(e.seq), 0) FROM events AS e WHERE e.stream_id = q.inbox_id))
ORDER BY q.priority DESC, q.submitted
LIMIT $3
FOR UPDATE OF q SKIP LOCKED
"""


_LEASE_SKIP_LOCKED = f"{LEASE} FOR UPDATE SKIP LOCKED"


# Claimers of one limited queue take turns on its limit row. The room is counted by
# a later statement: one that waited for the lock would count with its old snapshot,
# blind to the leases the claimer before it just took.
_LOCK_LIMITS = """
SELECT queue FROM queue_limits WHERE queue = ANY($1::text[]) ORDER BY queue FOR UPDATE
"""
_ROOM = """
SELECT ql.queue, ql.max_running - (
    SELECT count(*) FROM work_queue AS q JOIN leases AS l ON l.stream_id = q.stream_id
    WHERE q.queue = ql.queue AND NOT q.done AND l.owner <> '' AND l.expires_at > $2)
FROM queue_limits AS ql WHERE ql.queue = ANY($1::text[])
"""


def _key(name: str) -> int:
    digest = hashlib.blake2b(f"phalanx-queue:{name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class PostgresWorkQueue:
    """The `WorkQueue` of a `PostgresEventStore` (shares its pool and its schema)."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self._woken = asyncio.Event()
        self._listener = Listener(store, CHANNEL, self._woken.set, who="workers")

    async def open(self) -> None:
        """Create the tables if missing (once, whoever races)."""

        async def txn(conn: Conn) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _key(self.store.schema or ""))
            await conn.execute(_TABLES)

        await self.store._transaction(txn)

    async def close(self) -> None:
        """Drop the LISTEN connection."""
        await self._listener.close()

    async def submit(self, submission: Submission) -> None:
        """Queue row and free lease (epoch 0) first, then `RunStarted` at epoch 0.

        In this order a crash in between leaves a queue row without a run, which no
        worker claims (it has no `RunStarted`), rather than a run nobody will execute.
        """
        s = submission

        async def txn(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO leases (stream_id, owner, epoch, expires_at)"
                " VALUES ($1, '', 0, 0) ON CONFLICT (stream_id) DO NOTHING",
                s.stream_id,
            )
            await conn.execute(
                "INSERT INTO work_queue (run_id, stream_id, inbox_id, queue, priority)"
                " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (run_id) DO NOTHING",
                s.run_id,
                s.stream_id,
                s.inbox_id,
                s.queue,
                s.priority,
            )

        await self.store._transaction(txn)
        await self.store.append(s.stream_id, [s.started], expected_version=0, epoch=0)
        await self.notify()

    async def claim(
        self, owner: str, queues: Sequence[str], limit: int, ttl: float, *, skip: Sequence[str] = ()
    ) -> list[Claim]:
        """Lease up to `limit` claimable runs; see `WorkQueue.claim`."""
        store = self.store

        async def txn(conn: Conn) -> list[Claim]:
            now = await store._lease_now(conn)
            room: dict[str, int] = {}
            if await conn.fetch(_LOCK_LIMITS, list(queues)):
                now = await store._lease_now(conn)  # after the wait for the lock
                room = {r[0]: int(r[1]) for r in await conn.fetch(_ROOM, list(queues), now)}
            rows = await conn.fetch(_CANDIDATES, list(queues), now, limit, list(skip))
            claims = []
            for run_id, stream_id, queue in within_limits([tuple(r) for r in rows], room):
                # SKIP LOCKED here too: a holder cut off in the middle of renewing keeps
                # this row locked until the server drops its session; take the others.
                row = await conn.fetchrow(_LEASE_SKIP_LOCKED, stream_id)
                if row is None:
                    continue
                current = Lease(stream_id, row[0], int(row[1]), float(row[2]))
                try:
                    lease = decide_acquire(current, stream_id, owner, now, ttl, force=False)
                except LeaseHeldError:
                    continue  # renewed between our look and our lock: still its holder's
                await store._put_lease(conn, lease)
                claims.append(Claim(run_id, queue, lease))
            if claims:
                await conn.execute(
                    "UPDATE work_queue SET parked_inbox = NULL, parked_until = NULL"
                    " WHERE run_id = ANY($1::text[])",
                    [c.run_id for c in claims],
                )
            return claims

        if limit <= 0:
            return []
        return await store._transaction(txn)

    async def finish(self, run_id: str) -> None:
        """Mark the run done."""
        sql = "UPDATE work_queue SET done = TRUE WHERE run_id = $1"
        await self.store._run(lambda c: c.execute(sql, run_id))

    async def set_limit(self, queue: str, max_running: int | None) -> None:
        """Set or clear the queue's global limit."""
        check_limit(max_running)
        args: tuple[object, ...]
        if max_running is None:
            sql, args = "DELETE FROM queue_limits WHERE queue = $1", (queue,)
        else:
            sql = (
                "INSERT INTO queue_limits (queue, max_running) VALUES ($1, $2)"
                " ON CONFLICT (queue) DO UPDATE SET max_running = excluded.max_running"
            )
            args = (queue, max_running)
        await self.store._run(lambda c: c.execute(sql, *args))

    async def limits(self) -> dict[str, int]:
        """Every queue's limit."""
        rows = await self.store._run(
            lambda c: c.fetch("SELECT queue, max_running FROM queue_limits")
        )
        return {r[0]: int(r[1]) for r in rows}

    async def set_rate(self, key: str, rate: float | None, burst: float = 1.0) -> None:
        """Declare or clear `key`'s bucket; a new or changed one starts full."""
        args: tuple[object, ...]
        if rate is None:
            sql, args = "DELETE FROM rate_limits WHERE key = $1", (key,)
        else:
            check_rate(key, rate, burst)
            sql = (
                "INSERT INTO rate_limits (key, rate, burst) VALUES ($1, $2, $3)"
                " ON CONFLICT (key) DO UPDATE SET rate = excluded.rate,"
                " burst = excluded.burst, tokens = NULL, updated = NULL"
            )
            args = (key, rate, burst)
        await self.store._run(lambda c: c.execute(sql, *args))

    async def rates(self) -> list[RateLimit]:
        """Every declared limit, by key."""
        rows = await self.store._run(
            lambda c: c.fetch("SELECT key, rate, burst FROM rate_limits ORDER BY key")
        )
        return [RateLimit(r[0], float(r[1]), float(r[2])) for r in rows]

    async def take_token(self, key: str) -> float | None:
        """Lock the bucket's row, read the server's clock after the lock, decide, write."""

        async def txn(conn: Conn) -> float | None:
            row = await conn.fetchrow(
                "SELECT rate, burst, tokens, updated FROM rate_limits WHERE key = $1 FOR UPDATE",
                key,
            )
            if row is None:
                return None
            # A separate statement: the clock is read once the row lock is held.
            now = float(await conn.fetchval(SERVER_NOW))
            bucket = None if row[2] is None else Bucket(float(row[2]), float(row[3]))
            after, wait = decide_take(bucket, RateLimit(key, float(row[0]), float(row[1])), now)
            await conn.execute(
                "UPDATE rate_limits SET tokens = $2, updated = $3 WHERE key = $1",
                key,
                after.tokens,
                after.updated,
            )
            return wait

        return await self.store._transaction(txn)

    async def park(self, run_id: str, inbox_version: int, wake_in: float | None = None) -> None:
        """Leave the run until its inbox grows or the server's clock passes `wake_in`."""
        sql = (
            "UPDATE work_queue SET parked_inbox = $2,"
            f" parked_until = {NOW} + $3::double precision WHERE run_id = $1"
        )
        await self.store._run(lambda c: c.execute(sql, run_id, inbox_version, wake_in))

    async def heartbeat(self, worker: WorkerInfo, ttl: float) -> None:
        """Upsert the worker's row, stamped with the server's clock."""
        sql = (
            "INSERT INTO workers (worker_id, host, pid, queues, runs, started, last_seen, ttl)"
            f" SELECT $1, $2, $3, $4, $5, t.now_, t.now_, $6 FROM (SELECT {NOW} AS now_) AS t"
            " ON CONFLICT (worker_id) DO UPDATE SET runs = excluded.runs,"
            " last_seen = excluded.last_seen, ttl = excluded.ttl"
        )
        queues = json.dumps(list(worker.queues))
        await self.store._run(
            lambda c: c.execute(sql, worker.worker_id, worker.host, worker.pid, queues,
                                worker.runs, ttl)
        )  # fmt: skip

    async def deregister(self, worker_id: str) -> None:
        """Remove the worker's row."""
        sql = "DELETE FROM workers WHERE worker_id = $1"
        await self.store._run(lambda c: c.execute(sql, worker_id))

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat is within their ttl by the server's clock."""
        sql = (
            "SELECT worker_id, host, pid, queues, runs, last_seen FROM workers"
            f" WHERE last_seen + ttl > {NOW} ORDER BY started, worker_id"
        )
        rows = await self.store._run(lambda c: c.fetch(sql))
        return [
            WorkerInfo(r[0], r[1], int(r[2]), tuple(json.loads(r[3])), int(r[4]), float(r[5]))
            for r in rows
        ]

    async def notify(self) -> None:
        """NOTIFY every worker on this schema, soon (see `_pg_notify`)."""
        self.store._announcer.poke(CHANNEL)

    async def wait(self, timeout: float) -> None:
        """Until a NOTIFY for this schema or `timeout`; LISTENs on first use."""
        await self._listener.ensure()
        try:
            async with self.store._clock.timeout(timeout):
                await self._woken.wait()
        except TimeoutError:
            pass
        self._woken.clear()
