"""Fan-out that never hides a missing branch.

`gather` runs branches as child runs (each with its own journal, so a resumed fan-out
does not re-run finished branches) under a completion policy and a deadline, and
returns a `FanOutResult` with one outcome per branch: succeeded, failed, timed out or
cancelled. A result that is missing anything is *partial*, and its values cannot be
read until the code acknowledges that with `accept_partial(reason)`, which is
journaled. Every branch outcome, every stall and every late answer is an event.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import PartialResultError
from ..durable import RunOutcome, WorkflowContext

BranchStatus = Literal["succeeded", "failed", "timed_out", "cancelled"]
PolicyKind = Literal["all", "any", "quorum", "best_effort"]


@dataclass(frozen=True)
class Policy:
    """When a fan-out is complete.

    - `all`: wait for every branch; satisfied only if all succeed.
    - `any`: the first success completes it; the rest are cancelled.
    - `quorum(k)`: k successes complete it; the rest are cancelled; it fails early
      once k successes are impossible.
    - `best_effort`: take whatever succeeded by the deadline; satisfied by one success.

    Every policy also ends at the fan-out's deadline: branches still running then are
    `timed_out`.
    """

    kind: PolicyKind
    k: int | None = None

    @classmethod
    def all(cls) -> Policy:
        """Every branch must succeed."""
        return cls("all")

    @classmethod
    def any(cls) -> Policy:
        """One success is enough."""
        return cls("any")

    @classmethod
    def quorum(cls, k: int) -> Policy:
        """`k` successes are enough."""
        if k < 1:
            raise ValueError("a quorum needs k >= 1")
        return cls("quorum", k)

    @classmethod
    def best_effort(cls) -> Policy:
        """Whatever succeeded before the deadline."""
        return cls("best_effort")

    def needed(self, total: int) -> int:
        """Successes that satisfy the policy out of `total` branches."""
        if self.kind == "all":
            return total
        if self.kind == "quorum":
            return min(self.k or total, total)
        return 1

    def describe(self, total: int) -> str:
        """A short human form, e.g. `quorum(2 of 3)`."""
        if self.kind == "quorum":
            return f"quorum({self.needed(total)} of {total})"
        return self.kind

    def done(self, succeeded: int, finished: int, total: int) -> bool:
        """Whether the fan-out can stop now."""
        if finished == total:
            return True
        if self.kind in ("any", "quorum"):
            needed = self.needed(total)
            return succeeded >= needed or succeeded + (total - finished) < needed
        return False


@dataclass(frozen=True)
class Branch:
    """One branch of a fan-out: a workflow to run as a child run, with its inputs."""

    workflow: Callable[..., Awaitable[Any]]
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BranchOutcome:
    """How one branch ended."""

    name: str
    status: BranchStatus
    value: Any = None
    error: str | None = None
    duration_s: float = 0.0
    run_id: str | None = None
    stalled: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form (the demo's `branches` entries)."""
        return {
            "status": self.status,
            "value": self.value,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "run_id": self.run_id,
            "stalled": self.stalled,
        }


