"""The effectful half of `gather`: one loop that runs a fan-out's branches.

`FanOutDrive.drive` starts every branch without an outcome, then sleeps until something
can change the fan-out's verdict: a branch ending (each one wakes the loop), the next
stall check, or the deadline, the last two on the run's clock. Each time it wakes it
journals the outcomes that arrived, asks the pure `FanOutState.decide` whether the
policy is settled, and when it is (or the deadline passed) cancels what still runs.

Outcomes are journaled by this loop, not by the branches: every branch that ended
since the last wake-up shares one append (a burst of a thousand step branches costs
one write), and an outcome counts for the policy only once journaled, so no decision
rests on an outcome a crash could lose.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from typing import Any

from ..durable import RunOutcome, WorkflowContext, lowlevel
from . import _spans as spans
from ._fanout_state import Branch, BranchOutcome, BranchStatus, FanOutState, Pending, Verdict

#: The shortest nap: a timer due "now" (float rounding on the run's clock, or a clock
#: that wakes a hair early) must still move time on rather than spin.
_MIN_NAP = 0.001


class FanOutDrive:
    """Runs one fan-out's branches to the end its policy or deadline sets.

    Lifecycle: make one per `gather` call with the state (started or replayed), call
    `drive()` once; afterwards every branch has a journaled outcome in the state.
    """

    def __init__(
        self,
        ctx: WorkflowContext,
        state: FanOutState,
        branches: Mapping[str, Branch],
        *,
        heartbeat_timeout: float | None,
        origin: float,
    ) -> None:
        """Drive `state`'s branches (specs in `branches`).

        `origin` is the fan-out's first start on this process's monotonic clock:
        durations count from it, like the deadline does, also after a resume.
        """
        self._ctx = ctx
        self._state = state
        self._branches = branches
        self._heartbeat = heartbeat_timeout
        self._clock = ctx.clock
        self._origin = origin
        #: Outcomes (and their events) that ended since the loop last journaled.
        self._ended: list[tuple[BranchOutcome, list[Pending]]] = []
        #: Child-run branches, in declaration order, and those still running (for
        #: stall checks).
        self._run_order = [b for b in state.running() if branches[b].mode == "run"]
        self._runs = set(self._run_order)
        #: Why the loop stopped the branches still running; None until it does.
        self._stopping: str | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def drive(self) -> None:
        """Run every branch without an outcome until the fan-out ends; journal each."""
        state = self._state
        span = spans.fanout_span(
            run_id=self._ctx.run_id,
            op=state.op,
            name=state.name,
            policy=state.describe(),
            kind=state.policy.kind,
            needed=state.policy.needed(state.total),
            branches=list(state.branches),
            outcomes=state.finished,
        )
        # The fan-out's span is current in the branches: their child runs nest in it.
        async with span:
            async with asyncio.TaskGroup() as group:
                for branch in state.running():
                    if branch in self._runs:
                        task = group.create_task(self._run_child(branch))
                    else:
                        task = group.create_task(self._run_step(branch))
                    self._tasks[branch] = task
                # Let every branch begin: a stop decided at once (a resumed fan-out
                # already settled or past its deadline) then reaches each as a cancel
                # it reports as its outcome.
                await asyncio.sleep(0)
                self._stop(await self._until_settled(group))
            await self._flush()

    # -- the loop ------------------------------------------------------------------------

    async def _until_settled(self, group: asyncio.TaskGroup) -> str:
        """Wait until the policy is settled or the deadline passed; returns why."""
        state = self._state
        loop = asyncio.get_running_loop()
        while True:
            if self._wake.done():
                self._wake = loop.create_future()  # before journaling: no end goes unseen
            await self._flush()
            verdict = state.decide()
            if verdict is not Verdict.OPEN:
                return state.stop_reason(verdict)
            if state.deadline_at is not None and self._clock.now() >= state.deadline_at:
                return "deadline exceeded"
            await self._nap(group, await self._check_stalls())

    async def _nap(self, group: asyncio.TaskGroup, stall_due: float | None) -> None:
        """Sleep until a branch ends, the next stall check is due, or the deadline."""
        due = stall_due
        if self._state.deadline_at is not None:
            left = self._state.deadline_at - self._clock.now()
            due = left if due is None else min(due, left)
        if due is None:
            await asyncio.wait([self._wake])  # not `await`: that would cancel the future
            return
        timer = group.create_task(self._clock.sleep(max(_MIN_NAP, due)))
        try:
            await asyncio.wait([self._wake, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()

    async def _check_stalls(self) -> float | None:
        """Journal each child run silent for `heartbeat_timeout`; returns when to look again."""
        if self._heartbeat is None:
            return None
        state = self._state
        due: float | None = None
        for branch in self._run_order:
            if branch not in self._runs or branch in state.stalled:
                continue
            silent = lowlevel.child_silence(self._ctx, state.run_ids[branch])
            if silent is not None and silent >= self._heartbeat:
                await lowlevel.record(self._ctx, "BranchStalled", state.stall(branch, silent))
                continue
            # A child's silence notices a write only when asked, so a check within a
            # quarter of the timeout keeps a stall's report at most that late.
            wait = self._heartbeat / 4
            if silent is not None:
                wait = min(wait, self._heartbeat - silent)
            due = wait if due is None else min(due, wait)
        return due

    def _stop(self, reason: str) -> None:
        """Cancel every branch still running, as an app-level cancel each reports."""
        self._stopping = reason
        for branch, task in self._tasks.items():
            if task.done():
                continue
            if branch in self._runs:
                lowlevel.cancel_child(self._ctx, self._state.run_ids[branch], reason)
            else:
                task.cancel()

    async def _flush(self) -> None:
        """Journal every outcome that arrived since the last flush, in one append."""
        if not self._ended:
            return
        batch, self._ended = self._ended, []
        events = [event for _, pending in batch for event in pending]
        for event_type, data in events[:-1]:
            lowlevel.record_later(self._ctx, event_type, data)
        await lowlevel.record(self._ctx, *events[-1])
        for outcome, _ in batch:
            self._state.apply_finished(outcome)

    # -- the branches --------------------------------------------------------------------

    def _end(self, raw: BranchOutcome) -> None:
        """Hand a branch's ending to the loop, and wake it."""
        self._ended.append(self._state.conclude(raw, now=self._clock.now()))
        self._runs.discard(raw.name)
        if not self._wake.done():
            self._wake.set_result(None)

    async def _run_child(self, branch: str) -> None:
        spec = self._branches[branch]
        outcome = await lowlevel.run_child(
            self._ctx,
            self._state.run_ids[branch],
            spec.workflow,
            dict(spec.inputs),
            deadline_at=self._state.deadline_at,
        )
        self._end(_outcome_from_run(branch, outcome, self._clock.monotonic() - self._origin))

    async def _run_step(self, branch: str) -> None:
        spec = self._branches[branch]
        value: Any = None
        error: str | None = None
        status: BranchStatus = "succeeded"
        try:
            with lowlevel.working(self._ctx):  # in this process: no worker parks the run
                value = _as_journaled(await spec.workflow(**spec.inputs))
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling() == 0:
                # Raised by the branch itself (say, awaiting a future someone else
                # cancelled), not a cancel of the branch: it failed.
                status, error = "failed", f"CancelledError: {exc}"
            elif self._stopping is None:
                raise  # not ours: the whole run is being stopped
            else:
                task.uncancel()  # our own stop, an outcome: journal it like any other
                status, error = "cancelled", f"Cancelled: {self._stopping}"
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        duration = self._clock.monotonic() - self._origin
        self._end(
            BranchOutcome(name=branch, status=status, value=value, error=error, duration_s=duration)
        )


def _outcome_from_run(name: str, outcome: RunOutcome, duration: float) -> BranchOutcome:
    """A child run's outcome as its branch's (before the deadline is applied)."""
    if outcome.status == "completed":
        return BranchOutcome(
            name=name,
            status="succeeded",
            value=outcome.result,
            duration_s=duration,
            run_id=outcome.run_id,
        )
    error = outcome.error or {}
    message = f"{str(error.get('type', 'Error')).rsplit('.', 1)[-1]}: {error.get('message', '')}"
    return BranchOutcome(
        name=name,
        status="cancelled" if outcome.status == "cancelled" else "failed",
        error=message,
        duration_s=duration,
        run_id=outcome.run_id,
    )


def _as_journaled(value: Any) -> Any:
    """`value` as the journal gives it back (a JSON round trip); raises if it cannot.

    JSON scalars come back as they are, so the common answers skip the round trip.
    """
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float and math.isfinite(value):
        return value
    return json.loads(json.dumps(value, allow_nan=False))
