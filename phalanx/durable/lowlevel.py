"""The low-level API for writing your own orchestration patterns (trio.lowlevel is the model).

Workflow authors need only `WorkflowContext`: steps, timers, signals, child workflows.
A *pattern* (a fan-out policy, a conversation between peers, a plan carried out by
agents) needs more: operations of its own kind with its own event types, child runs it
supervises itself, the run's inbox, messages to other runs. That is this module, and
every pattern phalanx ships (`phalanx.patterns`) is written with it and the public API
alone; yours can be too, without touching `phalanx.durable`.

The contract is the one replay rests on. Each call a workflow makes is an operation,
numbered in the order it is made. A pattern claims the next number with `claim(ctx,
kind, name)`: the first time through it gets `None` and does its work, journaling what
it did with `record`, each event carrying `"op"` and `"name"`; the first of them is
stamped with the operation's kind (as `"op_kind"`), so a replay can check that this
position holds "a `kind` operation named `name`" without the durable layer knowing the
pattern. After a crash the same claim returns the `Operation` with every event
recorded for it, and the pattern answers from them, redoing nothing that is on record.
Work must be idempotent across a crash between doing it and recording it (give what
you send an id the receiver deduplicates by; a step, whose result is journaled, is the
usual way).

Example, a "race": two workflows run as child runs, the first to finish wins and the
other is cancelled; resumed after a crash, a decided race returns its winner and an
undecided one resumes both children where they were::

    import asyncio
    from phalanx.durable import lowlevel

    async def race(ctx, name, left, right):
        op, recorded = lowlevel.claim(ctx, "race", name)
        if recorded is not None and (won := recorded.last("RaceWon")) is not None:
            return won.data["winner"], won.data["result"]
        runs = {"left": f"{ctx.run_id}.{op}.left", "right": f"{ctx.run_id}.{op}.right"}
        if recorded is None:
            await lowlevel.record(ctx, "RaceStarted", {"op": op, "name": name, "runs": runs})
        flows = {"left": left, "right": right}
        async with asyncio.TaskGroup() as group:
            tasks = {
                side: group.create_task(lowlevel.run_child(ctx, runs[side], flows[side], {}))
                for side in flows
            }
            done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
            winner = next(side for side, task in tasks.items() if task in done)
            for side in flows:
                if side != winner:
                    lowlevel.cancel_child(ctx, runs[side], f"race {name!r} won by {winner}")
        result = tasks[winner].result().result
        await lowlevel.record(
            ctx, "RaceWon", {"op": op, "name": name, "winner": winner, "result": result}
        )
        return winner, result

Rules of the road:

- Every event a pattern records carries `"op"` (the claimed number) and `"name"`; the
  first one's `"op_kind"` key is set by `record` (do not use that key yourself).
- `claim` raises a pending cancel before an operation the journal cannot answer, so a
  cancelled run does no new work; a recorded operation is answered without it.
- Check what the code asks for against what the journal holds and call `diverge` on a
  mismatch (a fan-out over other branches, a plan with other tasks), never mix the two.
- Time, randomness and ids come from `ctx.now()`, `ctx.random()` and `ctx.uuid()`, or
  from the recorded events: a replay must take the same decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar, overload

from .._errors import NonDeterminismError
from ..journal import Event, EventStore, Metadata, NewEvent
from ._context import WorkflowContext
from ._history import TERMINAL, Operation
from ._history import inbox_stream as inbox_stream
from ._history import run_id_of as run_id_of
from ._history import run_stream as run_stream
from ._host import RunControl as RunControl
from ._retry import RetryPolicy
from ._runner import RunOutcome
from ._state import Phase

T = TypeVar("T")

__all__ = [
    "TERMINAL",
    "Operation",
    "RunControl",
    "cancel_child",
    "child_silence",
    "claim",
    "decide",
    "diverge",
    "epoch",
    "inbox",
    "inbox_stream",
    "post",
    "record",
    "record_later",
    "run_child",
    "run_id_of",
    "run_is_live",
    "run_shielded",
    "run_stream",
    "runs",
    "step",
    "store",
    "wait_inbox",
    "wake",
    "working",
]


# -- operations and their events --------------------------------------------------------


def claim(ctx: WorkflowContext, kind: str, name: str) -> tuple[int, Operation | None]:
    """Take the next operation number for an operation of `kind` called `name`.

    Returns the number and what the journal recorded there (None the first time: the
    next event `record`ed with this `op` opens the operation and carries `kind` as its
    `"op_kind"`). A
    pending cancel is raised before an operation the journal cannot answer.

    Raises:
        NonDeterminismError: the journal holds another operation at that number.
    """
    return ctx._open(kind, name)


async def record(ctx: WorkflowContext, event_type: str, data: Mapping[str, Any]) -> None:
    """Journal a pattern's event in this run's stream (under its lease), now.

    `data` carries the `"op"` and `"name"` of the claimed operation it belongs to.
    """
    await ctx._journal.append(event_type, ctx._stamp(data))


def record_later(ctx: WorkflowContext, event_type: str, data: Mapping[str, Any]) -> None:
    """Journal a pattern's event with this run's next write, not in a write of its own.

    For markers whose loss is harmless (a message's delivery: if the run dies before
    the marker is written, the message is sent again and the receiver drops the copy by
    its id), so they cost no extra write.
    """
    ctx._journal.defer(event_type, ctx._stamp(data))


def diverge(ctx: WorkflowContext, op: int, expected: str, actual: str) -> NoReturn:
    """Stop replay: the code asks for `actual` where the journal holds `expected`.

    Raises:
        NonDeterminismError: always.
    """
    raise NonDeterminismError(run_id=ctx.run_id, position=op, expected=expected, actual=actual)


async def decide(ctx: WorkflowContext, name: str, data: Mapping[str, Any]) -> None:
    """Journal a decision (accepting a partial result, say) once; replay skips it."""
    op, recorded = ctx._claim("decision", name)
    if recorded is None:
        ctx._deliver_pending_cancel()
        await ctx._journal.append("DecisionRecorded", {"op": op, "name": name, **data})


@overload
async def step(
    ctx: WorkflowContext,
    name: str,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    retry: RetryPolicy | None = None,
    tags: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any: ...


@overload
async def step(
    ctx: WorkflowContext,
    name: str,
    fn: Callable[..., Any],
    *args: Any,
    retry: RetryPolicy | None = None,
    tags: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any: ...


async def step(
    ctx: WorkflowContext,
    name: str,
    fn: Callable[..., Any],
    *args: Any,
    retry: RetryPolicy | None = None,
    tags: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """`ctx.step`, with `tags` (a JSON object) in its StepStarted and StepCompleted data.

    Views read structured facts from the tags instead of parsing step names: an
    agent's steps carry `agent` and `turn`, for instance.
    """
    return await ctx._step(name, fn, args, kwargs, retry=retry, tags=tags)


async def run_shielded(ctx: WorkflowContext, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` to its end even if the run is cancelled or its deadline passes meanwhile.

    For cleanup that must not be cut short (a saga's compensations): a cancel request
    or an expired deadline that arrives during `work` is held back, neither raised by
    `work`'s operations nor interrupting the task it runs in, and is raised here once
    `work` has finished, so the run still ends cancelled. An error of `work` itself
    propagates as usual. A runner that is stopped (fenced out, its lease lost, Ctrl-C)
    is not held back: `work` is cancelled with it, and a resume continues it.
    """
    # Its own task, awaited through asyncio.shield until it is done: a cancel of the
    # workflow's task lands on the shield, not on `work`. Not in a TaskGroup: leaving
    # a group's body on a cancel cancels its tasks, which is exactly what must not
    # happen; this function is the task's owner and never returns before it ended.
    ctx._shielded += 1
    try:
        task = asyncio.ensure_future(work())
        held: asyncio.CancelledError | None = None
        while True:
            try:
                result = await asyncio.shield(task)
                break
            except asyncio.CancelledError as exc:
                if task.done():
                    raise  # `work` itself was cancelled (its writes refused): not ours to hold
                if ctx._runner.state.phase not in (Phase.RUNNING, Phase.CANCELLING):
                    # Stopped or detached: the runner must let go now, and the run stays
                    # resumable, so `work` continues on resume instead.
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise
                held = exc
    finally:
        ctx._shielded -= 1
    if held is not None:
        raise held
    return result


