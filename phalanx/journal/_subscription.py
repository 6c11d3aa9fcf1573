"""Tailing the global log: the one subscription loop both stores share.

A subscriber reads pages of the global log after its last position; when it has
caught up it waits for a wake-up (an append in this process, a PostgreSQL NOTIFY) or
a poll timeout that backs off, so appends from other processes are seen even when no
wake-up can reach us. Correctness never rests on the wake-up: it only shortens the
wait. Both stores guarantee that no reader sees a position while a lower one may
still commit (SQLite: positions in commit order; PostgreSQL: a watermark below the
oldest append in flight), so reading "after the last position seen" never skips one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from .._clock import Clock
from ._events import Event


class Notifier:
    """Wakes every waiting subscriber of one store at once."""

    def __init__(self) -> None:
        # A dict, not a set: waking in registration order, not in order of address,
        # keeps a simulated run's interleaving the same on every replay.
        self._waiters: dict[asyncio.Event, None] = {}

    def notify(self) -> None:
        """Wake all current waiters (safe to call from the event loop only)."""
        for waiter in self._waiters:
            waiter.set()

    def waiter(self) -> asyncio.Event:
        """Register a wake-up flag; pair with `discard`."""
        flag = asyncio.Event()
        self._waiters[flag] = None
        return flag

    def discard(self, flag: asyncio.Event) -> None:
        """Unregister a wake-up flag."""
        self._waiters.pop(flag, None)


async def tail(
    read_page: Callable[[int, int], Awaitable[list[Event]]],
    notifier: Notifier,
    *,
    after: int,
    clock: Clock,
    page_size: int = 500,
    min_poll: float = 0.005,
    max_poll: float = 0.1,
) -> AsyncIterator[Event]:
    """Yield every event after `after` as it commits, forever."""
    position = after
    poll = min_poll
    flag = notifier.waiter()
    try:
        while True:
            # Clear before reading: an append that lands after the read sets the flag
            # again, so the wait below cannot miss it.
            flag.clear()
            page = await read_page(position, page_size)
            for event in page:
                position = event.position
                yield event
            if len(page) == page_size:
                continue
            if page:
                poll = min_poll
                continue
            try:
                # A timeout scope, not wait_for, which on 3.11 can swallow a cancel.
                async with clock.timeout(poll):
                    await flag.wait()
                poll = min_poll
            except TimeoutError:
                poll = min(poll * 2, max_poll)
    finally:
        notifier.discard(flag)
