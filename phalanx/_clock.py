"""The clock seam: the only place phalanx reads time or sleeps.

Everything that needs "now" or a delay takes a `Clock`, so a simulation can run a
whole multi-agent system on virtual time (`phalanx.testing.VirtualClock`) and replay
is exact. Wall time (`now`) stamps events and lease expiries; monotonic time
(`monotonic`) measures durations and is immune to clock steps.

Lease expiry on PostgreSQL is the one exception: it follows the server's clock, which
every worker shares, unless the clock says it runs virtual time (a `virtual = True`
attribute, as `VirtualClock` has), which no server could follow.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


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


class SystemClock:
    """The real clock: `time.time`, `time.monotonic` and `asyncio.sleep`."""

    def now(self) -> float:
        """Return wall-clock seconds since the Unix epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Return monotonic seconds."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(max(0.0, seconds))
