"""Fan-out that never hides a missing branch.

`gather` runs branches as child runs (each with its own journal, so a resumed fan-out
does not re-run finished branches) under a completion policy and a deadline, and
returns a `FanOutResult` with one outcome per branch: succeeded, failed, timed out or
cancelled. A result that is missing anything is *partial*, and its values cannot be
read until the code acknowledges that with `accept_partial(reason)`, which is
journaled. Every branch outcome, every stall and every late answer is an event.

A branch made with `Branch.step(fn, ...)` is lighter: an async function run inside the
parent, like a step, with no run, lease or journal of its own; only its outcome is
journaled, in the parent's stream, and the outcomes of branches that end in the same
turn of the event loop share one append. It is for many small branches (a child run
costs several store round trips; a step branch, a share of one), at the price of a
child run's extras: a step branch is re-run whole if the process dies before its
outcome is journaled, it has no journal of its own to resume from, and no stall
detection (it writes nothing while it runs).

The fan-out is a small state machine: `_fanout_state.FanOutState` folds its events and
decides, without I/O, whether the policy is settled; `_fanout_drive.FanOutDrive` is the
one loop that runs the branches, woken by each branch that ends; `gather` below claims
the operation, starts or replays the state, drives it and journals the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import PartialResultError
from ..durable import WorkflowContext, lowlevel
from ._fanout_drive import FanOutDrive
from ._fanout_state import Branch, BranchOutcome, FanOutState, Policy, StopWhen


@dataclass(kw_only=True)
class FanOutResult:
    """One outcome per branch, and whether the whole is partial.

    Reading `values` of a partial result raises `PartialResultError` until the code
    calls `await result.accept_partial(reason)`, which journals the decision.
    """

    name: str
    policy: str
    outcomes: dict[str, BranchOutcome]
    satisfied: bool
    accepted_reason: str | None = None
    _ctx: WorkflowContext | None = field(default=None, repr=False)

    @property
    def partial(self) -> bool:
        """Whether any branch did not succeed."""
        return any(o.status != "succeeded" for o in self.outcomes.values())

    @property
    def missing(self) -> list[str]:
        """Branches without a value, in declaration order."""
        return [n for n, o in self.outcomes.items() if o.status != "succeeded"]

    @property
    def values(self) -> dict[str, Any]:
        """Values of the branches that succeeded.

        Raises:
            PartialResultError: the result is partial and not yet accepted.
        """
        if self.partial and self.accepted_reason is None:
            raise PartialResultError(fan_out=self.name, missing=self.missing)
        return {n: o.value for n, o in self.outcomes.items() if o.status == "succeeded"}

    async def accept_partial(self, reason: str) -> dict[str, Any]:
        """Decide, visibly, to go on with what succeeded; journaled; returns the values."""
        if self._ctx is None:
            raise RuntimeError("this result is not bound to a workflow context")
        await lowlevel.decide(
            self._ctx,
            f"accept_partial:{self.name}",
            {"reason": reason, "missing": self.missing, "policy": self.policy},
        )
        self.accepted_reason = reason
        return self.values

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "policy": self.policy,
            "satisfied": self.satisfied,
            "partial": self.partial,
            "missing": self.missing,
            "accepted_reason": self.accepted_reason,
            "branches": {n: o.to_json() for n, o in self.outcomes.items()},
        }


async def gather(
    ctx: WorkflowContext,
    name: str,
    branches: Mapping[str, Branch],
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    heartbeat_timeout: float | None = None,
    stop_when: StopWhen | None = None,
) -> FanOutResult:
    """Run `branches` concurrently as child runs and report every outcome.

    Args:
        ctx: The workflow's context.
        name: The fan-out's name (unique within the run; it names the events).
        branches: Branch name to `Branch` (a child run) or `Branch.step(fn, ...)` (a
            step branch: journaled in this run only, see the module's doc).
        policy: When the fan-out is complete (default: `Policy.all()`). The fan-out
            stops as soon as the policy is met or can no longer be met, cancelling
            the branches still running (`best_effort` waits for every branch).
        deadline: Seconds from the first start (kept across a resume). Branch runs get
            the earlier of this and the run's own deadline.
        heartbeat_timeout: A branch whose journal stays silent this long is reported
            as stalled (a `BranchStalled` event) before the deadline.
        stop_when: Stops the fan-out early, cancelling what still runs, once it says
            the outcomes journaled so far are enough (a pure function of them; a vote
            stops at its quorum this way).

    Raises:
        ValueError: a quorum larger than the number of branches.
    """
    policy = policy or Policy.all()
    total = len(branches)
    if policy.kind == "quorum" and (policy.k or 0) > total:
        raise ValueError(
            f"fan-out {name!r}: a quorum of {policy.k} needs at least that many "
            f"branches, not {total}"
        )
    op, recorded = lowlevel.claim(ctx, "gather", name)
    clock = ctx.clock
    if recorded is None:
        state = FanOutState.start(
            op=op,
            name=name,
            policy=policy,
            branches=branches,
            run_id=ctx.run_id,
            now=clock.now(),
            deadline=deadline,
            run_deadline_at=ctx.deadline_at,
        )
        await lowlevel.record(ctx, "GatherStarted", state.started_event())
    else:
        state = FanOutState.replay(
            op=op, name=name, policy=policy, branches=branches, events=list(recorded.events)
        )
        if set(state.run_ids) != set(branches):
            lowlevel.diverge(
                ctx, op, recorded.describe(), f"gather {name!r} over {sorted(branches)}"
            )
        if state.completed is not None:
            return _result(ctx, state, state.completed)
    # The first start on this process's monotonic clock (earlier, after a resume).
    origin = clock.monotonic() - max(0.0, clock.now() - state.started_at)
    state.stop_when = stop_when
    if state.running():
        await FanOutDrive(
            ctx, state, branches, heartbeat_timeout=heartbeat_timeout, origin=origin
        ).drive()
    completed = state.completed_event(clock.monotonic() - origin)
    await lowlevel.record(ctx, "GatherCompleted", completed)
    return _result(ctx, state, state.satisfied)


def _result(ctx: WorkflowContext, state: FanOutState, satisfied: bool) -> FanOutResult:
    return FanOutResult(
        name=state.name,
        policy=state.describe(),
        outcomes=state.outcomes(),
        satisfied=satisfied,
        _ctx=ctx,
    )
