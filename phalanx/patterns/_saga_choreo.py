"""The choreographed saga: no coordinator, participants reacting to each other's events.

A `Choreography` is a pipeline of `SagaStep`s. Each step has a participant that
subscribes to the journal, and the saga's events live in one unleased stream,
`saga:{name}:{saga_id}`, that every participant appends to:

- the first participant reacts to `SagaStarted`, each next one to its predecessor's
  `StepCompleted`: it runs its step's action and emits `StepCompleted` (or
  `StepFailed` and `SagaCompensating`); the last one also emits `SagaEnded`;
- a failure event triggers the compensations: the participant before the failed step
  reacts to that `StepFailed`, each earlier one to its successor's
  `CompensationCompleted`, so they run in reverse, each emitting
  `CompensationStarted` / `CompensationCompleted`; the first one ends the saga
  (`SagaEnded`, `compensated`).

Each participant processes each event exactly once: its reaction (the events it
emits) and its subscription position (`PositionCommitted` in its own stream,
`saga-participant:{name}:{step}`, appended at the version it read) commit in one
transaction through `EventStore.append_many`. A participant killed between acting and
committing acts again on restart (actions and compensations get stable idempotency
keys); two copies of one participant cannot both commit a reaction. Before acting it
folds the saga's stream, so a saga that ended, or an event it already answered, is
left alone. Participants are actors in the plain sense (one event at a time, state
of their own in the journal), not workflow runs: a run writes only its own leased
stream, and a reaction must commit atomically with the position in another.

The saga's state is a fold of its events alone (`saga_views`). `Choreography.run`, in
a workflow, starts a saga and keeps its journal: it copies the saga's events into the
run's own stream, in order and once each, so `phalanx show` / `events` present the
choreographed saga as one run. It decides nothing; the participants go on without it.

Compensations that keep failing end the saga `failed` (`CompensationFailed`): waiting
on the dead-letter queue needs a workflow run, which only the orchestrated style has.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from .._clock import Clock, SystemClock
from .._entropy import Entropy, SystemEntropy
from .._errors import ConcurrencyError, SagaDefinitionError
from .._executor import run_sync
from ..durable import RetryPolicy, WorkflowContext, lowlevel
from ..journal import Event, EventStore, NewEvent, StreamAppend
from ._saga import SagaOutcome, SagaResult
from ._saga_def import IDEMPOTENCY_PARAMETER, SagaPlan, SagaState, SagaStep, plan_saga
from ._saga_state import SagaView, saga_views
from ._saga_undo import error_summary

logger = logging.getLogger("phalanx")

#: How often the journal keeper looks for new saga events (seconds).
_KEEPER_POLL = 0.02


def saga_stream(choreography: str, saga_id: str) -> str:
    """The stream a choreographed saga's participants write."""
    return f"saga:{choreography}:{saga_id}"


def position_stream(choreography: str, step: str) -> str:
    """The stream holding a participant's subscription position."""
    return f"saga-participant:{choreography}:{step}"


