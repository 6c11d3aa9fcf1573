"""A connection to a shared memory: reads from this process's projection, writes via the manager.

`Memory` is what an agent holds. It hands out one handle per consistency model
(`linearizable()`, `snapshot()`, `eventual(...)`, see `_handles`), and carries the
two paths every handle needs: the projection it reads (shared by every connection
to the same memory in this process), and the way to the manager it writes through
(the manager itself, when it runs in this process; otherwise the request stream,
and a wait for the answer in the memory stream).

Inside a workflow, use `memory(ctx, name)` (`_workflow`): the same object, whose
reads and writes are journaled in the run, so a replay returns what was seen then.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .._clock import Clock, SystemClock
from .._entropy import Entropy, SystemEntropy
from .._errors import EventDataError, MemoryUnavailableError, PayloadTooLargeError, UserError
from ..journal import DEFAULT_MAX_PAYLOAD_BYTES, EventStore, Metadata, NewEvent, find_problem
from ._handles import Eventual, Linearizable, Snapshot
from ._manager import Request
from ._projection import Projection
from ._state import REQUESTED, WRITTEN, Author, Mode, Outcome, memory_stream, request_stream

#: Longest pause between two looks for a manager's answer.
ANSWER_POLL = 0.02

#: Performs an operation given its request id (None: make one); returns its JSON result.
Perform = Callable[[str | None], Awaitable[dict[str, Any]]]


class Recorder(Protocol):
    """Runs a memory operation, journaled in a run (`_workflow`) or not (plain use)."""

    async def __call__(
        self, kind: str, name: str, event_type: str, perform: Perform
    ) -> dict[str, Any]:
        """The operation's JSON result: recorded on replay, else `perform`ed (and recorded)."""
        ...


async def unrecorded(kind: str, name: str, event_type: str, perform: Perform) -> dict[str, Any]:
    """The recorder outside workflows: nothing to replay, nothing journaled in a run."""
    return await perform(None)


class Submitter(Protocol):
    """A manager running in this process (`MemoryManager`), as the client sees it."""

    async def submit(self, request: Request, *, request_seq: int | None = None) -> Outcome:
        """Decide and journal `request`."""
        ...


# One projection per store and memory in this process, shared by every connection.
_projections: weakref.WeakKeyDictionary[EventStore, dict[str, Projection]] = (
    weakref.WeakKeyDictionary()
)


def shared_projection(store: EventStore, name: str, clock: Clock) -> Projection:
    """This process's projection of memory `name` in `store` (made on first use)."""
    per_store = _projections.setdefault(store, {})
    projection = per_store.get(name)
    if projection is None:
        projection = per_store[name] = Projection(store, name, clock)
    return projection


def check_name(name: str) -> None:
    """Refuse a memory name that cannot be part of a stream id.

    Raises:
        UserError: an empty name, or one with NUL or a lone surrogate.
    """
    if not isinstance(name, str) or not name or "\x00" in name or not name.isprintable():
        raise UserError(
            f"memory name {name!r} is not usable: give a non-empty printable string "
            "(it names the memory's streams)"
        )


