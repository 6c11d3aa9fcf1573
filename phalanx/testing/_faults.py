"""Real crashes at precise points: a store and a clock that SIGKILL their own process.

A durable runtime is only as good as its behaviour when the process dies between two
writes, so chaos tests must be able to say *where* it dies: just before the journal
records that a step completed (the effect happened, the journal does not know), just
after (the journal knows, nobody acted on it yet), while a lease is being renewed,
inside a retry back-off or a durable timer. Killing from outside at a random moment
cannot aim that precisely; these wrappers sit on the runtime's own seams (store I/O
and the clock) and kill from inside, with SIGKILL, so no `finally`, `atexit` or
buffered write runs: the same as `kill -9` or the OOM killer. (Unlike a power cut,
what the OS already accepted survives; that case is the store's `synchronous` mode.)

Example (a driver script run in a subprocess; the test then resumes the run)::

    store = FaultyStore(store_from_url(url), kill_before_append=1, event_type="StepCompleted")
    runtime = Runtime(store, clock=FaultyClock(SystemClock()), lease_ttl=1.0)
    await store.open()
    await runtime.run(pipeline, {"ledger": path}, run_id="r1")  # dies mid-run

Counting starts at 1 and each fault fires once. Pass `crash=` to do something other
than SIGKILL (raise an exception, say, to exercise the wrappers in-process). POSIX
only: SIGKILL does not exist on Windows.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .._clock import Clock, TimeoutScope
from ..durable.lowlevel import run_id_of
from ..journal import (
    AppendResult,
    Event,
    EventStore,
    Lease,
    NewEvent,
    Snapshot,
    StreamAppend,
)

T = TypeVar("T")


def sigkill_self() -> NoReturn:
    """Kill this process with SIGKILL: nothing after this line runs, nothing is flushed."""
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # not reached: SIGKILL cannot be caught; this only satisfies NoReturn


class FaultyStore:
    """An `EventStore` that forwards every call to `inner` and crashes at a chosen one.

    Args:
        inner: The real store; it is opened and closed through this wrapper.
        kill_before_append: Crash on the nth counted append, before it reaches the
            store (the write is lost).
        kill_after_append: Crash on the nth counted append, after the store committed
            it (the write is durable, the caller never hears so).
        event_type: Count only appends whose batch holds an event of this type (e.g.
            "StepCompleted"); None counts every append. Only appends to run streams
            (`run:ID`, child runs included, inboxes not) are ever counted, so a
            runtime's own bookkeeping and other writers do not shift the count.
        kill_on_renew: Crash on the nth lease renewal, after the store renewed the
            lease (a successor must wait out the whole fresh lease or take it over).
        crash: What "crash" means; SIGKILL of this process by default.
    """

    def __init__(
        self,
        inner: EventStore,
        *,
        kill_before_append: int | None = None,
        kill_after_append: int | None = None,
        event_type: str | None = None,
        kill_on_renew: int | None = None,
        crash: Callable[[], object] = sigkill_self,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.kill_before_append = kill_before_append
        self.kill_after_append = kill_after_append
        self.event_type = event_type
        self.kill_on_renew = kill_on_renew
        self.crash = crash
        #: Counted appends and lease renewals so far (for tests that aim by counting).
        self.appends = 0
        self.renewals = 0

    def _counts(self, stream_id: str, events: Sequence[NewEvent]) -> bool:
        if run_id_of(stream_id) is None:
            return False
        return self.event_type is None or any(e.type == self.event_type for e in events)

    async def __aenter__(self) -> FaultyStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the inner store."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the inner store."""
        await self.inner.close()

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        epoch: int | None = None,
    ) -> AppendResult:
        """Append through the inner store, crashing before or after if this is the one."""
        return await self._faulted(
            self._counts(stream_id, events),
            lambda: self.inner.append(
                stream_id, events, expected_version=expected_version, epoch=epoch
            ),
        )

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append atomically through the inner store; counted like one append.

        It is counted when any of its streams would be counted as a single append.
        """
        return await self._faulted(
            any(self._counts(a.stream_id, a.events) for a in appends),
            lambda: self.inner.append_many(appends),
        )

    async def _faulted(self, counted: bool, write: Callable[[], Awaitable[T]]) -> T:
        if counted:
            self.appends += 1
            if self.appends == self.kill_before_append:
                self.crash()
        result = await write()
        if counted and self.appends == self.kill_after_append:
            self.crash()
        return result

    async def read_stream(
        self, stream_id: str, *, from_seq: int = 1, limit: int | None = None
    ) -> list[Event]:
        """Forwarded."""
        return await self.inner.read_stream(stream_id, from_seq=from_seq, limit=limit)

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """Forwarded."""
        return await self.inner.read_all(after=after, limit=limit)

    async def read_indexed(
        self, types: Sequence[str], *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """Forwarded."""
        return await self.inner.read_indexed(types, after=after, limit=limit)

    async def stream_version(self, stream_id: str) -> int:
        """Forwarded."""
        return await self.inner.stream_version(stream_id)

    async def head_position(self) -> int:
        """Forwarded."""
        return await self.inner.head_position()

    def subscribe(self, *, after: int = 0) -> AsyncIterator[Event]:
        """Forwarded."""
        return self.inner.subscribe(after=after)

    async def save_snapshot(self, stream_id: str, version: int, state: Mapping[str, Any]) -> None:
        """Forwarded."""
        await self.inner.save_snapshot(stream_id, version, state)

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """Forwarded."""
        return await self.inner.load_snapshot(stream_id)

    async def acquire_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Forwarded."""
        return await self.inner.acquire_lease(stream_id, owner, ttl)

    async def take_over_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Forwarded."""
        return await self.inner.take_over_lease(stream_id, owner, ttl)

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Renew through the inner store, crashing afterwards if this is the one."""
        self.renewals += 1
        renewed = await self.inner.renew_lease(lease, ttl)
        if self.renewals == self.kill_on_renew:
            self.crash()
        return renewed

    async def release_lease(self, lease: Lease) -> None:
        """Forwarded."""
        await self.inner.release_lease(lease)

    async def get_lease(self, stream_id: str) -> Lease | None:
        """Forwarded."""
        return await self.inner.get_lease(stream_id)