class Choreography:
    """A saga without a coordinator: each step a participant reacting to events.

    Example::

        pipeline = Choreography("content", [SagaStep("draft", draft, undo_draft), ...])

        # in each worker process, for the steps it hosts (until cancelled):
        await pipeline.serve(store, ["draft", "edit"])

        # in a workflow: start a saga and keep its journal in this run
        result = await pipeline.run(ctx, {"topic": "sagas"})

    Raises:
        SagaDefinitionError: from the constructor, as `Saga` does; steps run in the
            order declared (`after` is not supported here).
    """

    def __init__(self, name: str, steps: Sequence[SagaStep]) -> None:
        if any(s.after is not None or s.recover is not None or s.compensate_failed for s in steps):
            raise SagaDefinitionError(
                saga=name,
                reason="a choreography is a pipeline: its steps take no `after`, `recover` "
                "or `compensate_failed`",
            )
        self.name = name
        self.plan: SagaPlan = plan_saga(
            name,
            steps,
            compensation_order="reverse",
            on_compensation_failure="stop",
            require_compensation=True,
        )

    # -- starting a saga and keeping its journal --------------------------------------

    async def start(self, store: EventStore, saga_id: str, inputs: dict[str, Any]) -> str:
        """Start a saga (idempotent: a saga already started is left as it is)."""
        stream = saga_stream(self.name, saga_id)
        started = {
            "name": self.name,
            "saga_id": saga_id,
            "style": "choreographed",
            "inputs": inputs,
            **self.plan.declaration(),
        }
        with contextlib.suppress(ConcurrencyError):
            await store.append(stream, [NewEvent("SagaStarted", started)], expected_version=0)
        return stream

    async def run(self, ctx: WorkflowContext, inputs: dict[str, Any] | None = None) -> SagaResult:
        """Start a saga with this run's id and copy its events here until it ends."""
        op, recorded = lowlevel.claim(ctx, "choreography", self.name)
        saga_id = ctx.run_id
        store = lowlevel.store(ctx)
        await lowlevel.step(ctx, f"{self.name}/start", self.start, store, saga_id, inputs or {})
        copied = 0 if recorded is None else sum(1 for e in recorded.events if "saga_seq" in e.data)
        stream = saga_stream(self.name, saga_id)
        view = SagaView(saga_id)
        if recorded is not None:
            for event in recorded.events:
                view.apply(event)
        while view.status not in ("completed", "compensated", "failed"):
            fresh = await store.read_stream(stream, from_seq=copied + 1)
            for event in fresh:
                await lowlevel.record(
                    ctx, event.type, {**event.data, "op": op, "saga_seq": event.seq}
                )
                view.apply(event)
                copied = event.seq
            if not fresh:
                await ctx.clock.sleep(_KEEPER_POLL)
        return _result(view, self.plan)

    # -- participants ---------------------------------------------------------------

    async def serve(
        self,
        store: EventStore,
        steps: Sequence[str] | None = None,
        *,
        clock: Clock | None = None,
        entropy: Entropy | None = None,
    ) -> None:
        """Run the participants of `steps` (default: all) until cancelled.

        `clock` paces retries and `entropy` draws their jitter (the runtime's seams;
        the system's by default).
        """
        names = list(steps or self.plan.order)
        unknown = [n for n in names if n not in self.plan.steps]
        if unknown:
            raise ValueError(f"choreography {self.name!r} has no steps {unknown}")
        async with asyncio.TaskGroup() as group:
            for name in names:
                participant = Participant(
                    self, name, store, clock or SystemClock(), entropy or SystemEntropy()
                )
                group.create_task(participant.serve())


def _result(view: SagaView, plan: SagaPlan) -> SagaResult:
    status: SagaOutcome = "failed"
    if view.status == "completed" or view.status == "compensated":
        status = view.status
    return SagaResult(
        view.saga_id,
        plan.name,
        status,
        dict(view.steps),
        list(view.compensations),
        {},
        view.failed_step,
        view.error,
    )


@dataclass(frozen=True)
class _Saga:
    """What a participant reads of one saga before reacting: its events, folded."""

    stream: str
    events: list[Event]
    view: SagaView

    @property
    def inputs(self) -> dict[str, Any]:
        return dict(self.events[0].data.get("inputs", {}))

    def results(self) -> dict[str, Any]:
        return {
            str(e.data["name"]): e.data.get("result")
            for e in self.events
            if e.type == "StepCompleted"
        }

    def holds(self, event_type: str, name: str) -> bool:
        return any(e.type == event_type and e.data.get("name") == name for e in self.events)


