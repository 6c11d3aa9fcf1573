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
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import PartialResultError
from ..durable import RunOutcome, WorkflowContext, lowlevel
from . import _spans as spans

BranchStatus = Literal["succeeded", "failed", "timed_out", "cancelled"]
PolicyKind = Literal["all", "any", "quorum", "best_effort"]
#: How a branch runs: as a child run of its own, or as a step of the fan-out's run.
BranchMode = Literal["run", "step"]


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
    """One branch of a fan-out: a workflow to run as a child run, with its inputs.

    `Branch.step(fn, **inputs)` makes a step branch instead (see the module's doc).
    """

    workflow: Callable[..., Awaitable[Any]]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    mode: BranchMode = "run"

    @classmethod
    def step(cls, fn: Callable[..., Awaitable[Any]], /, **inputs: Any) -> Branch:
        """A branch that awaits `fn(**inputs)` inside the parent run, journaled like a step."""
        return cls(fn, inputs, "step")


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
        branches: Branch name to `Branch` (a child run) or `Branch.step(fn, ...)` (a
            step branch: journaled in this run only, see the module's doc).
        policy: When the fan-out is complete (default: `Policy.all()`).
        deadline: Seconds from the first start (kept across a resume). Branch runs get
            the earlier of this and the run's own deadline.
        heartbeat_timeout: A branch whose journal stays silent this long is reported
            as stalled (a `BranchStalled` event) before the deadline.
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
    finished: dict[str, BranchOutcome] = {}
    #: Branches reported stalled (journaled once each, also across a resume).
    stalled: set[str] = set()
    # Seconds the fan-out had already been running before this process took it up
    # (a resume): branch durations and the timed-out message count from the first
    # start, like the deadline does, not from the resume.
    already = 0.0
    if recorded is None:
        first_start = clock.now()
        deadline_at = None if deadline is None else first_start + deadline
        if ctx.deadline_at is not None:
            deadline_at = (
                ctx.deadline_at if deadline_at is None else min(deadline_at, ctx.deadline_at)
            )
        run_ids = {b: f"{ctx.run_id}.{op}.{b}" for b in branches}
        await lowlevel.record(
            ctx,
            "GatherStarted",
            {
                "op": op,
                "name": name,
                "policy": policy.describe(total),
                "branches": run_ids,
                "deadline_at": deadline_at,
                "started_at": first_start,
            },
        )
    else:
        started = recorded.events[0].data
        deadline_at = started.get("deadline_at")
        first = started.get("started_at", recorded.events[0].recorded_at)
        already = max(0.0, clock.now() - float(first))
        run_ids = dict(started["branches"])
        if set(run_ids) != set(branches):
            lowlevel.diverge(
                ctx, op, recorded.describe(), f"gather {name!r} over {sorted(branches)}"
            )
        for event in recorded.events:
            if event.type == "BranchStalled":
                stalled.add(event.data["branch"])
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

    started_at = clock.monotonic() - already
    # The deadline's length, for messages (the run's own deadline may have cut it).
    limit = 0.0 if deadline_at is None else deadline_at - (clock.now() - already)

    async def record(outcome: BranchOutcome) -> None:
        # Keep what the journal keeps (the duration rounded), so that a replayed
        # result is identical to the live one.
        outcome = dataclasses.replace(outcome, duration_s=round(outcome.duration_s, 3))
        finished[outcome.name] = outcome
        await lowlevel.record(
            ctx,
            "BranchFinished",
            {"op": op, "name": name, "branch": outcome.name, **outcome.to_json()},
        )

    async def run_branch(branch: str) -> None:
        spec = branches[branch]
        t0 = clock.monotonic() - already
        outcome = await lowlevel.run_child(
            ctx, run_ids[branch], spec.workflow, dict(spec.inputs), deadline_at=deadline_at
        )
        duration = clock.monotonic() - t0
        result = _outcome_from_run(branch, outcome, duration)
        if deadline_at is not None and clock.now() >= deadline_at:
            if result.status == "succeeded":
                await lowlevel.record(
                    ctx,
                    "BranchLate",
                    {"op": op, "name": name, "branch": branch, "value": result.value},
                )
            result = BranchOutcome(
                branch,
                "timed_out",
                None,
                f"no answer within the deadline ({limit:.1f}s)",
                duration,
                result.run_id,
                branch in stalled,
            )
        elif branch in stalled:
            result = dataclasses.replace(result, stalled=True)
        await record(result)

    # Step branches: the reason the fan-out stopped each one it cancelled; the outcomes
    # they ended with (and their events), which the loop below journals together; and
    # the future that wakes that loop when one ends. Step branches wake the loop through
    # this one future instead of each being waited on: `asyncio.wait` would add and
    # remove a callback on every running branch at every turn of the loop.
    stopping: dict[str, str] = {}
    ended: list[tuple[BranchOutcome, dict[str, Any]]] = []
    loop = asyncio.get_running_loop()
    wake: asyncio.Future[None] = loop.create_future()

    async def journal_ended() -> None:
        # One append for every step branch that ended since the last one (a burst of
        # a thousand costs one write, not a thousand). They count as finished only once
        # journaled, so no decision rests on an outcome a crash could lose.
        if not ended:
            return
        batch = ended[:]
        ended.clear()
        for _, data in batch[:-1]:
            lowlevel.record_later(ctx, "BranchFinished", data)
        await lowlevel.record(ctx, "BranchFinished", batch[-1][1])
        for outcome, _ in batch:
            finished[outcome.name] = outcome

    monotonic = clock.monotonic

    async def run_step_branch(branch: str) -> None:
        spec = branches[branch]
        t0 = monotonic() - already
        value: Any = None
        error: str | None = None
        status: BranchStatus = "succeeded"
        try:
            value = _as_journaled(await spec.workflow(**spec.inputs))
        except asyncio.CancelledError:
            reason = stopping.get(branch)
            task = asyncio.current_task()
            if reason is None or task is None:
                raise  # not ours: the whole run is being stopped
            task.uncancel()  # our own stop, an outcome: journal it like any other
            status, error = "cancelled", f"Cancelled: {reason}"
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        # Rounded as the journal keeps it, so a replayed result equals the live one.
        duration = round(monotonic() - t0, 3)
        if deadline_at is not None and clock.now() >= deadline_at:
            if status == "succeeded":
                lowlevel.record_later(
                    ctx, "BranchLate", {"op": op, "name": name, "branch": branch, "value": value}
                )
            status, value = "timed_out", None
            error = f"no answer within the deadline ({limit:.1f}s)"
        outcome = BranchOutcome(branch, status, value, error, duration)
        # `outcome.to_json()`'s fields, written out: this runs once per branch.
        data = {
            "op": op,
            "name": name,
            "branch": branch,
            "status": status,
            "value": value,
            "error": error,
            "duration_s": duration,
            "run_id": None,
            "stalled": False,
        }
        ended.append((outcome, data))
        if not wake.done():
            wake.set_result(None)

    pending = [b for b in branches if b not in finished]
    if pending and not policy.done(_successes(finished), len(finished), total):
        fanout = spans.fanout_span(
            run_id=ctx.run_id,
            op=op,
            name=name,
            policy=policy.describe(total),
            kind=policy.kind,
            needed=policy.needed(total),
            branches=list(branches),
            outcomes=finished,
        )
        # The fan-out's span is current in the branches: their child runs nest in it.
        async with fanout, asyncio.TaskGroup() as group:
            tasks = {
                b: group.create_task(
                    run_step_branch(b) if branches[b].mode == "step" else run_branch(b)
                )
                for b in pending
            }
            while True:
                if wake.done():
                    wake = loop.create_future()  # before journaling: no end goes unseen
                await journal_ended()
                running = [t for t in tasks.values() if not t.done()]
                if not running or policy.done(_successes(finished), len(finished), total):
                    break
                wait = 0.25 if heartbeat_timeout is None else min(0.25, heartbeat_timeout / 4)
                if deadline_at is not None:
                    wait = min(wait, max(0.0, deadline_at - clock.now()))
                child_runs = [t for b, t in tasks.items() if branches[b].mode == "run"]
                waiting = [t for t in child_runs if not t.done()]
                if len(waiting) == len(running):
                    await asyncio.wait(running, timeout=wait)
                else:
                    # Step branches are running: wake when one ends, to journal it.
                    await asyncio.wait(
                        [*waiting, wake], timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                now = clock.now()
                if heartbeat_timeout is not None:
                    for b, task in tasks.items():
                        if task.done() or b in stalled:
                            continue
                        silent = lowlevel.child_silence(ctx, run_ids[b])
                        if silent is not None and silent > heartbeat_timeout:
                            stalled.add(b)
                            await lowlevel.record(
                                ctx,
                                "BranchStalled",
                                {"op": op, "name": name, "branch": b, "silent_for": silent},
                            )
                if deadline_at is not None and now >= deadline_at:
                    await _stop_all(ctx, tasks, run_ids, "deadline exceeded", branches, stopping)
                    break
            await _stop_all(
                ctx,
                tasks,
                run_ids,
                f"fan-out {name!r} complete ({policy.kind})",
                branches,
                stopping,
            )
            await journal_ended()
    successes = _successes(finished)
    satisfied = successes >= policy.needed(total)
    outcomes = {b: finished[b] for b in branches}
    await lowlevel.record(
        ctx,
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


def _successes(finished: Mapping[str, BranchOutcome]) -> int:
    return sum(1 for o in finished.values() if o.status == "succeeded")


async def _stop_all(
    ctx: WorkflowContext,
    tasks: Mapping[str, asyncio.Task[None]],
    run_ids: Mapping[str, str],
    reason: str,
    branches: Mapping[str, Branch],
    stopping: dict[str, str],
) -> None:
    """Cancel every branch still running, as an app-level cancel (journaled by each)."""
    for branch, task in tasks.items():
        if task.done():
            continue
        if branches[branch].mode == "step":
            stopping[branch] = reason  # so it reports its cancel as an outcome
            task.cancel()
        else:
            lowlevel.cancel_child(ctx, run_ids[branch], reason)
    running = [t for t in tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running)
