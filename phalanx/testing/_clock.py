"""A clock that only moves when told to, or when someone sleeps on it."""

from __future__ import annotations

import asyncio
from types import TracebackType

from .._clock import TimeoutScope


class _VirtualTimeout:
    """A timeout scope whose deadline is on a `VirtualClock`'s time."""

    def __init__(self, clock: VirtualClock, delay: float | None) -> None:
        self._clock = clock
        self._inner = asyncio.timeout(None)
        self.at = None if delay is None else clock.monotonic() + max(0.0, delay)

    async def __aenter__(self) -> _VirtualTimeout:
        await self._inner.__aenter__()
        if self.at is not None:
            self._clock._timeouts.append(self)
            self._clock._fire_due()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self in self._clock._timeouts:
            self._clock._timeouts.remove(self)
        await self._inner.__aexit__(exc_type, exc, tb)
        return None

    def expired(self) -> bool:
        """Whether the deadline passed and cancelled the body."""
        return self._inner.expired()

    def fire(self) -> None:
        # Due on the loop at once: the scope cancels its task, as asyncio's does.
        self._inner.reschedule(asyncio.get_running_loop().time())


class VirtualClock:
    """A `Clock` on virtual time that a test moves by hand, for deterministic tests.

    `sleep(s)` advances the clock by `s` at once and yields to the event loop, so
    code that backs off or waits for a lease to expire runs instantly. `advance(s)`
    moves time without sleeping, e.g. to expire a lease under a test's control.
    `timeout(s)` scopes expire on this clock's time, when a sleep or `advance` passes
    their deadline. Sleeps do not overlap: two tasks sleeping 1 s each move the clock
    2 s. For concurrent tasks on virtual time, where sleepers overlap and time jumps
    only when every task waits, run them on a `SimulatedLoop` (`run_simulated`).

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
        self._timeouts: list[_VirtualTimeout] = []

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
        self._fire_due()

    async def sleep(self, seconds: float) -> None:
        """Advance by `seconds` and let other tasks run."""
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def timeout(self, delay: float | None) -> TimeoutScope:
        """A scope that expires once this clock passes `delay` seconds from now."""
        return _VirtualTimeout(self, delay)

    def _fire_due(self) -> None:
        now = self.monotonic()
        for scope in [t for t in self._timeouts if t.at is not None and t.at <= now]:
            self._timeouts.remove(scope)
            scope.fire()
