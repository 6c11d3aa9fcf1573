"""Timers on the clock seam: deadlines, ask timeouts and heartbeat checks all use them.

Every "wake me at time T" in the actor runtime goes through a `Timers` bound to the
system's `Clock`, so a simulation on `phalanx.testing.VirtualClock` drives deadlines
and watchdogs on virtual time, exactly as it drives everything else.

Two implementations, picked by `timers_for(clock)`:

- `LoopTimers` for the real `SystemClock`: the event loop's own timer heap. Its time
  base is the same monotonic clock, so this is exact, costs nothing while idle and
  nothing per timer beyond one `TimerHandle` (asks are on the hot path).
- `ClockTimers` for any other clock: a heap driven by one owned task that sleeps on
  the clock in steps of at most `resolution`. Sleeping in steps (rather than straight
  to the earliest timer) is what makes a virtual clock behave: `VirtualClock.sleep`
  jumps time forward at once, so one long sleep would fire every deadline the moment
  it was set. With steps, while any timer is pending virtual time advances by
  `resolution` per turn of the event loop (plus whatever the actors sleep themselves),
  so work that takes many turns also takes virtual time, deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

from .._clock import Clock, SystemClock

logger = logging.getLogger("phalanx")


class TimerHandle(Protocol):
    """A scheduled callback that can be called off."""

    def cancel(self) -> None:
        """Call the timer off; harmless if it has fired already."""
        ...


class Timers(Protocol):
    """Schedules callbacks at times of one clock (`clock.monotonic()` seconds)."""

    @property
    def clock(self) -> Clock:
        """The clock the times are read on."""
        ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call `callback(*args)` once, `delay` seconds from now."""
        ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call `callback(*args)` once, when `clock.monotonic()` reaches `when`."""
        ...


class LoopTimers:
    """`Timers` on the event loop's timer heap, for `SystemClock` only (same time base)."""

    __slots__ = ("_clock", "_loop")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._loop = asyncio.get_running_loop()

    @property
    def clock(self) -> Clock:
        """The system clock."""
        return self._clock

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle:
        """Schedule on the loop, `delay` seconds from now."""
        return self._loop.call_later(delay, callback, *args)

    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle:
        """Schedule on the loop at monotonic time `when` (converted to a delay)."""
        return self._loop.call_later(when - self._clock.monotonic(), callback, *args)


class _ClockTimer:
    __slots__ = ("args", "callback", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ClockTimers:
    """`Timers` for any `Clock`: a heap and one driver task that sleeps on the clock.

    `run()` is the driver; the actor system starts it in its own nursery, so it is
    owned and stops with the system. Timers set before the driver runs simply wait.

    Args:
        clock: The clock to read and sleep on.
        resolution: The longest single sleep, in clock seconds: how late a timer can
            fire on a real clock, and how far virtual time moves per step.
    """

    __slots__ = ("_clock", "_heap", "_idle", "_resolution", "_seq")

    def __init__(self, clock: Clock, *, resolution: float) -> None:
        self._clock = clock
        self._resolution = resolution
        self._heap: list[tuple[float, int, _ClockTimer]] = []
        self._seq = itertools.count()
        self._idle: asyncio.Future[None] | None = None

    @property
    def clock(self) -> Clock:
        """The clock timers are read on."""
        return self._clock

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> _ClockTimer:
        """Schedule `delay` clock seconds from now."""
        return self.call_at(self._clock.monotonic() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> _ClockTimer:
        """Schedule at clock time `when`, and wake the driver if it was idle."""
        timer = _ClockTimer(callback, args)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)
        return timer

    async def run(self) -> None:
        """Fire timers as the clock reaches them, until cancelled."""
        heap = self._heap
        clock = self._clock
        loop = asyncio.get_running_loop()
        while True:
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            if not heap:
                # Nothing scheduled: wait to be woken instead of ticking (and, on a
                # virtual clock, instead of moving time on for nobody).
                self._idle = loop.create_future()
                await self._idle
                self._idle = None
                continue
            now = clock.monotonic()
            when, _, timer = heap[0]
            if when <= now:
                heapq.heappop(heap)
                try:
                    timer.callback(*timer.args)
                except Exception:
                    logger.exception("timer callback %r failed", timer.callback)
                continue
            await clock.sleep(min(when - now, self._resolution))


CURRENT_TIMERS: ContextVar[Timers | None] = ContextVar("phalanx_actor_timers", default=None)


def current_timers() -> Timers:
    """The timers of the actor system this task runs in, or the loop's on the real clock."""
    timers = CURRENT_TIMERS.get()
    if timers is None:
        return LoopTimers(SystemClock())
    return timers


def timers_for(clock: Clock, *, resolution: float) -> LoopTimers | ClockTimers:
    """The cheapest exact `Timers` for `clock` (see the module docstring)."""
    if type(clock) is SystemClock:
        return LoopTimers(clock)
    return ClockTimers(clock, resolution=resolution)
