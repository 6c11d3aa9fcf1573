"""How the SQLite store calls SQLite: inline, with busy back-off and group commit.

`SqliteExecutor` is the one seam: reads run as they are; writes join this loop tick's
shared transaction (`_group`), each in a savepoint of its own; a database locked by
another process is waited for with an asyncio sleep (busy_timeout=0 on the
connection, so SQLite itself never blocks the loop); and a file SQLite calls
malformed makes every later write a `StoreCorruptError`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from .._clock import Clock
from .._errors import StoreCorruptError, StoreUnavailableError
from ._group import GroupCommit, Pending

T = TypeVar("T")


# SQLITE_CORRUPT and SQLITE_NOTADB: the file is damaged (or is not a database at all).
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES  # the primary code, without extended bits
    return "malformed" in str(exc) or "not a database" in str(exc)


class _Busy:
    """The back-off of one write or read while another process holds the database."""

    __slots__ = ("_clock", "_deadline", "_delay", "_limit", "_url")

    def __init__(self, clock: Clock, limit: float, url: str) -> None:
        self._clock = clock
        self._limit = limit
        self._url = url
        self._deadline = clock.monotonic() + limit
        self._delay = 0.0005

    async def wait(self) -> None:
        """Sleep before the next try, or raise once the database stayed locked too long."""
        if self._clock.monotonic() >= self._deadline:
            raise StoreUnavailableError(
                store=self._url, reason=f"the database stayed locked for {self._limit:g}s"
            )
        await self._clock.sleep(self._delay)
        self._delay = min(self._delay * 2, 0.02)


#: What a grouped write returns when the database was busy: try again later.
_BUSY: Any = object()


class SqliteExecutor:
    """The one seam through which SQLite is called: inline, with async busy back-off."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock, busy_timeout: float, url: str):
        self.conn = conn
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._url = url
        #: Why SQLite called the file malformed, once it did; every later write is refused.
        self.corrupt: str | None = None
        #: Write transactions committed (tests and benchmarks count how many writes share one).
        self.commits = 0
        self.group = GroupCommit(self._commit_batch, self._commit_alone)

    def _refusal(self, exc: sqlite3.DatabaseError) -> Exception | None:
        """The error to raise for `exc`, or None when the database is only busy."""
        if _is_corrupt(exc):
            # Sticky: once SQLite calls the file malformed, write nothing more to it
            # through this store (writing can spread the damage).
            self.corrupt = str(exc)
            return StoreCorruptError(store=self._url, reason=str(exc))
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
            return None
        return StoreUnavailableError(store=self._url, reason=message)

    async def _retrying(self, attempt: Callable[[], T]) -> T:
        busy: _Busy | None = None  # made (and the clock read) only once the database is busy
        while True:
            try:
                return attempt()
            except sqlite3.DatabaseError as exc:
                refusal = self._refusal(exc)
                if refusal is not None:
                    raise refusal from exc
                busy = busy or _Busy(self._clock, self._busy_timeout, self._url)
                await busy.wait()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read (one autocommit statement or several, each consistent)."""
        return await self._retrying(lambda: fn(self.conn))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a write transaction shared with the other writes of this loop tick.

        `fn` runs in a savepoint of its own (BEGIN IMMEDIATE when alone): if it
        raises, only its own changes are rolled back and the exception is its caller's
        alone. The call returns once the transaction committed.
        """
        busy: _Busy | None = None
        while True:
            if self.corrupt is not None:
                raise StoreCorruptError(store=self._url, reason=self.corrupt)
            outcome = await self.group.run(fn)
            if outcome is not _BUSY:
                return outcome
            busy = busy or _Busy(self._clock, self._busy_timeout, self._url)
            await busy.wait()

    def _commit_batch(self, batch: list[Pending[Any]]) -> None:
        """Run one tick's writes in one transaction, then resolve every caller."""
        try:
            outcomes = self._transact(batch)
        except sqlite3.DatabaseError as exc:
            refusal = self._refusal(exc)
            failed = (True, _BUSY) if refusal is None else (False, refusal)
            outcomes = [failed] * len(batch)
        except StoreCorruptError as exc:
            outcomes = [(False, exc)] * len(batch)
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            pending.settle(ok, value)

    def _commit_alone(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One write in a transaction of its own: its result, or `_BUSY`."""
        if self.corrupt is not None:
            raise StoreCorruptError(store=self._url, reason=self.corrupt)
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            refusal = self._refusal(exc)
            if refusal is None:
                busy: T = _BUSY
                return busy
            raise refusal from exc
        self.commits += 1
        return result

    def _transact(self, batch: list[Pending[Any]]) -> list[tuple[bool, Any]]:
        """Each write in a savepoint of one transaction: (True, result) or (False, error).

        Raises:
            sqlite3.DatabaseError: the database failed (or was busy); nothing was written.
        """
        if self.corrupt is not None:
            raise StoreCorruptError(store=self._url, reason=self.corrupt)
        conn = self.conn
        solo = len(batch) == 1  # alone, the transaction itself isolates the write
        outcomes: list[tuple[bool, Any]] = []
        # IMMEDIATE takes the write lock up front, so a busy database is seen here,
        # before any work, and the whole batch can simply be tried again.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for pending in batch:
                if not solo:
                    conn.execute("SAVEPOINT w")
                try:
                    value = pending.work(conn)
                except sqlite3.IntegrityError as exc:  # a constraint: this write's own
                    outcomes.append((False, self._refusal(exc)))
                except sqlite3.Error:
                    raise  # the database failed: the whole transaction goes
                except Exception as exc:  # refused (a conflict, a fence): this write alone
                    outcomes.append((False, exc))
                else:
                    outcomes.append((True, value))
                if not solo:
                    if not outcomes[-1][0]:
                        conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
            if solo and not outcomes[0][0]:
                conn.execute("ROLLBACK")  # alone and refused: nothing of it stays
            else:
                conn.execute("COMMIT")
                self.commits += 1
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes
