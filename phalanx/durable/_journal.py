"""The runner's pen: the only way a run writes to its own stream.

Every write carries the runner's lease epoch and the version it last wrote, so a
runner that was taken over is refused by the store itself. Once refused, the pen is
dead: it raises at once on every later write, so a fenced runner writes nothing more.

The pen also rides out store outages shorter than the lease. A write or a lease
renewal that finds the store unavailable is tried again with back-off until the lease
would expire. Retrying an append is safe because it carries its expected version: if
the first try committed before the connection died (an ambiguous commit), the retry
is refused with `ConcurrencyError`, and reading the stream back shows whether the
events there are ours (our epoch, our types, right where we wrote them). Past the
lease's expiry another runner may take the run over, so the pen gives up with
`LeaseLostError`, writes nothing more, and the run stays resumable. The outage is
reported once, in one line, and its end once more.

Events can wait for the next append's commit (`defer`, `hold`): a step's
`StepStarted` rides in the same transaction as its `StepCompleted`, so a quick step
costs one commit, not two. Waiting events are written before any effect that follows
them could be journaled. A held start that waited `hold_s` (a long step) is written
on its own by `write_held`, so the step shows as running while it runs.

Appends are group-committed within the run: an append that comes while another is in
flight queues its events, and the first queued caller writes every queued one in the
next append (a fan-out's thousand branches finish in a few appends, not a thousand).
Each caller still returns only once its own events committed and sees the outcome it
would have seen alone: an append the store refuses for its data is split, caller by
caller, so only the culprit's is refused; a caller cancelled before its events were
taken is dropped from the queue, nothing of it written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._clock import Clock, SystemClock
from .._errors import (
    ConcurrencyError,
    EventDataError,
    FencedError,
    LeaseLostError,
    StoreUnavailableError,
)
from ..journal import AppendResult, EventStore, Lease, Metadata, NewEvent, StreamAppend
from ._history import STATUS_EVENTS, run_stream

logger = logging.getLogger("phalanx")

T = TypeVar("T")

#: Back-off between tries while the store is unavailable: first and longest wait.
FIRST_RETRY = 0.05
LONGEST_RETRY = 1.0
#: How long a held start waits for an append to ride in before it is written alone.
#: Shorter shows a running step sooner; each step longer than it pays a second
#: commit (~40 µs here), under 0.1% of a 50 ms step.
HOLD_S = 0.05


class _Queued:
    """One caller's events waiting for an append in flight to end, and their fate."""

    __slots__ = ("abandoned", "error", "events", "written")

    def __init__(self, events: tuple[NewEvent, ...]) -> None:
        self.events = events
        self.written = False
        #: Its caller gave up (cancelled, or refused): written only if already taken.
        self.abandoned = False
        #: Set when the store refused these events for their data (the caller's alone).
        self.error: EventDataError | None = None


