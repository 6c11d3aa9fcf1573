"""The simulated world: processes sharing one in-memory journal, and the faults they meet.

Every fault is planned from the seed before the run starts (`FaultPlan.draw`), by the
index of the store call it strikes, or by the virtual instant it happens at; what is
decided during the run (each store call's latency, a model call's fault) draws from
the world's own seeded generator. Latencies are what vary the interleaving from seed
to seed: which of two calls in flight returns first. So one seed is one world, and
it replays exactly.

Faults, by the name `phalanx simulate` counts them under:

- `crash`: the runner's process dies at a store call, before it reaches the store or
  after the store committed it (the write is durable, nobody heard of it). Its memory
  is gone: every task it had is cancelled and nothing it does afterwards reaches the
  store (a SIGKILL runs no `finally`). A new process resumes the run from the journal.
- `lost_ack`: an append commits, but the caller hears `StoreUnavailableError`.
- `unavailable`: the store refuses every call for a while.
- `duplicate`: a message (an append to a run's inbox or an actor's mailbox) is
  delivered twice.
- `race`: a second runner resumes the run while the first still holds its lease,
  waiting for it or (`force`) taking it over at once.
- `clock_jump`: virtual time leaps forward (a suspended VM, an NTP step), so leases
  and deadlines pass without their holders running.
- `model_fault`: the scripted model hangs, slows down, fails, is rate-limited or
  answers malformed output (`ScriptedModel` asks the world while a simulation runs).
- `tool_fault`: a tool call fails (a retryable `ToolFailed`), takes 5 s, or hangs.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .._errors import StoreUnavailableError
from .._simloop import SimulatedLoop
from ..journal import (
    AppendResult,
    Event,
    Lease,
    MemoryDatabase,
    MemoryEventStore,
    NewEvent,
    Snapshot,
    StreamAppend,
)

T = TypeVar("T")

#: Store call latencies, virtual seconds: ties (equal values) are as likely as not.
_LATENCIES = (0.0, 0.0, 0.001, 0.001, 0.002, 0.005)

#: Model faults the world injects, and how often each is drawn.
MODEL_FAULTS = ("slow", "error", "rate_limit", "hang", "malformed_json", "bad_tool_args")
#: Tool faults the world injects: a failed call, a slow one, one that never answers.
TOOL_FAULTS = ("error", "error", "slow", "hang")


def _carries_messages(stream_id: str) -> bool:
    """Whether a stream is a channel of messages (a run's inbox, an actor's mailbox)."""
    return stream_id.endswith((":inbox", ":mailbox"))


class ProcessCrash(BaseException):
    """The simulated process died here: like SIGKILL, nothing after this reaches the store.

    A `BaseException`, as a real death is no error anybody handles: the runtime's
    `except Exception` clauses let it through.
    """


@dataclass
class FaultPlan:
    """Which faults strike one seed's world, and where.

    Store calls are counted from 1 across every process; `crashes` maps a call's index
    to whether the process dies before the call or after it committed.
    """

    crashes: dict[int, Literal["before", "after"]] = field(default_factory=dict)
    lost_acks: frozenset[int] = frozenset()
    outages: dict[int, float] = field(default_factory=dict)
    duplicates: frozenset[int] = frozenset()
    race_at: float | None = None
    race_force: bool = False
    jump_at: float | None = None
    jump_by: float = 0.0
    model_fault_rate: float = 0.0
    tool_fault_rate: float = 0.0
    restart_delay: float = 0.0

    @classmethod
    def draw(
        cls, rng: random.Random, *, calls: int, duration: float, lease_ttl: float
    ) -> FaultPlan:
        """A plan for a run that made `calls` store calls over `duration` s without faults."""
        calls = max(calls, 1)
        span = max(duration, 0.001)

        def some(most: int, chance: float) -> list[int]:
            count = sum(rng.random() < chance for _ in range(most))
            return sorted(rng.randint(1, calls) for _ in range(count))

        plan = cls(
            crashes={n: rng.choice(("before", "after")) for n in some(3, 0.45)},
            lost_acks=frozenset(some(2, 0.25)),
            outages={n: rng.uniform(0.05, lease_ttl * 0.5) for n in some(1, 0.2)},
            duplicates=frozenset(some(2, 0.3)),
            restart_delay=rng.choice((0.0, 0.0, rng.uniform(0.0, 1.0))),
        )
        if rng.random() < 0.15:
            plan.race_at, plan.race_force = rng.uniform(0.0, span), rng.random() < 0.5
        if rng.random() < 0.1:
            plan.jump_at, plan.jump_by = rng.uniform(0.0, span), rng.uniform(0.5, 2 * lease_ttl)
        if rng.random() < 0.3:
            plan.model_fault_rate = rng.choice((0.05, 0.15, 0.3))
        if rng.random() < 0.2:
            plan.tool_fault_rate = rng.choice((0.1, 0.3))
        return plan


class World:
    """What every simulated process shares: the journal, the plan, the fault tally.

    Installed on the `SimulatedLoop` (`loop.world`) so seams far from the store, the
    scripted model's, can ask it for faults.
    """

    def __init__(self, loop: SimulatedLoop, plan: FaultPlan, seed: int) -> None:
        self.loop = loop
        self.plan = plan
        self.database = MemoryDatabase()
        self.rng = random.Random(f"world:{seed}")
        self.faults: Counter[str] = Counter()
        #: (virtual time, kind, detail) of every fault, for the trace.
        self.log: list[tuple[float, str, str]] = []
        self.calls = 0
        self.outage_until = -1.0

    def note(self, kind: str, detail: str) -> None:
        """Count one injected fault and log it."""
        self.faults[kind] += 1
        self.log.append((round(self.loop.time(), 6), kind, detail))

    def latency(self) -> float:
        """How long the next store call takes, in virtual seconds (0 to 5 ms)."""
        return self.rng.choice(_LATENCIES)

    def tool_fault(self, tool: str) -> str | None:
        """The fault this tool call meets (None: none), drawn from the seed."""
        if self.plan.tool_fault_rate <= 0 or self.rng.random() >= self.plan.tool_fault_rate:
            return None
        kind = self.rng.choice(TOOL_FAULTS)
        self.note("tool_fault", f"{kind} for {tool}")
        return kind

    def model_fault(self, agent: str) -> str | None:
        """The fault this model call meets (None: none), drawn from the seed."""
        if self.plan.model_fault_rate <= 0 or self.rng.random() >= self.plan.model_fault_rate:
            return None
        kind = self.rng.choice(MODEL_FAULTS)
        self.note("model_fault", f"{kind} for {agent}")
        return kind


class ProcessStore:
    """One simulated process's connection to the world's journal, faults included."""

    def __init__(self, world: World, process: SimProcess) -> None:
        self.world = world
        self.process = process
        self.inner = MemoryEventStore(world.database, name="sim")
        self.url = "memory://sim"

    async def open(self) -> None:
        """Open the inner store."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the inner store."""
        await self.inner.close()

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        world, process = self.world, self.process
        if process.dead:
            raise ProcessCrash(process.name)
        # A store call is I/O: it takes a seeded while, and other tasks run meanwhile.
        # Which of two calls in flight returns first is how one seed's interleaving
        # differs from another's.
        await asyncio.sleep(world.latency())
        if process.dead:
            raise ProcessCrash(process.name)
        world.calls += 1
        index = world.calls
        crash = world.plan.crashes.get(index)
        if crash == "before":
            process.kill(f"before {what} (store call {index})")
        outage = world.plan.outages.get(index)
        if outage is not None:
            world.outage_until = world.loop.time() + outage
            world.note("unavailable", f"{outage:.3f}s from store call {index}")
        if world.loop.time() < world.outage_until:
            raise StoreUnavailableError(store=self.url, reason="simulated outage")
        result = await call()
        if crash == "after":
            process.kill(f"after {what} committed (store call {index})")
        return result

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        epoch: int | None = None,
    ) -> AppendResult:
        """Append, possibly losing the acknowledgement or delivering a message twice."""
        inner = self.inner

        async def call() -> AppendResult:
            result = await inner.append(
                stream_id, events, expected_version=expected_version, epoch=epoch
            )
            index = self.world.calls
            if _carries_messages(stream_id) and index in self.world.plan.duplicates:
                self.world.note("duplicate", f"{stream_id} (store call {index})")
                await inner.append(stream_id, events)
            if index in self.world.plan.lost_acks:
                self.world.note("lost_ack", f"{stream_id} (store call {index})")
                raise StoreUnavailableError(
                    store=self.url, reason="simulated: committed, but the answer was lost"
                )
            return result

        return await self._call(f"append to {stream_id}", call)

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams at once, possibly losing the acknowledgement."""
        inner = self.inner

        async def call() -> list[AppendResult]:
            results = await inner.append_many(appends)
            index = self.world.calls
            if index in self.world.plan.lost_acks:
                self.world.note("lost_ack", f"{len(appends)} streams (store call {index})")
                raise StoreUnavailableError(
                    store=self.url, reason="simulated: committed, but the answer was lost"
                )
            return results

        return await self._call("append_many", call)

    async def read_stream(
        self, stream_id: str, *, from_seq: int = 1, limit: int | None = None
    ) -> list[Event]:
        """Forwarded, with faults."""
        return await self._call(
            "read_stream", lambda: self.inner.read_stream(stream_id, from_seq=from_seq, limit=limit)
        )

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """Forwarded, with faults."""
        return await self._call("read_all", lambda: self.inner.read_all(after=after, limit=limit))

    async def read_indexed(
        self, types: Sequence[str], *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """Forwarded, with faults."""
        return await self._call(
            "read_indexed", lambda: self.inner.read_indexed(types, after=after, limit=limit)
        )

    async def stream_version(self, stream_id: str) -> int:
        """Forwarded, with faults."""
        return await self._call("stream_version", lambda: self.inner.stream_version(stream_id))

    async def head_position(self) -> int:
        """Forwarded, with faults."""
        return await self._call("head_position", self.inner.head_position)

    async def subscribe(self, *, after: int = 0) -> AsyncIterator[Event]:
        """Tail the log; a dead process's subscription ends with it."""
        async for event in self.inner.subscribe(after=after):
            if self.process.dead:
                raise ProcessCrash(self.process.name)
            yield event

    async def save_snapshot(self, stream_id: str, version: int, state: Mapping[str, Any]) -> None:
        """Forwarded, with faults."""
        await self._call(
            "save_snapshot", lambda: self.inner.save_snapshot(stream_id, version, state)
        )

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """Forwarded, with faults."""
        return await self._call("load_snapshot", lambda: self.inner.load_snapshot(stream_id))

    async def acquire_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Forwarded, with faults."""
        return await self._call(
            "acquire_lease", lambda: self.inner.acquire_lease(stream_id, owner, ttl)
        )

    async def take_over_lease(self, stream_id: str, owner: str, ttl: float) -> Lease:
        """Forwarded, with faults."""
        return await self._call(
            "take_over_lease", lambda: self.inner.take_over_lease(stream_id, owner, ttl)
        )

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Forwarded, with faults."""
        return await self._call("renew_lease", lambda: self.inner.renew_lease(lease, ttl))

    async def release_lease(self, lease: Lease) -> None:
        """Forwarded, with faults."""
        await self._call("release_lease", lambda: self.inner.release_lease(lease))

    async def get_lease(self, stream_id: str) -> Lease | None:
        """Forwarded, with faults."""
        return await self._call("get_lease", lambda: self.inner.get_lease(stream_id))


class SimProcess:
    """One simulated OS process running the workflow: its store, its task, its death."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.dead = False
        #: Whether the driver has looked at how this process ended.
        self.judged = False
        #: Whether it returned a run outcome (alive to the end: it must let go of leases).
        self.finished = False
        self.store = ProcessStore(world, self)
        self.task: asyncio.Task[Any] | None = None

    def kill(self, where: str) -> None:
        """Die now: every task of this process is cancelled, nothing more is written.

        Raises:
            ProcessCrash: always, in the task that was running when it died.
        """
        if not self.dead:
            self.dead = True
            self.world.note("crash", f"{self.name} {where}")
            if self.task is not None and self.task is not asyncio.current_task():
                self.task.cancel()
        raise ProcessCrash(self.name)