# -- child runs --------------------------------------------------------------------------


async def run_child(
    ctx: WorkflowContext,
    child_id: str,
    workflow: Callable[..., Awaitable[Any]],
    inputs: Mapping[str, Any],
    *,
    deadline_at: float | None = None,
) -> RunOutcome:
    """Start child run `child_id` (or resume it, after a crash) and wait for its outcome.

    Never raises for a failed or cancelled child: the outcome says so. The child's
    deadline is the earlier of `deadline_at` and this run's own; cancelling this run
    cancels it. When it ends, `wait_inbox` waiters wake.
    """
    return await ctx._run_child(child_id, workflow, dict(inputs), deadline_at=deadline_at)


def cancel_child(ctx: WorkflowContext, child_id: str, reason: str) -> None:
    """Cancel a child run of this run, now or as soon as it starts executing here.

    Its cleanup runs and it journals `RunCancelled`; `run_child` then returns that.
    """
    ctx._runner.cancel_child(child_id, reason)


def child_silence(ctx: WorkflowContext, child_id: str) -> float | None:
    """Seconds since child run `child_id` last made progress; None if not running here."""
    child = ctx._runner.state.children.get(child_id)
    return None if child is None else child.silence()


# -- the inbox and other runs -----------------------------------------------------------


def inbox(ctx: WorkflowContext) -> Sequence[Event]:
    """Everything that reached this run's inbox so far, oldest first.

    Signals, cancel requests and patterns' messages arrive there. A pattern reads its
    own kind of event here and journals what it consumes, so a replay hands the same
    event to the same code. Reading re-arms `wait_inbox`: read, and if nothing you
    need is there, wait.
    """
    ctx._runner.inbox_changed.clear()
    return ctx._runner.inbox


