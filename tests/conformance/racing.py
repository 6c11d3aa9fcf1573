"""Racing stores for real: each racer in its own thread, with its own event loop and store.

`asyncio.gather` over several stores in one event loop is not a race on SQLite: its
store runs statements inline on the loop thread, so "concurrent" coroutines run one
call after another. Racers here each get an OS thread (SQLite releases the GIL inside
every statement; asyncpg waits on its own socket) and meet at a barrier before each
round. Racers that ran one after another could never all reach a barrier, so a test
built on rounds cannot silently stop racing: it fails with a broken barrier instead.
Tests still assert the interleaving the rounds imply, from what the store recorded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from phalanx.journal import EventStore, store_from_url

T = TypeVar("T")

#: How long a racer waits at a barrier for the others before the race fails.
BARRIER_TIMEOUT = 30.0


@dataclass
class Racer:
    """What one racer gets: its index, its own open store and the shared barrier."""

    index: int
    store: EventStore
    barrier: threading.Barrier

    def sync(self) -> None:
        """Wait until every racer is here (blocks this racer's own loop, nobody else's)."""
        self.barrier.wait()


async def race(url: str, racers: int, body: Callable[[Racer], Awaitable[T]]) -> list[T]:
    """Run `body` in `racers` threads at once, each on its own store opened from `url`.

    Returns each racer's result, in racer order.

    Raises:
        BaseException: the first racer's failure (the others' barriers are broken).
    """
    barrier = threading.Barrier(racers, timeout=BARRIER_TIMEOUT)
    results: list[T | None] = [None] * racers
    errors: list[BaseException] = []

    async def run(index: int) -> None:
        store = store_from_url(url)
        await store.open()
        try:
            results[index] = await body(Racer(index, store, barrier))
        finally:
            await store.close()

    def thread(index: int) -> None:
        try:
            asyncio.run(run(index))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=thread, args=(i,), daemon=True) for i in range(racers)]
    for t in threads:
        t.start()
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    if errors:
        # A broken barrier is the echo of another racer's failure: report the cause.
        raise next(
            (e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0]
        )
    return cast(list[T], results)  # every racer finished, so each slot holds its result
