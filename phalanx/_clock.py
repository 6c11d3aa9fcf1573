"""The clock seam: the only place phalanx reads time or sleeps.

Everything that needs "now" or a delay takes a `Clock`, so a simulation can run a
whole multi-agent system on virtual time (`phalanx.testing.VirtualClock`) and replay
is exact. Wall time (`now`) stamps events and lease expiries; monotonic time
(`monotonic`) measures durations and is immune to clock steps.

Lease expiry on PostgreSQL is the one exception: it follows the server's clock, which
every worker shares, unless the clock says it runs virtual time (a `virtual = True`
attribute, as `VirtualClock` has), which no server could follow.

There is one timer model: the event loop's timer heap. `sleep` and `timeout` schedule
on it, so a deadline and the sleeps it races are on one timeline. `SystemClock` reads
real time, except while a `SimulatedLoop` runs it: then it reads that loop's virtual
time, which jumps only when every task waits (see `_simloop`). That check is the whole
cost of the seam outside a simulation: one C call and an isinstance per read.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Protocol, runtime_checkable

from ._simloop import simulated_loop


class TimeoutScope(Protocol):
    """What `Clock.timeout` returns: an async scope, like `asyncio.Timeout`."""

    async def __aenter__(self) -> object:
        """Start the countdown."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Turn the cancel of an expired scope into `TimeoutError`."""
        ...

    def expired(self) -> bool:
        """Whether the deadline passed and cancelled the body."""
        ...


@runtime_checkable
class Clock(Protocol):
    """Source of time for the runtime."""

    def now(self) -> float:
        """Wall-clock time in seconds since the Unix epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for `seconds` of this clock's time."""
        ...

    def timeout(self, delay: float | None) -> TimeoutScope:
        """A scope that cancels its body after `delay` seconds of this clock's time.

        Raises `TimeoutError` at the scope's exit, as `asyncio.timeout` does (None:
        no limit). Use it instead of `asyncio.timeout`, so a clock's time rules both.
        """
        ...


class SystemClock:
    """The real clock (`time.time`, `time.monotonic`, the loop's timers).

    Virtual while a `SimulatedLoop` runs: its time, its timers.
    """

    def now(self) -> float:
        """Return wall-clock seconds since the Unix epoch."""
        sim = simulated_loop()
        return time.time() if sim is None else sim.wall()

    def monotonic(self) -> float:
        """Return monotonic seconds."""
        sim = simulated_loop()
        return time.monotonic() if sim is None else sim.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, delay: float | None) -> asyncio.Timeout:
        """`asyncio.timeout`: on the loop's timer heap, like `sleep`."""
        return asyncio.timeout(delay)
