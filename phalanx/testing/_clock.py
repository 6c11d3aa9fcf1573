"""A clock that only moves when told to, or when someone sleeps on it."""

from __future__ import annotations

import asyncio


class VirtualClock:
    """A `Clock` on virtual time, for deterministic tests and simulations.

    `sleep(s)` advances the clock by `s` at once and yields to the event loop, so
    code that backs off or waits for a lease to expire runs instantly. `advance(s)`
    moves time without sleeping, e.g. to expire a lease under a test's control.

    Example::

        clock = VirtualClock(start=1_000.0)
        lease = await store.acquire_lease("run-1", "a", ttl=10)
        clock.advance(11)   # the lease is now expired
    """

    #: Virtual time: a PostgreSQL store keeps leases on it instead of the server's clock.
    virtual = True

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._origin = start

    def now(self) -> float:
        """Virtual wall-clock seconds."""
        return self._now

    def monotonic(self) -> float:
        """Virtual seconds since this clock was made."""
        return self._now - self._origin

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (never backwards)."""
        if seconds < 0:
            raise ValueError("a VirtualClock never goes backwards")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """Advance by `seconds` and let other tasks run."""
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