class RunJournal:
    """Appends a run's events under its lease, in order, one writer at a time."""

    def __init__(
        self,
        store: EventStore,
        lease: Lease,
        version: int,
        metadata: Metadata,
        *,
        clock: Clock | None = None,
        hold_s: float = HOLD_S,
    ):
        self.store = store
        self.lease = lease
        self.stream_id = run_stream(metadata.run_id or "")
        self.version = version
        self.metadata = metadata
        self.fenced: FencedError | None = None
        #: Set when an outage outlasted the lease: every later write raises it.
        self.lost: LeaseLostError | None = None
        self.closed: str | None = None
        #: Successful appends so far; watchers read progress from it.
        self.writes = 0
        self._clock: Clock = clock or SystemClock()
        self._outage_since: float | None = None
        self._pending: list[NewEvent] = []
        #: Held starts still pending (by identity); set while there are any, since when.
        self.hold_s = hold_s
        self._held: set[int] = set()
        self._holding = asyncio.Event()
        self._held_since = 0.0
        #: (version, deferred events, queued appends) of an append cancelled in
        #: flight, until settled.
        self._unsure: tuple[int, int, list[_Queued]] | None = None
        self._lock = asyncio.Lock()
        #: Callers' events waiting for the next append, and those the one in flight took.
        self._queue: list[_Queued] = []
        #: Set when the append in flight ends (then dropped): queued callers wait on it.
        self._ended: asyncio.Event | None = None

    def defer(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Queue an event to be written with the next append (recorded values).

        A deferred event reaches the journal before any effect that could depend on
        it, because every effect is journaled by an append that flushes it first.
        """
        self._pending.append(NewEvent(event_type, data, self.metadata))

    def hold(self, event: NewEvent) -> None:
        """Queue a step's start for the next append's commit, or alone after `hold_s`."""
        if not self._held:
            self._held_since = self._clock.monotonic()
            self._holding.set()
        self._held.add(id(event))
        self._pending.append(event)

    async def write_held(self) -> None:
        """Forever: write held starts that waited `hold_s` for an append in vain.

        Run by the runner beside the workflow. Wakes about twice per `hold_s` while
        steps keep coming, never per step.
        """
        while True:
            await self._holding.wait()
            wait = self._held_since + self.hold_s - self._clock.monotonic()
            if wait > 0:
                await self._clock.sleep(wait)
                continue
            if self.fenced or self.lost or self.closed:
                return  # nothing more is written: the pending events die with the runner
            await self.flush()

    def close(self, reason: str) -> None:
        """Refuse every later write: the runner was stopped and must write nothing more.

        A refused write raises `asyncio.CancelledError(reason)`: the workflow is being
        cancelled anyway, and its cleanup unwinds without journaling anything.
        """
        self.closed = reason

    async def append(
        self, event_type: str, data: Mapping[str, Any], *, tell: StreamAppend | None = None
    ) -> None:
        """Write one event (after any deferred ones), or raise if fenced out.

        With `tell`, that append to another stream (a notice to a parent's inbox)
        commits in the same transaction: both land, or neither.
        """
        event = NewEvent(event_type, data, self.metadata, indexed=event_type in STATUS_EVENTS)
        await self.flush(event, tell=tell)

    async def flush(self, *extra: NewEvent, tell: StreamAppend | None = None) -> None:
        """Write deferred events and `extra` (and `tell`) in one atomic append.

        The append may be shared: see the module's docstring on group commit.

        Raises:
            FencedError: another runner took the run over.
            LeaseLostError: the store stayed unavailable until the lease expired.
            EventDataError: the store refused `extra` for its data (nothing written).
        """
        self.check_open()
        if tell is not None or not self._lock.locked():
            # The common case, and the only one of a run that does one thing at a time.
            # A notice to another stream is never queued: it goes in its own writer's
            # append (the store takes one append per stream in a transaction).
            async with self._lock:
                await self._write(extra, tell)
            return
        if not extra:
            queued = self._queue[-1] if self._queue else None
            if queued is None and not self._pending:
                return
        else:
            queued = _Queued(extra)
            self._queue.append(queued)
        try:
            # (Another caller's queued events may also be dropped, when it gives up.)
            while queued is None or not (queued.written or queued.abandoned):
                if queued is not None and queued.error is not None:
                    raise queued.error
                if self._lock.locked():
                    # An append is in flight: the next one carries ours (whoever makes it).
                    if self._ended is None:
                        self._ended = asyncio.Event()
                    await self._ended.wait()
                    continue
                async with self._lock:
                    await self._write((), None)
                if queued is None:
                    return
        except BaseException:
            # Cancelled, or refused as a conflict or a fence: what was not taken yet is
            # never written, as when this caller wrote alone.
            if queued is not None:
                queued.abandoned = True
                if queued in self._queue:
                    self._queue.remove(queued)
            raise

    async def _write(self, extra: tuple[NewEvent, ...], tell: StreamAppend | None) -> None:
        """Append deferred events, the queued callers' and `extra` (with `tell`), locked."""
        taken: list[_Queued] = []
        try:
            self.check_open()
            if self._unsure is not None:
                unsure = self._unsure
                await self._ride_out(lambda _: self._settle(*unsure))
            held = len(self._pending)
            taken, self._queue = self._queue, taken
            if taken:
                batch = [*self._pending, *(e for q in taken for e in q.events), *extra]
            else:
                batch = [*self._pending, *extra]
            if not batch:
                return
            try:
                try:
                    # The first try directly: a coroutine less on the hottest path.
                    result = await self._append(batch, False, tell)
                except BaseException as exc:
                    result = await self._recover(exc, batch, held, taken, tell)
            except EventDataError:
                if not taken:
                    raise
                # Someone's data was refused: write caller by caller, so the refusal
                # is the culprit's alone (the store wrote nothing of the whole).
                await self._write_apart(taken, extra, tell)
                return
            self._written(held)
            for queued in taken:
                queued.written = True
            self.version = result.version
            self.writes += 1
        finally:
            # Taken but neither written nor refused (the append failed, or was cancelled
            # and `_settle` will tell): the next append carries them.
            if taken:
                in_doubt = self._unsure[2] if self._unsure is not None else []
                self._queue[:0] = [
                    q
                    for q in taken
                    if not (q.written or q.error or q.abandoned)
                    and not any(q is u for u in in_doubt)
                ]
            ended, self._ended = self._ended, None
            if ended is not None:
                ended.set()

    async def _append_riding(
        self, batch: list[NewEvent], held: int, taken: list[_Queued], tell: StreamAppend | None
    ) -> AppendResult:
        """One append of `batch`, riding out an outage; marks the pen fenced or unsure."""
        try:
            return await self._append(batch, False, tell)
        except BaseException as exc:
            return await self._recover(exc, batch, held, taken, tell)

    async def _recover(
        self,
        failed: BaseException,
        batch: list[NewEvent],
        held: int,
        taken: list[_Queued],
        tell: StreamAppend | None,
    ) -> AppendResult:
        """After a first try of `batch` raised `failed`: ride out an outage, or re-raise."""
        try:
            if isinstance(failed, StoreUnavailableError) and not isinstance(failed, LeaseLostError):
                return await self._ride_out(lambda retry: self._append(batch, retry, tell), failed)
            raise failed
        except FencedError as exc:
            self.fenced = exc
            raise
        except asyncio.CancelledError:
            # Cancelled mid-append (a deadline scope, a cancel request): the write
            # may have committed without us learning the new version. The next
            # write finds out first, so it is not refused as a conflict.
            self._unsure = (self.version, held, taken)
            raise

    async def _write_apart(
        self, taken: list[_Queued], extra: tuple[NewEvent, ...], tell: StreamAppend | None
    ) -> None:
        """Write each queued caller's events (then `extra`, `tell`) in an append of its own."""
        chunks: list[tuple[tuple[NewEvent, ...], _Queued | None]] = [
            *((q.events, q) for q in taken),
            (extra, None),
        ]
        for events, queued in chunks:
            if not events and (queued is not None or tell is None):
                continue
            held = len(self._pending)
            batch = [*self._pending, *events]
            try:
                if queued is None:
                    result = await self._append_riding(batch, held, [], tell)
                else:
                    result = await self._append_riding(batch, held, [queued], None)
            except EventDataError as exc:
                if queued is None:
                    raise
                queued.error = exc
                continue
            self._written(held)
            if queued is not None:
                queued.written = True
            self.version = result.version
            self.writes += 1

    def _written(self, count: int) -> None:
        """Drop the first `count` waiting events: they are in the journal now."""
        for event in self._pending[:count]:
            self._held.discard(id(event))
        del self._pending[:count]
        if not self._held:
            self._holding.clear()
        else:
            self._held_since = self._clock.monotonic()  # held during the append: anew

    async def write_last(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Write the runner's note that it stopped, once the journal is closed.

        The one write `close` still allows: one attempt, no riding out (the caller
        bounds it), after settling an append the stop cancelled in flight, so the
        note is not refused as a conflict. Deferred events are left out: no effect
        follows them, as after a crash.

        Raises:
            FencedError: another runner took the run over.
        """
        async with self._lock:
            if self.fenced is not None:
                raise self.fenced
            if self._unsure is not None:
                await self._settle(*self._unsure)
            note = NewEvent(event_type, data, self.metadata)
            result = await self.store.append(
                self.stream_id, [note], expected_version=self.version, epoch=self.lease.epoch
            )
            self.version = result.version
            self.writes += 1

    async def _settle(self, version: int, deferred: int, taken: list[_Queued]) -> None:
        """Learn whether an append cancelled in flight committed (only we write here)."""
        now = await self.store.stream_version(self.stream_id)
        if now > version:
            # It did: its deferred events are in the journal, its own event with them
            # (whose writer saw the cancel instead of the success), and the queued
            # callers' it carried.
            self._written(deferred)
            for queued in taken:
                queued.written = True
            self.version = now
            self.writes += 1
        else:
            # It did not: the queued callers' still waiting go in the next append.
            self._queue[:0] = [q for q in taken if not q.abandoned]
        self._unsure = None

    async def renew(self, ttl: float) -> Lease:
        """Extend the lease by `ttl` from now, riding out a short outage.

        Raises:
            FencedError: the lease was taken over.
            LeaseLostError: the store stayed unavailable until the lease expired.
        """
        self.lease = await self._ride_out(lambda _: self.store.renew_lease(self.lease, ttl))
        return self.lease

    def check_open(self) -> None:
        """Raise as the next write would if this pen may write no more (see `flush`)."""
        if self.fenced is not None:
            raise self.fenced
        if self.lost is not None:
            raise self.lost
        if self.closed is not None:
            raise asyncio.CancelledError(self.closed)

    async def _append(
        self, batch: Sequence[NewEvent], retry: bool, tell: StreamAppend | None
    ) -> AppendResult:
        try:
            if tell is None:
                return await self.store.append(
                    self.stream_id, batch, expected_version=self.version, epoch=self.lease.epoch
                )
            own = StreamAppend(self.stream_id, batch, self.version, self.lease.epoch)
            return (await self.store.append_many([own, tell]))[0]
        except ConcurrencyError:
            if not retry:
                raise
            # An earlier try may have committed before the store went away (with
            # `tell`: all of it, as one transaction).
            landed = await self.store.read_stream(self.stream_id, from_seq=self.version + 1)
            ours = [(e.type, e.epoch) for e in landed] == [
                (n.type, self.lease.epoch) for n in batch
            ]
            if not ours:
                raise
            return AppendResult(landed[-1].seq, landed[-1].position)

    async def _ride_out(
        self, call: Callable[[bool], Awaitable[T]], failed: StoreUnavailableError | None = None
    ) -> T:
        """Run `call(retry)`, trying again through an outage until the lease expires.

        `failed` is the outage a first try (made by the caller) already met.
        """
        delay = FIRST_RETRY
        while True:
            if failed is not None:
                self.check_open()
                if self._clock.now() + delay >= self.lease.expires_at:
                    self.lost = self.lost or self._give_up(failed)
                    raise self.lost from failed
                self._report_outage(failed)
                await self._clock.sleep(delay)
                delay = min(delay * 2, LONGEST_RETRY)
            try:
                result = await call(failed is not None)
            except LeaseLostError:
                raise
            except StoreUnavailableError as exc:
                failed = exc
                continue
            if self._outage_since is not None:
                logger.warning(
                    "run %s: store back after %.1fs; carrying on",
                    self.metadata.run_id,
                    self._clock.monotonic() - self._outage_since,
                )
                self._outage_since = None
            return result

    def _report_outage(self, exc: StoreUnavailableError) -> None:
        if self._outage_since is not None:
            return
        self._outage_since = self._clock.monotonic()
        logger.warning(
            "run %s: store unavailable (%s); retrying until its lease expires in %.0fs",
            self.metadata.run_id,
            exc.reason,
            max(0.0, self.lease.expires_at - self._clock.now()),
        )

    def _give_up(self, exc: StoreUnavailableError) -> LeaseLostError:
        run_id = self.metadata.run_id
        return LeaseLostError(
            store=self.store.url,
            reason=f"run {run_id!r} could not reach the store before its lease expired "
            f"({exc.reason}); it stopped writing so another runner can take over safely, "
            f"and the run is resumable: phalanx resume {run_id}",
        )
