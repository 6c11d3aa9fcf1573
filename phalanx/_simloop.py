"""The simulated event loop: virtual time that jumps when every task waits, seeded order.

Under simulation the event loop is the world. One timer model serves everything:
the loop's own timer heap, on virtual time. `asyncio.sleep`, `asyncio.timeout`,
`call_later` and the runtime's clocks (`SystemClock`, which reads this loop's time
while it runs) all schedule on that heap, so tasks sleeping concurrently overlap as
they would in real time, and a deadline fires at its instant among them.

Time never passes while a task can run: only when no callback is ready does the loop
jump straight to the next timer (trio's `MockClock` with autojump), so a run whose
agents sleep for minutes finishes in milliseconds. If nothing is ready and no timer
is due, the world is stuck for good (every task waits on something nobody will set):
the loop stops and says so (`stuck`), instead of blocking forever.

A seed makes everything drawn on the loop reproducible (`entropy`, and whatever the
simulated world draws: I/O latencies, faults), so one seed is one interleaving, and it
replays exactly. With `shuffle`, the ready queue itself is shuffled on every turn.
That explores schedules asyncio never produces (it runs ready callbacks first in,
first out, and phalanx numbers a workflow's operations in the order its tasks first
run, which FIFO keeps stable), so `phalanx simulate` leaves it off and varies the
interleaving the way real runs vary it: by seeded I/O latencies. Tasks made on this
loop hash by creation order (not by address), so the sets of tasks asyncio keeps (a
TaskGroup's, say) iterate the same way on every replay.

The rejected alternative, patching `VirtualClock.sleep` to wait for "everyone else",
cannot know when every task is blocked: only the loop knows that.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import selectors
from collections.abc import Coroutine, Generator
from typing import Any, Protocol, TypeVar

from ._errors import SimulationStuckError

T = TypeVar("T")

#: Where virtual wall-clock time starts (2023-11-14T22:13:20Z): any fixed instant works.
EPOCH = 1_700_000_000.0


class FaultSource(Protocol):
    """The simulated world, as seams far from the store see it (e.g. the scripted model)."""

    def model_fault(self, agent: str) -> str | None:
        """The fault kind this model call meets, or None; drawn from the seed."""
        ...

    def tool_fault(self, tool: str) -> str | None:
        """The fault this tool call meets (`error`, `slow`, `hang`), or None."""
        ...


class _Task(asyncio.Task[Any]):
    """A task whose hash is its creation number: set iteration replays exactly."""

    def __init__(self, coro: Any, *, loop: SimulatedLoop, **kwargs: Any) -> None:
        self._number = next(loop._task_numbers)  # first: asyncio hashes it in __init__
        super().__init__(coro, loop=loop, **kwargs)

    def __hash__(self) -> int:
        return self._number


class _AutojumpSelector(selectors.BaseSelector):
    """The real selector, asked never to wait: the loop's time jumps instead."""

    def __init__(self, inner: selectors.BaseSelector, loop: SimulatedLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        ready = loop._ready  # type: ignore[attr-defined]  # BaseEventLoop's ready deque
        if loop.rng is not None and len(ready) > 1:
            order = list(ready)
            loop.rng.shuffle(order)
            ready.clear()
            ready.extend(order)
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            # Nothing ready, no timer, no I/O: every task waits on something nobody
            # will ever set. Blocking here would hang the process; stop and say so.
            loop.stuck = True
            loop.stop()
            return events
        loop.jump(timeout)
        return events

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()


class SimulatedLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time, with an optional seeded scheduler.

    Example::

        loop = SimulatedLoop(seed=7)
        try:
            result = loop.run_until_complete(main())   # sleeps take no real time
        finally:
            loop.close()

    Args:
        seed: Seeds `entropy`, which the runtime's `SystemEntropy` draws from while
            this loop runs, and the shuffle.
        shuffle: Run ready callbacks in a seeded random order, not asyncio's FIFO.
        start: The virtual wall-clock time at monotonic 0.

    While it runs, `SystemClock` reads `wall()` and `time()`, `SystemEntropy` draws
    from `entropy`, and the executor seam runs sync functions inline (threads would
    make the order of events depend on the OS scheduler).
    """

    def __init__(
        self, seed: int | None = None, *, shuffle: bool = False, start: float = EPOCH
    ) -> None:
        super().__init__()
        self._now = 0.0
        self._start = start
        self.rng: random.Random | None = random.Random(seed) if shuffle else None
        #: Draws ids and random numbers for the code that runs on this loop.
        self.entropy = random.Random(f"entropy:{seed}")
        #: Set when the loop stopped because every task waited with no timer left.
        self.stuck = False
        #: How far virtual time has jumped, in total (clock jumps included).
        self.jumped = 0.0
        #: The simulated world's faults, when a simulation installed one.
        self.world: FaultSource | None = None
        self._task_numbers = itertools.count()
        self._selector = _AutojumpSelector(self._selector, self)  # type: ignore[has-type]  # set by SelectorEventLoop
        self.set_task_factory(self._make_task)

    def _make_task(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        return _Task(coro, loop=self, **kwargs)

    def time(self) -> float:
        """Virtual monotonic seconds since the loop was made."""
        return self._now

    def wall(self) -> float:
        """Virtual Unix time."""
        return self._start + self._now

    def jump(self, seconds: float) -> None:
        """Move virtual time forward (a clock jump when called from outside a timer)."""
        if seconds > 0:
            self._now += seconds
            self.jumped += seconds


def simulated_loop() -> SimulatedLoop | None:
    """The running loop if it is a `SimulatedLoop`, else None (the seams' one check)."""
    loop = asyncio._get_running_loop()
    return loop if isinstance(loop, SimulatedLoop) else None


def run_simulated(
    main: Coroutine[Any, Any, T], *, seed: int | None = None, shuffle: bool = False
) -> T:
    """Run `main` to completion on a fresh `SimulatedLoop` and close the loop.

    Raises:
        SimulationStuckError: every task waited forever with no timer left.
    """
    loop = SimulatedLoop(seed, shuffle=shuffle)
    try:
        task = loop.create_task(main)
        try:
            return loop.run_until_complete(task)
        except RuntimeError:
            if not loop.stuck:
                raise
            task.cancel()
            loop.stuck = False
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            raise SimulationStuckError(virtual_time=loop.time()) from None
    finally:
        shutdown(loop)


def shutdown(loop: SimulatedLoop) -> None:
    """Cancel what is left on `loop`, finish its async generators, and close it."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
