"""Workflows and step functions the durable tests run.

They live at module level because a run journals its workflow's `module:qualname` and
`resume` imports it again. Test-side bookkeeping (how often each step function ran,
which idempotency keys it saw, where to crash, gates a test opens) is module state,
reset before every test by `tests/durable/conftest.py`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import phalanx

# -- test-side bookkeeping ------------------------------------------------------------


class Crash(BaseException):
    """A simulated process crash: not an `Exception`, so phalanx journals no outcome."""


#: How many times each step function ran, by label.
CALLS: Counter[str] = Counter()
#: Idempotency keys seen by `charge`, in call order.
KEYS: list[str] = []
#: Labels whose next call raises `Crash` (each crashes once).
CRASH_AT: set[str] = set()
#: Failures `flaky` still has to raise, by label.
FAILURES: dict[str, int] = {}
#: Exceptions workflows caught, for tests to inspect their exact type.
CAUGHT: list[BaseException] = []
#: Values `remember` saw (the first, live run of a recorded-values workflow).
SEEN: list[dict[str, Any]] = []
#: What the code of `evolving` looks like now; tests change it to mimic a deploy.
CODE: dict[str, Any] = {"first": "a", "ends_early": False}


@dataclass
class Gate:
    """A step that blocks until the test releases it; calls past `hold` pass straight."""

    hold: int = 1
    calls: int = 0
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


GATES: dict[str, Gate] = {}


def gate(name: str, *, hold: int = 1) -> Gate:
    """Register (and return) the gate that `pause(name)` waits on."""
    GATES[name] = Gate(hold=hold)
    return GATES[name]


def reset() -> None:
    """Forget everything a previous test left behind."""
    CALLS.clear()
    KEYS.clear()
    CRASH_AT.clear()
    FAILURES.clear()
    CAUGHT.clear()
    SEEN.clear()
    GATES.clear()
    CODE.update(first="a", ends_early=False)


def _tick(label: str) -> None:
    CALLS[label] += 1
    if label in CRASH_AT:
        CRASH_AT.discard(label)
        raise Crash(label)


# -- step functions -------------------------------------------------------------------


def add(label: str, x: int, y: int) -> int:
    """A sync step: count the call, maybe crash, return x + y."""
    _tick(label)
    return x + y


async def add_async(label: str, x: int, y: int) -> int:
    """The same as `add`, as a coroutine function."""
    _tick(label)
    return x + y


async def pause(name: str) -> str:
    """Block on the gate `name` until the test releases it (for the first `hold` calls)."""
    CALLS[f"pause:{name}"] += 1
    entry = GATES[name]
    entry.calls += 1
    entry.entered.set()
    if entry.calls <= entry.hold:
        await entry.release.wait()
    return name


def charge(ctx: phalanx.WorkflowContext, label: str) -> str:
    """A sync step that records the idempotency key it runs under, then maybe crashes."""
    KEYS.append(ctx.idempotency_key)
    _tick(label)
    return ctx.idempotency_key


async def charge_async(ctx: phalanx.WorkflowContext, label: str) -> str:
    """`charge` as a coroutine function."""
    KEYS.append(ctx.idempotency_key)
    _tick(label)
    return ctx.idempotency_key


class Transient(Exception):
    """An ordinary, retryable failure."""


class BadInput(phalanx.UserError):
    """Misuse: never retried."""


class Permanent(Exception):
    """Declares itself not worth retrying."""

    retryable = False


class NeedsArgs(Exception):
    """An exception whose constructor cannot be called with its message alone."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"error {code}: {detail}")
        self.code = code


def flaky(label: str, kind: str) -> str:
    """Fail while `FAILURES[label]` is positive (with an error of `kind`), then succeed."""
    _tick(label)
    if FAILURES.get(label, 0) > 0:
        FAILURES[label] -= 1
        left = FAILURES[label]
        if kind == "ValueError":
            raise ValueError(f"{label} failed, {left} left")
        if kind == "Transient":
            raise Transient(f"{label} failed, {left} left")
        if kind == "BadInput":
            raise BadInput(f"{label} got bad input")
        if kind == "Permanent":
            raise Permanent(f"{label} failed for good")
        if kind == "NeedsArgs":
            raise NeedsArgs(418, f"{label} is a teapot")
        raise AssertionError(f"unknown kind {kind}")
    return f"{label} ok"