@dataclass
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
        await self._ctx.decide(
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


def _outcome_from_run(name: str, outcome: RunOutcome, duration: float) -> BranchOutcome:
    if outcome.status == "completed":
        return BranchOutcome(name, "succeeded", outcome.result, None, duration, outcome.run_id)
    error = outcome.error or {}
    message = f"{str(error.get('type', 'Error')).rsplit('.', 1)[-1]}: {error.get('message', '')}"
    status: BranchStatus = "cancelled" if outcome.status == "cancelled" else "failed"
    return BranchOutcome(name, status, None, message, duration, outcome.run_id)


async def gather(
    ctx: WorkflowContext,
    name: str,
    branches: Mapping[str, Branch],
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    heartbeat_timeout: float | None = None,
) -> FanOutResult:
    """Run `branches` concurrently as child runs and report every outcome.

    Args:
        ctx: The workflow's context.
        name: The fan-out's name (unique within the run; it names the events).
        branches: Branch name to `Branch`.
        policy: When the fan-out is complete (default: `Policy.all()`).
        deadline: Seconds from the first start (kept across a resume). Branch runs get
            the earlier of this and the run's own deadline.
        heartbeat_timeout: A branch whose journal stays silent this long is reported
            as stalled (a `BranchStalled` event) before the deadline.
    """
    policy = policy or Policy.all()
    total = len(branches)
    op, recorded = ctx.operation("gather", name)
    clock = ctx.clock
    finished: dict[str, BranchOutcome] = {}
    if recorded is None:
        deadline_at = None if deadline is None else clock.now() + deadline
        if ctx.deadline_at is not None:
            deadline_at = (
                ctx.deadline_at if deadline_at is None else min(deadline_at, ctx.deadline_at)
            )
        run_ids = {b: f"{ctx.run_id}.{op}.{b}" for b in branches}
        await ctx.record(
            "GatherStarted",
            {
                "op": op,
                "name": name,
                "policy": policy.describe(total),
                "branches": run_ids,
                "deadline_at": deadline_at,
            },
        )
    else:
        started = recorded.events[0].data
        deadline_at = started.get("deadline_at")
        run_ids = dict(started["branches"])
        if set(run_ids) != set(branches):
            ctx.diverge(op, recorded.describe(), f"gather {name!r} over {sorted(branches)}")
        for event in recorded.events:
            if event.type == "BranchFinished":
                finished[event.data["branch"]] = BranchOutcome(
                    event.data["branch"],
                    event.data["status"],
                    event.data.get("value"),
                    event.data.get("error"),
                    float(event.data.get("duration_s", 0.0)),
                    event.data.get("run_id"),
                    bool(event.data.get("stalled", False)),
                )
        done = recorded.last("GatherCompleted")
        if done is not None:
            outcomes = {b: finished[b] for b in branches}
            return FanOutResult(
                name, policy.describe(total), outcomes, bool(done.data["satisfied"]), _ctx=ctx
            )

    started_at = clock.monotonic()
    stalled: set[str] = set()

    async def record(outcome: BranchOutcome) -> None:
        finished[outcome.name] = outcome
        await ctx.record(
            "BranchFinished",
            {"op": op, "name": name, "branch": outcome.name, **outcome.to_json()},
        )

    async def run_branch(branch: str) -> None:
        spec = branches[branch]
        t0 = clock.monotonic()
        outcome = await ctx.run_child_run(
            run_ids[branch], spec.workflow, dict(spec.inputs), deadline_at=deadline_at
        )
        duration = clock.monotonic() - t0
        result = _outcome_from_run(branch, outcome, duration)
        if deadline_at is not None and clock.now() >= deadline_at:
            if result.status == "succeeded":
                await ctx.record(
                    "BranchLate",
                    {"op": op, "name": name, "branch": branch, "value": result.value},
                )
            result = BranchOutcome(
                branch,
                "timed_out",
                None,
                f"no answer within the deadline ({duration:.1f}s)",
                duration,
                result.run_id,
                branch in stalled,
            )
        elif branch in stalled:
            result = dataclasses.replace(result, stalled=True)
        await record(result)

    pending = [b for b in branches if b not in finished]
    if pending and not policy.done(_successes(finished), len(finished), total):
        async with asyncio.TaskGroup() as group:
            tasks = {b: group.create_task(run_branch(b)) for b in pending}
            while True:
                running = [t for t in tasks.values() if not t.done()]
                if not running or policy.done(_successes(finished), len(finished), total):
                    break
                wait = 0.25 if heartbeat_timeout is None else min(0.25, heartbeat_timeout / 4)
                if deadline_at is not None:
                    wait = min(wait, max(0.0, deadline_at - clock.now()))
                await asyncio.wait(running, timeout=wait)
                now = clock.now()
                if heartbeat_timeout is not None:
                    for b, task in tasks.items():
                        if task.done() or b in stalled:
                            continue
                        silent = ctx.child_silence(run_ids[b])
                        if silent is not None and silent > heartbeat_timeout:
                            stalled.add(b)
                            await ctx.record(
                                "BranchStalled",
                                {"op": op, "name": name, "branch": b, "silent_for": silent},
                            )
                if deadline_at is not None and now >= deadline_at:
                    await _stop_all(ctx, tasks, run_ids, "deadline exceeded")
                    break
            await _stop_all(ctx, tasks, run_ids, f"fan-out {name!r} complete ({policy.kind})")
    successes = _successes(finished)
    satisfied = successes >= policy.needed(total)
    outcomes = {b: finished[b] for b in branches}
    await ctx.record(
        "GatherCompleted",
        {
            "op": op,
            "name": name,
            "satisfied": satisfied,
            "partial": any(o.status != "succeeded" for o in outcomes.values()),
            "elapsed_s": clock.monotonic() - started_at,
            "statuses": {b: o.status for b, o in outcomes.items()},
        },
    )
    return FanOutResult(name, policy.describe(total), outcomes, satisfied, _ctx=ctx)


def _successes(finished: Mapping[str, BranchOutcome]) -> int:
    return sum(1 for o in finished.values() if o.status == "succeeded")


async def _stop_all(
    ctx: WorkflowContext,
    tasks: Mapping[str, asyncio.Task[None]],
    run_ids: Mapping[str, str],
    reason: str,
) -> None:
    """Cancel every branch still running, as an app-level cancel (journaled by each)."""
    for branch, task in tasks.items():
        if not task.done():
            ctx.cancel_child_run(run_ids[branch], reason)
    running = [t for t in tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running)