async def wait_inbox(ctx: WorkflowContext, timeout: float | None = None) -> bool:
    """Wait until something happened since the last `inbox(ctx)`; False on timeout.

    Something: a new event in the inbox, a child run of this run ending, or `wake`.
    A wake-up that came between reading the inbox and waiting is not lost.
    """
    if ctx._runner.inbox_changed.is_set():
        return True
    wake_at = None if timeout is None else ctx.clock.now() + timeout
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands
    # as the wait completes, and a cancel request must never be lost.
    try:
        with ctx._runner.activity.waiting(wake_at):
            async with ctx.clock.timeout(timeout):
                await ctx._runner.inbox_changed.wait()
    except TimeoutError:
        return False
    return True


def working(ctx: WorkflowContext) -> contextlib.AbstractContextManager[None]:
    """Mark work in flight that is not a step (a pattern running a branch in-process).

    A worker hands back a run that only waits (signals, timers, its inbox, child runs
    on other workers); while this is open the run is busy and keeps its worker.
    """
    return ctx._runner.activity.working()


def wake(ctx: WorkflowContext) -> None:
    """Wake whoever waits in `wait_inbox` (a pattern's own task finishing, say)."""
    ctx._runner.inbox_changed.set()


async def post(ctx: WorkflowContext, run_id: str, event_type: str, data: Mapping[str, Any]) -> None:
    """Append an event to another run's inbox (the run need not exist yet).

    The inbox is not leased: anyone may write to it, and a crash can make a sender post
    the same thing twice, so what is posted must carry an id the receiver deduplicates
    by.
    """
    metadata = Metadata(run_id=run_id, parent_id=ctx.run_id)
    await store(ctx).append(inbox_stream(run_id), [NewEvent(event_type, data, metadata)])


async def run_is_live(ctx: WorkflowContext, run_id: str) -> bool:
    """Whether some runner holds run `run_id`'s lease now.

    False for a run that ended (its lease was released), whose runner died (its lease
    expired) or that never started: nobody is executing it.
    """
    lease = await store(ctx).get_lease(run_stream(run_id))
    return lease is not None and lease.owner != "" and lease.expires_at > ctx.clock.now()


def store(ctx: WorkflowContext) -> EventStore:
    """The store this run is journaled in, for streams kept beside runs.

    Tool circuit breakers, dead-letter entries and claim boards live there. The run's
    own stream is written only through `record` and `ctx`, under its lease.
    """
    return ctx._journal.store


def epoch(ctx: WorkflowContext) -> int:
    """The lease epoch this run executes under: its fencing token.

    Every runner that takes the run over gets a larger one. The store fences this
    run's own stream by it; a pattern stamps it on what it sends to *other* runs (whose
    streams the store cannot fence for us), so they can refuse a runner that was taken
    over (see `patterns.FencedInbox`).
    """
    return ctx._runner.state.epoch


def runs(ctx: WorkflowContext) -> RunControl:
    """Act on other runs (read their journals, list them, cancel them)."""
    return ctx._runner.host
