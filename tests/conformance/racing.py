"""Racing stores for real: each racer in its own thread, with its own event loop and store.

`asyncio.gather` over several stores in one event loop is not a race on SQLite: its
store runs statements inline on the loop thread, so "concurrent" coroutines run one
call after another. Racers here each get an OS thread (SQLite releases the GIL inside
every statement; asyncpg waits on its own socket), start together at a barrier, and
record when each of their calls ran, so a test can assert the calls really overlapped
instead of trusting that they did.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from phalanx.journal import EventStore, store_from_url

T = TypeVar("T")

#: How long a racer waits at a barrier for the others: a racer that never arrives
#: (because the racers ran one after another) breaks the barrier and fails the test.
BARRIER_TIMEOUT = 30.0


@dataclass
class Racer:
    """What one racer gets: its index, its own open store and the shared barrier."""

    index: int
    store: EventStore
    barrier: threading.Barrier
    spans: list[tuple[int, float, float]] = field(default_factory=list)

    def sync(self) -> None:
        """Wait until every racer is here (blocks this racer's own loop, nobody else's)."""
        self.barrier.wait()

    @asynccontextmanager
    async def timed(self) -> Any:
        """Record when the enclosed call started and ended, to check overlaps later."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spans.append((self.index, start, time.perf_counter()))


@dataclass
class Race:
    """The racers' results, in racer order, and every timed call of every racer."""

    results: list[Any]
    spans: list[tuple[int, float, float]]

    def overlaps(self) -> int:
        """How many pairs of timed calls by different racers ran at the same time."""
        spans = sorted(self.spans, key=lambda s: s[1])
        count = 0
        for i, (who, _, end) in enumerate(spans):
            for other, start, _ in spans[i + 1 :]:
                if start >= end:
                    break
                count += other != who
        return count


async def race(
    url: str, racers: int, body: Callable[[Racer], Awaitable[T]], **options: Any
) -> Race:
    """Run `body` in `racers` threads at once, each on its own store opened from `url`.

    Raises:
        BaseException: the first racer's failure (the others' barriers are broken).
    """
    barrier = threading.Barrier(racers, timeout=BARRIER_TIMEOUT)
    results: list[Any] = [None] * racers
    spans: list[tuple[int, float, float]] = []
    errors: list[BaseException] = []

    async def run(index: int) -> None:
        store = store_from_url(url, **options)
        await store.open()
        try:
            racer = Racer(index, store, barrier)
            results[index] = await body(racer)
            spans.extend(racer.spans)
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
    return Race(results, spans)
