"""Group commit: the writes that arrive in one event-loop tick share one transaction.

Many runs in one process (a fan-out's branches, child runs, a worker's concurrent runs)
write at once. Committing each write alone costs one commit apiece, and the commit is
most of an append's cost; committing them together costs one commit per tick. The
first writer of a tick queues its write and yields once to the loop
(`asyncio.sleep(0)`); every task that writes before it runs again queues behind it
and waits on a future. Back from its yield, the first writer commits the whole queue,
in arrival order, and resolves the others.

The first writer yields only if some other callback is ready to run in this tick: with
none, nobody could join its batch, so it commits at once, as a store without group
commit would. That keeps a lone run's steps as cheap as before: yielding from the
bottom of a step's dozen nested coroutines cost ~11 µs of CPU per step here (a 16%
slower no-op step), more than the whole turn of the loop.

The store runs the batch in one transaction, each write inside it on its own (a
savepoint on SQLite), so a write that is refused (a conflict, a fence) is rolled back
alone and its caller gets exactly the exception it would have got writing alone, while
the others commit. A caller returns only once the transaction committed: durability is
the same as one commit per write.

A caller cancelled before its tick's commit is dropped from the queue (nothing of it
is written, as before); a cancelled first writer commits the others on its way out.
Cancelled after the commit, a caller sees the cancel, like any caller whose commit
raced a cancel; the durable layer settles that (`RunJournal`).

Rejected: a writer thread, which costs a thread hop per write (~65 µs here, six times a
SQLite commit); a flush scheduled with `loop.call_soon`, which costs every write a
future and a second turn of the loop; and futures for nobody, where a cancel that
lands during the yield is seen only after the commit it should have stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Pending(Generic[T]):
    """One queued write: what to run in the shared transaction, then how it ended."""

    __slots__ = ("done", "future", "ok", "value", "work")

    def __init__(self, work: Callable[[Any], T], future: asyncio.Future[T] | None) -> None:
        self.work = work
        #: Where a waiting writer hears the outcome (None for the tick's first writer).
        self.future = future
        self.done = False
        self.ok = False
        #: The write's result when `ok`, else the exception its caller raises.
        self.value: Any = None

    def settle(self, ok: bool, value: Any) -> None:
        """Record how the write ended, and tell its waiting writer."""
        self.done, self.ok, self.value = True, ok, value
        future = self.future
        if future is not None and not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


class GroupCommit:
    """Queues writes; the first writer of a tick hands the queue to `commit`.

    `commit` runs a batch and calls `settle` on every pending write; `alone` runs one
    write in a transaction of its own and returns its result (or raises).
    """

    def __init__(
        self,
        commit: Callable[[list[Pending[Any]]], None],
        alone: Callable[[Callable[[Any], Any]], Any],
    ) -> None:
        self._commit = commit
        self._alone = alone
        self._queue: list[Pending[Any]] = []

    async def run(self, work: Callable[[Any], T]) -> T:
        """Run `work` in this tick's shared transaction; return its result or raise."""
        if self._queue:
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._queue.append(Pending(work, future))
            return await future  # cancelled: `flush` skips it
        if not _others_ready():
            result: T = self._alone(work)  # nobody could join it: commit it now
            return result
        pending: Pending[T] = Pending(work, None)
        self._queue.append(pending)
        try:
            await asyncio.sleep(0)  # the other writers ready in this tick queue meanwhile
        except BaseException:
            if not pending.done:
                self._queue.remove(pending)  # not committed: nothing of it is written
                self.flush()  # the writers queued behind this one still commit
            raise
        if not pending.done:  # else `close` committed it meanwhile
            self.flush()
        if pending.ok:
            result = pending.value
            return result
        raise pending.value

    def flush(self) -> None:
        """Commit what is queued now (also before the store closes); idempotent."""
        batch = [p for p in self._queue if p.future is None or not p.future.done()]
        self._queue = []
        if batch:
            self._commit(batch)


def _others_ready() -> bool:
    """Whether another callback waits to run in this turn of the loop.

    asyncio keeps them in the loop's private `_ready` queue, the only place that knows;
    on a loop without one (uvloop), assume there are, and yield.
    """
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    return ready is None or len(ready) > 0
