"""Hearing NOTIFYs: one LISTEN connection per channel, kept open, with polling behind it.

The store's subscribers (channel `phalanx_events`) and the work queue's idle workers
(`phalanx_work`) both listen this way. The connection is a dedicated one, never a
pooled one: a pooled connection returns to the pool between calls, and asyncpg's
listeners die with it. Losing it (or never getting it) is not an error, only slower:
its users poll meanwhile, and a new connection is tried at most every few seconds.
Every schema's NOTIFYs share the channel, with the schema as the payload, so a
listener wakes only for its own schema's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

if TYPE_CHECKING:
    from ._postgres import PostgresEventStore

logger = logging.getLogger("phalanx")

_Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

#: How long users rely on polling alone after LISTEN could not be set up.
RETRY_SECONDS = 5.0


class Listener:
    """LISTENs on `channel` for `store`'s schema and calls `on_wake` per notification.

    `ensure()` opens the connection if there is none (its users call it before each
    look, so a NOTIFY for a change after the look is never missed); `close()` drops
    it, and a later `ensure()` opens a new one. `who` names the users in the log.
    """

    def __init__(
        self, store: PostgresEventStore, channel: str, on_wake: Callable[[], None], *, who: str
    ) -> None:
        self._store = store
        self._channel = channel
        self._on_wake = on_wake
        self._who = who
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        #: Bumped by `close`: a connection opened across it is dropped, not kept.
        self._generation = 0

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is open now."""
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> None:
        """Open the LISTEN connection if missing; on failure, log once and carry on."""
        clock = self._store._clock
        if self.listening or clock.monotonic() < self._retry_at:
            return
        async with self._lock:
            if self.listening:
                return
            generation = self._generation
            store = self._store
            conn: _Connection | None = None
            try:
                conn = await asyncpg.connect(
                    store._dsn,
                    timeout=store._connect_timeout,
                    command_timeout=store._command_timeout,
                    server_settings=store._settings,
                )
                await conn.add_listener(self._channel, self._on_notification)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if conn is not None:
                    conn.terminate()
                self._retry_at = clock.monotonic() + RETRY_SECONDS
                logger.warning(
                    "cannot LISTEN on %s (%s); %s poll until it is back", store.url, exc, self._who
                )
                return
            except BaseException:
                if conn is not None:  # cancelled while subscribing: never leak the socket
                    conn.terminate()
                raise
            if generation != self._generation:  # closed while we connected
                conn.terminate()
                return
            conn.add_termination_listener(self._on_lost)
            self._conn = conn

    async def close(self) -> None:
        """Drop the connection (gracefully within the command timeout); idempotent."""
        self._generation += 1
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.close(timeout=self._store._command_timeout)
        except Exception:  # the server is gone or slow: drop the socket instead
            conn.terminate()

    def _on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        schema = self._store.schema
        if schema is None or payload == schema:
            self._on_wake()

    def _on_lost(self, conn: object) -> None:
        if conn is self._conn:
            self._conn = None
            logger.info(
                "lost the LISTEN connection to %s; %s poll meanwhile", self._store.url, self._who
            )