def not_json(label: str) -> Any:
    """A step whose result cannot be journaled."""
    _tick(label)
    return {"a set": {1, 2}}


def remember(values: dict[str, Any]) -> bool:
    """Keep the values the live run drew, for comparison with the replayed ones."""
    SEEN.append(values)
    return True


# -- workflows ------------------------------------------------------------------------


@phalanx.workflow
async def pipeline(ctx: phalanx.WorkflowContext, n: int) -> dict[str, int]:
    """Three steps, sync and async, each feeding the next."""
    a = await ctx.step("a", add, "a", n, 1)
    b = await ctx.step("b", add_async, "b", a, 10)
    c = await ctx.step("c", add, "c", b, 100)
    return {"a": a, "b": b, "c": c}


@phalanx.workflow
async def paused_pipeline(ctx: phalanx.WorkflowContext) -> list[Any]:
    """A step, a gated step, a step: for crashing (or fencing) while blocked."""
    one = await ctx.step("one", add, "one", 0, 1)
    two = await ctx.step("two", pause, "two")
    three = await ctx.step("three", add, "three", one, 2)
    return [one, two, three]


@phalanx.workflow
async def keyed(ctx: phalanx.WorkflowContext, use_async: bool) -> list[str]:
    """Two steps that each report their idempotency key."""
    fn = charge_async if use_async else charge
    first = await ctx.step("first", fn, ctx, "first")
    second = await ctx.step("second", fn, ctx, "second")
    return [first, second]


@phalanx.workflow
async def retrying(ctx: phalanx.WorkflowContext, kind: str, max_attempts: int = 3) -> Any:
    """One retried flaky step; a failure is caught (kept in CAUGHT) and reported."""
    policy = phalanx.RetryPolicy(max_attempts=max_attempts, initial_interval=0.01)
    try:
        result = await ctx.step("flaky", flaky, "flaky", kind, retry=policy)
    except Exception as exc:
        CAUGHT.append(exc)
        result = f"caught {type(exc).__name__}"
    await ctx.step("after", add, "after", 0, 0)
    return result


@phalanx.workflow
async def failing_step(ctx: phalanx.WorkflowContext, kind: str) -> str:
    """A step that fails without retries, its error left to fail the run."""
    return await ctx.step("flaky", flaky, "flaky", kind)


@phalanx.workflow
async def evolving(ctx: phalanx.WorkflowContext) -> int:
    """A workflow whose code the tests "deploy" anew between crash and resume."""
    name = str(CODE["first"])
    first = await ctx.step(name, add, name, 0, 1)
    if CODE["ends_early"]:
        return first
    return await ctx.step("second", add, "second", first, 1)