class Participant:
    """One step's participant: reacts to the saga events that concern its step."""

    def __init__(
        self,
        choreography: Choreography,
        step: str,
        store: EventStore,
        clock: Clock,
        entropy: Entropy,
    ) -> None:
        plan = choreography.plan
        self._name = choreography.name
        self._step: SagaStep = plan.steps[step]
        self._takes_key = plan.takes_key.get(step, False)
        index = plan.order.index(step)
        self._first = index == 0
        self._last = index == len(plan.order) - 1
        self._prev = None if self._first else plan.order[index - 1]
        self._next = None if self._last else plan.order[index + 1]
        self._store = store
        self._clock = clock
        self._entropy = entropy
        self._positions = position_stream(choreography.name, step)
        self._prefix = f"saga:{choreography.name}:"

    async def _load(self) -> tuple[int, int]:
        """Where this participant's subscription stands: (position, its stream's version)."""
        version = await self._store.stream_version(self._positions)
        if version == 0:
            return 0, 0
        [last] = await self._store.read_stream(self._positions, from_seq=version)
        return int(last.data["position"]), version

    async def serve(self) -> None:
        """React to events from the committed position on, until cancelled."""
        while True:
            position, version = await self._load()
            try:
                await self._tail(position, version)
            except ConcurrencyError:
                # Another copy of this participant committed first: it reacted to that
                # event; start again from where it got to.
                logger.info("participant %s/%s: another copy moved on", self._name, self._step.name)

    async def _tail(self, position: int, version: int) -> None:
        # Both stores' subscriptions are async generators: close them when we stop.
        tail = cast(AsyncGenerator[Event, None], self._store.subscribe(after=position))
        async with contextlib.aclosing(tail) as events:
            async for event in events:
                reaction = await self._react(event)
                if reaction is None:
                    continue
                stream, emitted = reaction
                commit = NewEvent("PositionCommitted", {"position": event.position})
                await self._store.append_many(
                    [
                        StreamAppend(stream, emitted),
                        StreamAppend(self._positions, [commit], expected_version=version),
                    ]
                )
                version += 1

    async def _react(self, event: Event) -> tuple[str, list[NewEvent]] | None:
        """The events to emit in answer to `event`, or None if it is not ours to answer."""
        if not event.stream_id.startswith(self._prefix):
            return None
        kind, name = event.type, event.data.get("name")
        me = self._step.name
        forward = (kind == "SagaStarted" and self._first) or (
            kind == "StepCompleted" and name == self._prev and self._prev is not None
        )
        backward = self._next is not None and name == self._next
        backward = backward and kind in ("StepFailed", "CompensationCompleted")
        if not forward and not backward:
            return None
        saga = await self._read(event.stream_id)
        if saga.view.status in ("completed", "compensated", "failed"):
            return None  # ended: nothing left to do (a participant started late, say)
        if forward:
            if saga.holds("StepCompleted", me) or saga.holds("StepFailed", me):
                return None
            return saga.stream, await self._forward(saga)
        if saga.holds("CompensationStarted", me) or saga.view.steps.get(me) != "completed":
            return None
        return saga.stream, await self._compensate(saga)

    async def _read(self, stream: str) -> _Saga:
        events = await self._store.read_stream(stream)
        views = saga_views(events)
        return _Saga(stream, events, views[0] if views else SagaView(""))

    def _event(self, saga: _Saga, event_type: str, **data: Any) -> NewEvent:
        return NewEvent(event_type, {"name": self._step.name, "saga_id": saga.view.saga_id, **data})

    def _ended(self, saga: _Saga, status: str) -> NewEvent:
        ended = {"name": self._name, "saga_id": saga.view.saga_id, "status": status}
        return NewEvent("SagaEnded", ended)

    async def _forward(self, saga: _Saga) -> list[NewEvent]:
        step = self._step
        state = SagaState(saga.inputs, saga.results())
        try:
            result = await _attempts(step.retry, self._clock, self._entropy, step.action, state)
        except Exception as exc:
            error = error_summary(exc)
            failed = self._event(saga, "StepFailed", error=error, retry_at=None)
            rollback = NewEvent(
                "SagaCompensating",
                {
                    "name": self._name,
                    "saga_id": saga.view.saga_id,
                    "step": step.name,
                    "error": error,
                },
            )
            return [failed, rollback, *([self._ended(saga, "compensated")] if self._first else [])]
        done = self._event(saga, "StepCompleted", result=result)
        return [done, *([self._ended(saga, "completed")] if self._last else [])]

    async def _compensate(self, saga: _Saga) -> list[NewEvent]:
        step = self._step
        compensation = step.compensation
        assert compensation is not None  # every step of a choreography has one
        key = f"{saga.stream}:{step.name}"
        kwargs = {IDEMPOTENCY_PARAMETER: key} if self._takes_key else {}
        result = saga.results().get(step.name)
        started = self._event(saga, "CompensationStarted", idempotency_key=key)
        try:
            await _attempts(
                step.compensation_retry,
                self._clock,
                self._entropy,
                compensation,
                result,
                timeout=step.compensation_timeout,
                **kwargs,
            )
        except Exception as exc:
            failed = self._event(saga, "CompensationFailed", error=error_summary(exc))
            return [started, failed, self._ended(saga, "failed")]
        done = self._event(saga, "CompensationCompleted")
        return [started, done, *([self._ended(saga, "compensated")] if self._first else [])]


async def _attempts(
    policy: RetryPolicy | None,
    clock: Clock,
    entropy: Entropy,
    fn: Callable[..., Any],
    *args: Any,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """`fn(*args, **kwargs)` (sync in a thread, or async) under `policy`, paced on `clock`.

    Each attempt gets `timeout` seconds of `clock` time (a hung one fails as TimeoutError).
    """
    policy = policy or RetryPolicy(max_attempts=1)
    attempt = 1
    while True:
        try:
            async with clock.timeout(timeout):
                if inspect.iscoroutinefunction(fn):
                    return await fn(*args, **kwargs)
                value = await run_sync(fn, *args, **kwargs)
                return await value if inspect.isawaitable(value) else value
        except Exception as exc:
            if not policy.should_retry(exc, attempt):
                raise
            await clock.sleep(policy.delay(attempt, entropy.random()))
            attempt += 1