class FaultyClock:
    """A `Clock` that forwards to `inner` and crashes inside one chosen sleep.

    The runtime sleeps for many reasons at once (lease renewal every ttl/3, inbox
    polling, retry back-off, durable timers), so a sleep is counted only when its
    length lies strictly between `longer_than` and `shorter_than`; pick the window so
    only the sleeps you aim at fall in it. The chosen sleep runs half its length and
    then crashes, so the process dies *inside* the back-off or timer, not before it.

    Args:
        inner: The real clock.
        kill_in_sleep: Crash inside the nth counted sleep; None never crashes.
        longer_than: Count only sleeps longer than this many seconds.
        shorter_than: Count only sleeps shorter than this many seconds.
        crash: What "crash" means; SIGKILL of this process by default.
    """

    def __init__(
        self,
        inner: Clock,
        *,
        kill_in_sleep: int | None = None,
        longer_than: float = 0.0,
        shorter_than: float = float("inf"),
        crash: Callable[[], object] = sigkill_self,
    ) -> None:
        self.inner = inner
        self.kill_in_sleep = kill_in_sleep
        self.longer_than = longer_than
        self.shorter_than = shorter_than
        self.crash = crash
        #: Counted sleeps so far.
        self.sleeps = 0

    def now(self) -> float:
        """Forwarded."""
        return self.inner.now()

    def monotonic(self) -> float:
        """Forwarded."""
        return self.inner.monotonic()

    def timeout(self, delay: float | None) -> TimeoutScope:
        """Forwarded."""
        return self.inner.timeout(delay)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the inner clock, crashing halfway through if this is the one."""
        if not self.longer_than < seconds < self.shorter_than:
            await self.inner.sleep(seconds)
            return
        self.sleeps += 1
        if self.sleeps != self.kill_in_sleep:
            await self.inner.sleep(seconds)
            return
        await self.inner.sleep(seconds / 2)
        self.crash()
        await self.inner.sleep(seconds / 2)  # reached only when `crash` returns


if TYPE_CHECKING:  # mypy proves here that the wrappers satisfy the protocols

    def _as_store(store: FaultyStore) -> EventStore:
        return store

    def _as_clock(clock: FaultyClock) -> Clock:
        return clock