class Memory:
    """A connection to shared memory `name`: pick a model per handle, write through the manager.

    Example::

        memory = Memory(store, "plan", agent="planner")
        plan = memory.linearizable()
        await plan.cas("plan", {"steps": ["research"]}, based_on=0)
        seen = await plan.read("plan")            # value, version 1, position
        await plan.update("plan", lambda p: {"steps": [*p["steps"], "write"]})
        view = await memory.snapshot()            # pinned: sees nothing newer
        recent = await memory.eventual(max_positions=100).read("plan")

    `manager` is a `MemoryManager` running in this process: writes go to it directly.
    Without it, writes go through the memory's request stream to whichever manager
    holds the memory's lease, in any process; `timeout` bounds the wait for its answer.
    """

    def __init__(
        self,
        store: EventStore,
        name: str,
        *,
        agent: str | None = None,
        run: str | None = None,
        manager: Submitter | None = None,
        clock: Clock | None = None,
        entropy: Entropy | None = None,
        timeout: float = 30.0,
        recorder: Recorder = unrecorded,
    ) -> None:
        check_name(name)
        self.store = store
        self.name = name
        self.author = Author(agent=agent, run=run)
        self.clock: Clock = clock or SystemClock()
        self.entropy: Entropy = entropy or SystemEntropy()
        self.timeout = timeout
        self.projection = shared_projection(store, name, self.clock)
        self.recorder = recorder
        self._manager = manager

    # -- the three models ------------------------------------------------------------

    def linearizable(self) -> Linearizable:
        """Reads see every write acknowledged before them; writes are compare-and-set."""
        return Linearizable(self)

    async def snapshot(self) -> Snapshot:
        """Pin the whole memory at its current position; reads see nothing newer."""
        result = await self.recorder(
            "memory_snapshot", self.name, "MemorySnapshotPinned", self._pin
        )
        return Snapshot(self, int(result["position"]))

    def eventual(
        self,
        *,
        max_positions: int | None = None,
        max_seconds: float | None = None,
        wait: float = 0.0,
        refresh_after: float | None = 1.0,
    ) -> Eventual:
        """Reads from this process's projection as it is, each saying how stale it was.

        With a bound (`max_positions` behind the head, `max_seconds` since the
        projection was last at the head), a read that would be staler waits up to
        `wait` seconds for the projection to catch up, then raises `MemoryStaleError`.
        Without one, a read catches the projection up itself once it has been behind
        for `refresh_after` seconds (None: never, for a projection fed by others), so
        eventual reads do converge.
        """
        return Eventual(
            self,
            max_positions=max_positions,
            max_seconds=max_seconds,
            wait=wait,
            refresh_after=refresh_after,
        )

    async def _pin(self, _: str | None) -> dict[str, Any]:
        head = await self.store.stream_version(memory_stream(self.name))
        await self.projection.catch_up(to=head)
        return {"position": head}

    # -- writing -----------------------------------------------------------------------

    def check_value(self, value: Any) -> None:
        """Refuse, before anything is sent, a value no write could journal.

        Raises:
            EventDataError: not JSON (names the path of the first bad value).
            PayloadTooLargeError: encoded above the store's payload limit.
        """
        stream = memory_stream(self.name)
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError):
            problem = find_problem(value, "$.value") or ("$.value", "not JSON-serialisable")
            raise EventDataError(
                stream_id=stream, event_type=WRITTEN, reason=problem[1], path=problem[0]
            ) from None
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        limit = int(getattr(self.store, "max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES))
        if size > limit:
            raise PayloadTooLargeError(stream_id=stream, event_type=WRITTEN, size=size, limit=limit)

    async def send(
        self, request_id: str | None, mode: Mode, key: str, value: Any, based_on: int
    ) -> Outcome:
        """Have the manager decide one write; its outcome (written, conflict or refused).

        Raises:
            MemoryUnavailableError: no manager answered within `timeout`.
            FencedError: the manager in this process was taken over.
        """
        if not isinstance(key, str) or not key:
            raise UserError(f"memory key {key!r} is not usable: give a non-empty string")
        self.check_value(value)
        request = Request(
            request=request_id or self.entropy.uuid(),
            mode=mode,
            key=key,
            value=value,
            based_on=based_on,
            author=self.author,
        )
        if self._manager is not None:
            return await self._manager.submit(request)
        metadata = Metadata(run_id=self.author.run, agent_id=self.author.agent)
        await self.store.append(
            request_stream(self.name), [NewEvent(REQUESTED, request.to_json(), metadata)]
        )
        return await self._answer(request.request)

    async def _answer(self, request_id: str) -> Outcome:
        deadline = self.clock.monotonic() + self.timeout
        pause = ANSWER_POLL / 100
        while True:
            await self.projection.catch_up()
            outcome = self.projection.state.outcomes.get(request_id)
            if outcome is not None:
                return outcome
            if self.clock.monotonic() >= deadline:
                raise MemoryUnavailableError(
                    memory=self.name, request=request_id, timeout=self.timeout
                )
            await self.clock.sleep(pause)
            pause = min(pause * 2, ANSWER_POLL)
