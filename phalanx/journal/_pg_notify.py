"""Telling other processes that something happened: NOTIFY, once per burst, on the side.

Kept out of the append's transaction on purpose: a transaction that NOTIFYs takes a
cluster-wide lock in its commit and holds it through the WAL flush, which would
serialise every append again (see `_postgres.py`). It also has its own connection,
named apart (`phalanx-notify:SCHEMA`): a NOTIFY holds a transaction id while it waits
for that lock, and under this schema's name it would hold the readers' watermark back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import asyncpg

from ._pg_schema import NOTIFY

if TYPE_CHECKING:
    from ._postgres import PostgresEventStore

logger = logging.getLogger("phalanx")

#: How long closing the store waits for a NOTIFY still due.
_FLUSH_SECONDS = 1.0


class Announcer:
    """Sends one NOTIFY per channel per burst of pokes, after them.

    Its task is owned here: started by the first `poke` of a burst, it sends until no
    poke came in while it was sending, and `stop()` (on the store's close) cancels it
    and closes the connection. A NOTIFY that fails is dropped: listeners poll.
    """

    def __init__(self, store: PostgresEventStore) -> None:
        self._store = store
        self._due: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None

    def poke(self, channel: str) -> None:
        """Ask for a NOTIFY on `channel` soon (one for the whole burst)."""
        self._due.add(channel)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        store = self._store
        while self._due:
            channels, self._due = self._due, set()
            try:
                conn = await self._connection()
                for channel in sorted(channels):
                    await conn.execute(NOTIFY, channel, store.schema or "")
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.debug("no NOTIFY for %s (%s); listeners poll", store.url, exc)
                self._drop()
                return

    async def _connection(self) -> asyncpg.Connection[asyncpg.Record]:
        if self._conn is None or self._conn.is_closed():
            store = self._store
            settings = dict(store._settings)
            settings["application_name"] = f"phalanx-notify:{store.schema or ''}"[:63]
            self._conn = await asyncpg.connect(
                store._dsn,
                timeout=store._connect_timeout,
                command_timeout=store._command_timeout,
                server_settings=settings,
            )
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def stop(self) -> None:
        """Send what is due (within a second), then close (the store is closing).

        A process that submits work and exits at once still wakes the workers.
        """
        task, self._task = self._task, None
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                async with self._store._clock.timeout(_FLUSH_SECONDS):
                    await asyncio.shield(task)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop()
