"""Taking a token before a model or tool call, when a rate limit is declared for it.

The declared keys are read from the store at most every `REFRESH_SECONDS` per process
and store, so a call whose key has no limit costs no store round trip and journals
nothing; one with a limit takes a token from the shared bucket (`_buckets.py`) and,
when the bucket is empty, sleeps on the runtime's clock until the store says one will
be there, then tries again. The wait is bounded by whatever deadline the caller runs
under (a tool's timeout, an agent's timeout): it is a plain sleep inside that scope.
A store that cannot hold the work queue (`memory://`) has no rate limits.
"""

from __future__ import annotations

import weakref

from .._clock import Clock
from .._errors import ConfigError
from ._queue import WorkQueue, open_queue
from ._store import EventStore

#: How long a process trusts the declared keys it read (a new limit applies after this).
REFRESH_SECONDS = 1.0


class _Limits:
    """One store's declared keys, as this process last read them."""

    def __init__(self) -> None:
        self.queue: WorkQueue | None = None
        self.usable = True
        self.keys: frozenset[str] = frozenset()
        self.read_at: float | None = None

    async def declared(self, store: EventStore, key: str, clock: Clock) -> WorkQueue | None:
        """The queue to take `key`'s tokens from, or None when `key` has no limit."""
        if not self.usable:
            return None
        now = clock.monotonic()
        if self.read_at is None or now - self.read_at >= REFRESH_SECONDS:
            if self.queue is None:
                try:
                    queue = open_queue(store)
                except ConfigError:
                    self.usable = False
                    return None
                await queue.open()
                self.queue = queue
            self.keys = frozenset(limit.key for limit in await self.queue.rates())
            self.read_at = now
        return self.queue if key in self.keys else None


_LIMITS: weakref.WeakKeyDictionary[EventStore, _Limits] = weakref.WeakKeyDictionary()


async def take_token(store: EventStore, key: str, clock: Clock) -> None:
    """Return once one of `key`'s tokens is taken (at once if `key` has no limit)."""
    limits = _LIMITS.get(store)
    if limits is None:
        limits = _LIMITS[store] = _Limits()
    queue = await limits.declared(store, key, clock)
    if queue is None:
        return
    while True:
        wait = await queue.take_token(key)
        if not wait:  # taken, or the limit was cleared meanwhile
            return
        await clock.sleep(wait)
