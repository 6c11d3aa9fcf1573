"""The memory manager: the single writer of a memory, fenced by its lease epoch.

Linearizable writes need one place that decides, in one order, whether each
compare-and-set still holds. That place is the manager: a durable actor in the
Akka Persistence sense, whose journal is the memory stream and whose mailbox is the
request stream (see `_state`). It holds the memory stream's lease; every write it
makes carries the lease's epoch and the stream version it decided on, so the store
refuses a write from a manager that was taken over (`FencedError`) and a write from
anyone racing it (`ConcurrencyError`): a paused-then-resumed old manager writes
nothing. A new manager (a restart, or `take_over=True` with a larger epoch) folds
the memory stream, finds there the last request answered, and answers the rest, so
a request made while the old manager was dying is answered by the new one, and an
acknowledged write (one whose outcome is in the stream) is never lost or redone.

Run it in any process with `open_memory_manager`, or as a durable actor
(`_actor.memory_manager`, supervised and resumed like any actor run). Rejected:
writes through the actor's mailbox. A run journals each message it takes and each
reply it sends in streams of its own: five writes and two mailbox polls per
compare-and-set, where this costs one write in process (and one request plus one
write from another process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .._clock import Clock, SystemClock
from .._errors import (
    ConcurrencyError,
    EventDataError,
    FencedError,
    StoreUnavailableError,
)
from ..journal import Event, EventStore, Lease, Metadata, NewEvent
from ._state import (
    CONFLICT,
    REFUSED,
    REQUESTED,
    WRITTEN,
    Author,
    MemoryState,
    Mode,
    Outcome,
    memory_stream,
    request_stream,
)

logger = logging.getLogger("phalanx")

#: Longest pause between two looks at the request stream when it is idle; after a
#: request the manager looks again at once and backs off from a tenth of this.
POLL_INTERVAL = 0.02
#: Requests read from the request stream at once.
PAGE = 500


@dataclass(frozen=True, slots=True)
class Request:
    """A write asked of the manager: `cas` (based on a version) or `put` (blind)."""

    request: str
    mode: Mode
    key: str
    value: Any
    based_on: int
    author: Author

    def to_json(self) -> dict[str, Any]:
        """The `MemoryRequested` data."""
        return {
            "request": self.request,
            "mode": self.mode,
            "key": self.key,
            "value": self.value,
            "based_on": self.based_on,
            "author": self.author.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Request:
        """Rebuild from `to_json`.

        Raises:
            KeyError, ValueError, TypeError: not a request.
        """
        mode = data["mode"]
        if mode not in ("cas", "put") or not isinstance(data["key"], str):
            raise ValueError(f"not a memory request: {data!r}")
        return cls(
            request=str(data["request"]),
            mode=mode,
            key=data["key"],
            value=data["value"],
            based_on=int(data["based_on"]),
            author=Author.from_json(data.get("author")),
        )


def decide(state: MemoryState, request: Request) -> tuple[str, int]:
    """The manager's one decision: the outcome event type, and the key's version then.

    A `put` always writes. A `cas` writes if the key is still at the version it was
    based on, conflicts if the key moved past it, and is refused for a version the key
    never had (below 0 or above the current one).
    """
    current = state.version_of(request.key)
    if request.mode == "put":
        return WRITTEN, current
    if request.based_on < 0 or request.based_on > current:
        return REFUSED, current
    if request.based_on < current:
        return CONFLICT, current
    return WRITTEN, current


class MemoryManager:
    """The single writer of memory `name`: decides every write, in one order, under a lease.

    Made by `open_memory_manager`, which starts it (taking the lease and folding the
    memory) and stops it (giving the lease back). While it runs it answers requests
    from any process through the request stream, and `submit` answers callers in its
    own process without that round trip.

    Raises (from `submit`):
        FencedError: this manager was taken over (a larger epoch holds the lease);
            it writes nothing more.
        EventDataError: a value that cannot be journaled (not JSON, too large);
            nothing was written.
    """

    def __init__(
        self,
        store: EventStore,
        name: str,
        *,
        owner: str | None = None,
        lease_ttl: float = 10.0,
        clock: Clock | None = None,
        poll: float = POLL_INTERVAL,
    ) -> None:
        self.store = store
        self.name = name
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:memory:{name}"
        self.lease_ttl = lease_ttl
        self.clock: Clock = clock or SystemClock()
        self.poll = poll
        self.state = MemoryState(name)
        self._stream = memory_stream(name)
        self._lease: Lease | None = None
        self._lock = asyncio.Lock()
        self._fenced: FencedError | None = None
        self._stopped = asyncio.Event()
        self._served = 0

    @property
    def epoch(self) -> int:
        """The lease epoch this manager writes under (its fencing token)."""
        if self._lease is None:
            raise RuntimeError("the memory manager has not started: use open_memory_manager")
        return self._lease.epoch

    def decide(self, state: MemoryState, request: Request) -> tuple[str, int]:
        """See the module function `decide` (a method, so a test can plant a bug in it)."""
        return decide(state, request)

    async def start(self, *, take_over: bool) -> None:
        """Take the lease (at once and with a larger epoch if `take_over`), fold the memory."""
        if take_over:
            self._lease = await self.store.take_over_lease(self._stream, self.owner, self.lease_ttl)
        else:
            self._lease = await self.store.acquire_lease(self._stream, self.owner, self.lease_ttl)
        await self._catch_up()
        self._served = self.state.request_cursor

    async def _catch_up(self) -> None:
        while events := await self.store.read_stream(
            self._stream, from_seq=self.state.position + 1, limit=5000
        ):
            for event in events:
                self.state.apply(event)

    async def submit(self, request: Request, *, request_seq: int | None = None) -> Outcome:
        """Decide `request` and journal the outcome; a request seen before gets its answer.

        Raises:
            FencedError: this manager was taken over.
            EventDataError: a value that cannot be journaled; nothing was written.
        """
        async with self._lock:
            known = self.state.outcomes.get(request.request)
            if known is not None:
                return known
            if self._fenced is not None:
                raise self._fenced
            while True:
                event = self._outcome_event(request, request_seq)
                try:
                    result = await self.store.append(
                        self._stream,
                        [event],
                        expected_version=self.state.position,
                        epoch=self.epoch,
                    )
                except FencedError as exc:
                    self._fenced = exc
                    raise
                except ConcurrencyError:
                    # The stream moved past what we folded: an append of ours whose
                    # answer an outage lost, or (fenced by the store) a manager that
                    # lost the lease. Fold what is there; a request already answered
                    # there keeps that answer, anything else is decided again.
                    await self._catch_up()
                    known = self.state.outcomes.get(request.request)
                    if known is not None:
                        return known
                    continue
                recorded = Event(
                    stream_id=self._stream,
                    seq=result.version,
                    position=result.position,
                    type=event.type,
                    data=dict(event.data),
                    metadata=event.metadata,
                    epoch=self.epoch,
                    recorded_at=self.clock.now(),
                )
                self.state.apply(recorded)
                return self.state.outcomes[request.request]

    def _outcome_event(self, request: Request, request_seq: int | None) -> NewEvent:
        kind, current = self.decide(self.state, request)
        data: dict[str, Any] = {
            "request": request.request,
            "key": request.key,
            "based_on": current if request.mode == "put" else request.based_on,
            "author": request.author.to_json(),
        }
        if request_seq is not None:
            data["request_seq"] = request_seq
        if kind == WRITTEN:
            data.update(version=current + 1, value=request.value, mode=request.mode)
        else:
            data["current_version"] = current
        if kind == REFUSED:
            data["reason"] = "version"
        metadata = Metadata(run_id=request.author.run, agent_id=request.author.agent)
        return NewEvent(kind, data, metadata)

    # -- serving other processes ---------------------------------------------------------

    @property
    def fenced(self) -> FencedError | None:
        """Why this manager stopped writing (it was taken over), or None while it may."""
        return self._fenced

    async def until_fenced(self) -> FencedError:
        """Wait until this manager is taken over (a process that only hosts a manager)."""
        await self._stopped.wait()
        assert self._fenced is not None
        return self._fenced

    async def serve(self) -> None:
        """Answer the request stream until cancelled or fenced; renew the lease meanwhile."""
        async with asyncio.TaskGroup() as group:
            renewing = group.create_task(self._renew())
            pause = self.poll / 10
            while self._fenced is None:
                try:
                    served = await self._serve_page()
                except FencedError:
                    break  # recorded in _fenced by submit
                except StoreUnavailableError as exc:
                    # An outage: the requests wait in their stream; look again later
                    # (the lease renewal decides whether we still own the memory).
                    logger.warning("memory %s: cannot read requests: %s", self.name, exc)
                    served = False
                if served:
                    pause = self.poll / 10
                    continue
                await self.clock.sleep(pause)
                pause = min(pause * 2, self.poll)
            renewing.cancel()
            logger.warning("memory %s: manager stopped: %s", self.name, self._fenced)
            self._stopped.set()

    async def _serve_page(self) -> bool:
        events = await self.store.read_stream(
            request_stream(self.name), from_seq=self._served + 1, limit=PAGE
        )
        for event in events:
            self._served = event.seq
            if event.type != REQUESTED:
                continue
            try:
                request = Request.from_json(event.data)
            except (KeyError, ValueError, TypeError):
                logger.warning(
                    "memory %s: skipping malformed request at seq %d", self.name, event.seq
                )
                continue
            try:
                await self.submit(request, request_seq=event.seq)
            except EventDataError as exc:
                # The request itself was journaled, so its value is JSON; only the
                # outcome's few extra bytes can push it past the limit.
                await self._refuse(request, event.seq, str(exc))
        return bool(events)

    async def _refuse(self, request: Request, request_seq: int, reason: str) -> None:
        async with self._lock:
            data = {
                "request": request.request,
                "key": request.key,
                "based_on": request.based_on,
                "current_version": self.state.version_of(request.key),
                "reason": reason,
                "request_seq": request_seq,
                "author": request.author.to_json(),
            }
            result = await self.store.append(
                self._stream,
                [NewEvent(REFUSED, data)],
                expected_version=self.state.position,
                epoch=self.epoch,
            )
            await self._catch_up()
            assert self.state.position >= result.version

    async def _renew(self) -> None:
        while self._fenced is None and self._lease is not None:
            await self.clock.sleep(self.lease_ttl / 3)
            try:
                self._lease = await self.store.renew_lease(self._lease, self.lease_ttl)
            except FencedError as exc:
                self._fenced = exc
            except StoreUnavailableError as exc:
                logger.warning("memory %s: lease renewal failed, retrying: %s", self.name, exc)

    async def release(self) -> None:
        """Give the lease back so the next manager need not wait for it to expire."""
        if self._lease is not None and self._fenced is None:
            with contextlib.suppress(FencedError):
                await self.store.release_lease(self._lease)


@contextlib.asynccontextmanager
async def open_memory_manager(
    store: EventStore,
    name: str,
    *,
    take_over: bool = False,
    owner: str | None = None,
    lease_ttl: float = 10.0,
    clock: Clock | None = None,
    poll: float = POLL_INTERVAL,
) -> AsyncIterator[MemoryManager]:
    """Run the manager of memory `name` here, for as long as the block lasts.

    Example::

        async with open_memory_manager(store, "plan") as manager:
            memory = manager.memory(agent="planner")
            await memory.linearizable().cas("plan", {"steps": []}, based_on=0)

    `take_over=True` takes the lease at once with a larger epoch (the old manager
    died, or hangs); otherwise a live manager elsewhere is `LeaseHeldError`.

    A manager taken over while it runs stops serving and writing (`submit` raises
    `FencedError`, and `manager.fenced` says so); the block itself carries on.

    Raises:
        LeaseHeldError: another manager holds the memory's live lease.
    """
    manager = MemoryManager(store, name, owner=owner, lease_ttl=lease_ttl, clock=clock, poll=poll)
    await manager.start(take_over=take_over)
    try:
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(manager.serve())
            try:
                yield manager
            finally:
                serving.cancel()
    finally:
        # Shielded: a cancelled caller still hands the lease back, or the next
        # manager waits out the TTL.
        await asyncio.shield(manager.release())
