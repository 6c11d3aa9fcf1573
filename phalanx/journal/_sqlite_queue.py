"""The work queue on SQLite: the PostgreSQL protocol, for workers on one machine.

See `_queue.py`. Each claim is one `BEGIN IMMEDIATE` transaction, so claims are
serialised by SQLite's single writer, which is what SKIP LOCKED buys on PostgreSQL.
Time is the store's clock: every worker shares the machine's. There is no NOTIFY
across processes: `wait` wakes at once for work submitted through this queue object
and otherwise polls every 0.2 s (a claim that finds nothing reads a few index pages).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._errors import LeaseHeldError
from ._buckets import Bucket, RateLimit, check_rate, decide_take
from ._leases import decide_acquire
from ._queue import Claim, Submission, WorkerInfo, check_limit, within_limits

if TYPE_CHECKING:
    from ._sqlite import SqliteEventStore

#: The longest a worker sleeps between looks at the queue.
POLL_SECONDS = 0.2

_TABLES = (
    """CREATE TABLE IF NOT EXISTS work_queue (
        run_id       TEXT PRIMARY KEY,
        stream_id    TEXT NOT NULL,
        inbox_id     TEXT NOT NULL,
        queue        TEXT NOT NULL,
        priority     INTEGER NOT NULL DEFAULT 0,
        submitted    INTEGER NOT NULL,
        parked_inbox INTEGER,
        done         INTEGER NOT NULL DEFAULT 0,
        parked_until REAL
    )""",
    """CREATE INDEX IF NOT EXISTS work_queue_open
        ON work_queue (queue, priority DESC, submitted) WHERE done = 0""",
    """CREATE TABLE IF NOT EXISTS queue_limits (
        queue       TEXT PRIMARY KEY,
        max_running INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rate_limits (
        key     TEXT PRIMARY KEY,
        rate    REAL NOT NULL,
        burst   REAL NOT NULL,
        tokens  REAL,
        updated REAL
    )""",
    """CREATE TABLE IF NOT EXISTS workers (
        worker_id TEXT PRIMARY KEY,
        host      TEXT NOT NULL,
        pid       INTEGER NOT NULL,
        queues    TEXT NOT NULL,
        runs      INTEGER NOT NULL,
        started   REAL NOT NULL,
        last_seen REAL NOT NULL,
        ttl       REAL NOT NULL
    )""",
)


def _candidates(queues: int, skip: int) -> str:
    return f"""
    SELECT q.run_id, q.stream_id, q.queue FROM work_queue AS q
    LEFT JOIN leases AS l ON l.stream_id = q.stream_id
    WHERE q.done = 0 AND q.queue IN ({",".join("?" * queues)})
      AND q.run_id NOT IN ({",".join("?" * skip)})
      AND (l.stream_id IS NULL OR l.owner = '' OR l.expires_at <= ?)
      AND EXISTS (SELECT 1 FROM events AS e WHERE e.stream_id = q.stream_id)
      AND (q.parked_inbox IS NULL OR q.parked_until <= ? OR q.parked_inbox <
           (SELECT coalesce(max(e.seq), 0) FROM events AS e WHERE e.stream_id = q.inbox_id))
    ORDER BY q.priority DESC, q.submitted
    LIMIT ?
    """


def _room(queues: int) -> str:
    return f"""
    SELECT ql.queue, ql.max_running - (
        SELECT count(*) FROM work_queue AS q JOIN leases AS l ON l.stream_id = q.stream_id
        WHERE q.queue = ql.queue AND q.done = 0 AND l.owner <> '' AND l.expires_at > ?)
    FROM queue_limits AS ql WHERE ql.queue IN ({",".join("?" * queues)})
    """


class SqliteWorkQueue:
    """The `WorkQueue` of a `SqliteEventStore` (shares its connection)."""

    def __init__(self, store: SqliteEventStore) -> None:
        self.store = store
        self._woken = asyncio.Event()

    async def open(self) -> None:
        """Create the tables if missing."""

        def txn(conn: sqlite3.Connection) -> None:
            for statement in _TABLES:
                conn.execute(statement)
            columns = {r[1] for r in conn.execute("PRAGMA table_info(work_queue)")}
            if "parked_until" not in columns:  # a queue made before timers parked
                conn.execute("ALTER TABLE work_queue ADD COLUMN parked_until REAL")

        await self.store._db.write(txn)

    async def close(self) -> None:
        """Nothing to release: the store owns the connection."""

    async def submit(self, submission: Submission) -> None:
        """Queue row and free lease (epoch 0) first, then `RunStarted` (see `_pg_queue`)."""
        s = submission

        def txn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO leases (stream_id, owner, epoch, expires_at) VALUES (?, '', 0, 0)"
                " ON CONFLICT (stream_id) DO NOTHING",
                (s.stream_id,),
            )
            conn.execute(
                "INSERT INTO work_queue (run_id, stream_id, inbox_id, queue, priority, submitted)"
                " VALUES (?,?,?,?,?,(SELECT coalesce(max(submitted), 0) + 1 FROM work_queue))"
                " ON CONFLICT (run_id) DO NOTHING",
                (s.run_id, s.stream_id, s.inbox_id, s.queue, s.priority),
            )

        await self.store._db.write(txn)
        await self.store.append(s.stream_id, [s.started], expected_version=0, epoch=0)
        await self.notify()

    async def claim(
        self, owner: str, queues: Sequence[str], limit: int, ttl: float, *, skip: Sequence[str] = ()
    ) -> list[Claim]:
        """Lease up to `limit` claimable runs; see `WorkQueue.claim`."""
        if limit <= 0 or not queues:
            return []
        store = self.store
        now = store._clock.now()
        sql = _candidates(len(queues), len(skip))
        args = (*queues, *skip, now, now, limit)

        def txn(conn: sqlite3.Connection) -> list[Claim]:
            room = {
                str(r[0]): int(r[1])
                for r in conn.execute(_room(len(queues)), (now, *queues)).fetchall()
            }
            candidates = [tuple(r) for r in conn.execute(sql, args).fetchall()]
            claims = []
            for run_id, stream_id, queue in within_limits(candidates, room):
                current = store._lease_row(conn, stream_id)
                try:
                    lease = decide_acquire(current, stream_id, owner, now, ttl, force=False)
                except LeaseHeldError:
                    continue
                store._put_lease(conn, lease)
                conn.execute(
                    "UPDATE work_queue SET parked_inbox = NULL, parked_until = NULL"
                    " WHERE run_id = ?",
                    (run_id,),
                )
                claims.append(Claim(run_id, queue, lease))
            return claims

        return await store._db.write(txn)

    async def finish(self, run_id: str) -> None:
        """Mark the run done."""
        await self.store._db.write(
            lambda c: c.execute("UPDATE work_queue SET done = 1 WHERE run_id = ?", (run_id,))
        )

    async def set_limit(self, queue: str, max_running: int | None) -> None:
        """Set or clear the queue's global limit."""
        check_limit(max_running)
        args: tuple[object, ...]
        if max_running is None:
            sql, args = "DELETE FROM queue_limits WHERE queue = ?", (queue,)
        else:
            sql = (
                "INSERT INTO queue_limits (queue, max_running) VALUES (?, ?)"
                " ON CONFLICT (queue) DO UPDATE SET max_running = excluded.max_running"
            )
            args = (queue, max_running)
        await self.store._db.write(lambda c: c.execute(sql, args))

    async def limits(self) -> dict[str, int]:
        """Every queue's limit."""
        sql = "SELECT queue, max_running FROM queue_limits"
        rows = await self.store._db.read(lambda c: c.execute(sql).fetchall())
        return {str(r[0]): int(r[1]) for r in rows}

    async def set_rate(self, key: str, rate: float | None, burst: float = 1.0) -> None:
        """Declare or clear `key`'s bucket; a new or changed one starts full."""
        args: tuple[object, ...]
        if rate is None:
            sql, args = "DELETE FROM rate_limits WHERE key = ?", (key,)
        else:
            check_rate(key, rate, burst)
            sql = (
                "INSERT INTO rate_limits (key, rate, burst) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET rate = excluded.rate,"
                " burst = excluded.burst, tokens = NULL, updated = NULL"
            )
            args = (key, rate, burst)
        await self.store._db.write(lambda c: c.execute(sql, args))

    async def rates(self) -> list[RateLimit]:
        """Every declared limit, by key."""
        sql = "SELECT key, rate, burst FROM rate_limits ORDER BY key"
        rows = await self.store._db.read(lambda c: c.execute(sql).fetchall())
        return [RateLimit(str(r[0]), float(r[1]), float(r[2])) for r in rows]

    async def take_token(self, key: str) -> float | None:
        """One `BEGIN IMMEDIATE` transaction: read the bucket, decide, write it back."""
        now = self.store._clock.now()

        def txn(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT rate, burst, tokens, updated FROM rate_limits WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            bucket = None if row[2] is None else Bucket(float(row[2]), float(row[3]))
            after, wait = decide_take(bucket, RateLimit(key, float(row[0]), float(row[1])), now)
            conn.execute(
                "UPDATE rate_limits SET tokens = ?, updated = ? WHERE key = ?",
                (after.tokens, after.updated, key),
            )
            return wait

        return await self.store._db.write(txn)

    async def park(self, run_id: str, inbox_version: int, wake_in: float | None = None) -> None:
        """Leave the run until its inbox grows or the store's clock passes `wake_in`."""
        until = None if wake_in is None else self.store._clock.now() + wake_in
        sql = "UPDATE work_queue SET parked_inbox = ?, parked_until = ? WHERE run_id = ?"
        await self.store._db.write(lambda c: c.execute(sql, (inbox_version, until, run_id)))

    async def heartbeat(self, worker: WorkerInfo, ttl: float) -> None:
        """Upsert the worker's row."""
        now = self.store._clock.now()
        row = (
            worker.worker_id,
            worker.host,
            worker.pid,
            json.dumps(list(worker.queues)),
            worker.runs,
            now,
            now,
            ttl,
        )
        sql = (
            "INSERT INTO workers (worker_id, host, pid, queues, runs, started, last_seen, ttl)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (worker_id) DO UPDATE SET"
            " runs = excluded.runs, last_seen = excluded.last_seen, ttl = excluded.ttl"
        )
        await self.store._db.write(lambda c: c.execute(sql, row))

    async def deregister(self, worker_id: str) -> None:
        """Remove the worker's row."""
        sql = "DELETE FROM workers WHERE worker_id = ?"
        await self.store._db.write(lambda c: c.execute(sql, (worker_id,)))

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat is within their ttl."""
        sql = (
            "SELECT worker_id, host, pid, queues, runs, last_seen FROM workers"
            " WHERE last_seen + ttl > ? ORDER BY started, worker_id"
        )
        now = self.store._clock.now()
        rows = await self.store._db.read(lambda c: c.execute(sql, (now,)).fetchall())
        return [
            WorkerInfo(r[0], r[1], int(r[2]), tuple(json.loads(r[3])), int(r[4]), float(r[5]))
            for r in rows
        ]

    async def notify(self) -> None:
        """Wake this process's waiters; others see the work at their next poll."""
        self._woken.set()

    async def wait(self, timeout: float) -> None:
        """Until `notify` here, or at most `POLL_SECONDS`."""
        try:
            async with self.store._clock.timeout(min(timeout, POLL_SECONDS)):
                await self._woken.wait()
        except TimeoutError:
            pass
        self._woken.clear()