@phalanx.workflow
async def draws(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    """Draw a time, a random number and a uuid, then crash-able work."""
    values = {"now": ctx.now(), "random": ctx.random(), "uuid": ctx.uuid()}
    await ctx.step("remember", remember, values)
    await ctx.step("after", add, "after", 0, 0)
    return values


@phalanx.workflow
async def napping(ctx: phalanx.WorkflowContext, seconds: float) -> int:
    """Step, durable sleep, step."""
    await ctx.step("before", add, "before", 0, 0)
    await ctx.sleep(seconds)
    return await ctx.step("after", add, "after", 0, 1)


@phalanx.workflow
async def approval(ctx: phalanx.WorkflowContext, timeout: float | None = None) -> Any:
    """Wait for the signal "approve" and return its data."""
    data = await ctx.wait_for_signal("approve", timeout=timeout)
    await ctx.step("act", add, "act", 0, 0)
    return data


@phalanx.workflow
async def two_messages(
    ctx: phalanx.WorkflowContext, gated: bool = False, timeout: float | None = None
) -> list[Any]:
    """Wait for two "msg" signals (optionally after a gate); the second may time out."""
    if gated:
        await ctx.step("gate", pause, "gate")
    first = await ctx.wait_for_signal("msg")
    await ctx.step("between", add, "between", 0, 0)
    try:
        second = await ctx.wait_for_signal("msg", timeout=timeout)
    except phalanx.SignalTimeoutError as exc:
        CAUGHT.append(exc)
        second = "timed out"
    return [first, second]


@phalanx.workflow
async def cancellable(ctx: phalanx.WorkflowContext) -> str:
    """Block in a step; whatever happens, a cleanup step runs on the way out."""
    try:
        await ctx.step("work", pause, "work")
        await ctx.step("more", add, "more", 0, 0)
        return "finished"
    finally:
        await ctx.step("cleanup", add, "cleanup", 0, 0)


@phalanx.workflow
async def cancellable_parent(ctx: phalanx.WorkflowContext) -> str:
    """Run `cancellable` as a child, with cleanup of its own."""
    try:
        return await ctx.child(cancellable)
    finally:
        await ctx.step("parent-cleanup", add, "parent-cleanup", 0, 0)


@phalanx.workflow
async def child_steps(ctx: phalanx.WorkflowContext, n: int) -> int:
    """The child of `parent`: two steps."""
    a = await ctx.step("c1", add, "c1", n, 1)
    return await ctx.step("c2", add_async, "c2", a, 1)


@phalanx.workflow
async def parent(ctx: phalanx.WorkflowContext, n: int) -> int:
    """A step, a child run, a step."""
    start = await ctx.step("p1", add, "p1", n, 0)
    got = await ctx.child(child_steps, n=start)
    return await ctx.step("p2", add, "p2", got, 1000)


@phalanx.workflow
async def broken_child(ctx: phalanx.WorkflowContext) -> None:
    """A child whose step fails for good."""
    await ctx.step("bad", flaky, "bad", "Permanent")


@phalanx.workflow
async def parent_of_broken(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    """Catch the child's failure and report what the parent saw."""
    try:
        await ctx.child(broken_child)
    except phalanx.RunFailedError as exc:
        CAUGHT.append(exc)
        return {"run_id": exc.run_id, "status": exc.status, "error_type": exc.error_type}
    return {}


@phalanx.workflow
async def unjournalable(ctx: phalanx.WorkflowContext) -> str:
    """A step returning a set: refused, journaled as a failure, caught."""
    try:
        await ctx.step("bad", not_json, "bad")
    except phalanx.EventDataError as exc:
        CAUGHT.append(exc)
        return "refused"
    return "accepted"


async def undecorated(ctx: phalanx.WorkflowContext) -> None:
    """Looks like a workflow but was never marked with @phalanx.workflow."""


@phalanx.workflow
async def key_outside_step(ctx: phalanx.WorkflowContext) -> str:
    """Read the idempotency key where there is none."""
    try:
        return ctx.idempotency_key
    except phalanx.UserError as exc:
        CAUGHT.append(exc)
        return "refused"


@phalanx.workflow
async def returns_a_set(ctx: phalanx.WorkflowContext) -> Any:
    """A workflow whose result cannot be journaled."""
    return {1, 2, 3}


@phalanx.workflow
async def fan_out(ctx: phalanx.WorkflowContext) -> list[str]:
    """Two gated steps in parallel branches, a step after them, a cleanup on the way out."""
    results: list[str] = []

    async def branch(i: int) -> None:
        results.append(await ctx.step(f"branch-{i}", pause, f"branch-{i}"))

    try:
        async with asyncio.TaskGroup() as group:
            for i in (0, 1):
                group.create_task(branch(i))
        await ctx.step("after", add, "after", 0, 0)
        return sorted(results)
    finally:
        await ctx.step("cleanup", add, "cleanup", 0, 0)
