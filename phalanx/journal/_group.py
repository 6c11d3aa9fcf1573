"""Group commit: the writes that arrive in one event-loop tick share one transaction.

Many runs in one process (a fan-out's branches, child runs, a worker's concurrent runs)
append at once. Committing each append alone costs one commit apiece, and the commit
is most of an append's cost; committing them together costs one commit per tick. A
store queues each write here and gets the whole tick's queue back, in arrival order, on
the loop's next turn (`loop.call_soon`), when every task that was ready to append has
appended. A lone append pays that one turn of the loop and nothing else.

The store runs the batch in one transaction, each write inside it on its own
(a savepoint on SQLite), so a write that is refused (a conflict, a fence) is rolled
back alone and its caller gets exactly the exception it would have got writing alone,
while the others commit. Each caller's future is resolved only once the transaction
committed: durability is the same as one commit per append.

A caller cancelled before its tick's commit is dropped from the batch (nothing of it
is written, as before). Cancelled after the commit it sees the cancel, like any caller
whose commit raced a cancel; the durable layer already settles that (`RunJournal`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Pending(Generic[T]):
    """One queued write: what to run inside the shared transaction, and its caller."""

    __slots__ = ("future", "work")

    def __init__(self, work: Callable[[Any], T], future: asyncio.Future[T]) -> None:
        self.work = work
        self.future = future


class GroupCommit:
    """Queues writes and hands each tick's queue to `commit`, which resolves them."""

    def __init__(self, commit: Callable[[list[Pending[Any]]], None]) -> None:
        self._commit = commit
        self._queue: list[Pending[Any]] = []

    def submit(self, work: Callable[[Any], T]) -> asyncio.Future[T]:
        """Queue `work` for this tick's transaction; the future holds its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(Pending(work, future))
        if len(self._queue) == 1:
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        """Commit what is queued now (also before the store closes); idempotent."""
        batch = [p for p in self._queue if not p.future.done()]  # done: cancelled
        self._queue = []
        if batch:
            self._commit(batch)
