"""Branch and parent workflows the fan-out tests run.

They live at module level because runs journal their workflow's `module:qualname` and
`resume` imports it again. `LEDGER` counts how often each branch's work really ran
(not replayed), by label; `RESULTS` keeps the `FanOutResult` objects parents got, so
tests can poke at them; both are reset before every test by the package's conftest.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import phalanx
from phalanx import Branch, FanOutResult, Policy, gather


class Crash(BaseException):
    """A simulated process crash: not an `Exception`, so phalanx journals no outcome."""


#: How many times each branch's work ran, by label.
LEDGER: Counter[str] = Counter()
#: Labels whose next `_work` raises `Crash` (each crashes once).
CRASH_AT: set[str] = set()
#: Every FanOutResult a parent workflow got, in order.
RESULTS: list[FanOutResult] = []
#: Exceptions parent workflows caught, for tests to inspect.
CAUGHT: list[BaseException] = []


def reset() -> None:
    """Forget what a previous test left behind."""
    LEDGER.clear()
    CRASH_AT.clear()
    RESULTS.clear()
    CAUGHT.clear()


async def _work(label: str, value: Any, delay: float) -> Any:
    LEDGER[label] += 1
    if delay:
        await asyncio.sleep(delay)
    if label in CRASH_AT:
        CRASH_AT.discard(label)
        raise Crash(label)
    return value


async def _boom(label: str, message: str, delay: float) -> None:
    LEDGER[label] += 1
    if delay:
        await asyncio.sleep(delay)
    raise ValueError(message)


# -- branches -------------------------------------------------------------------------


@phalanx.workflow
async def answer(ctx: phalanx.WorkflowContext, label: str, value: Any, delay: float = 0.0) -> Any:
    """Answer `value` after `delay` seconds (a fast or a slow branch)."""
    return await ctx.step("work", _work, label, value, delay)


@phalanx.workflow
async def fail(
    ctx: phalanx.WorkflowContext, label: str, message: str = "boom", delay: float = 0.0
) -> None:
    """Fail with a ValueError after `delay` seconds."""
    await ctx.step("work", _boom, label, message, delay)


@phalanx.workflow
async def hang(ctx: phalanx.WorkflowContext, label: str) -> None:
    """Say it started, then never answer nor write again (a silent hang)."""
    await ctx.step("work", _work, label, None, 0.0)
    await asyncio.Event().wait()


@phalanx.workflow
async def nested(ctx: phalanx.WorkflowContext, label: str) -> None:
    """A branch that runs a child run of its own, which hangs (three levels deep)."""
    await ctx.step("work", _work, label, None, 0.0)
    await ctx.child(hang, label=f"{label}/grandchild")


@phalanx.workflow
async def stubborn(ctx: phalanx.WorkflowContext, label: str, value: Any) -> Any:
    """Ignore the cancel and answer anyway: an answer that arrives after the deadline."""
    await ctx.step("work", _work, label, None, 0.0)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        # Deliberately swallowed: this branch models work whose answer lands while
        # (or after) it is being stopped, which the fan-out must journal as late.
        return value
    return None


KINDS: dict[str, Callable[..., Awaitable[Any]]] = {
    "answer": answer,
    "fail": fail,
    "hang": hang,
    "nested": nested,
    "stubborn": stubborn,
}


def _policy(spec: str) -> Policy:
    kind, _, k = spec.partition(":")
    if kind == "quorum":
        return Policy.quorum(int(k))
    return {"all": Policy.all, "any": Policy.any, "best_effort": Policy.best_effort}[kind]()


# -- parents --------------------------------------------------------------------------


@phalanx.workflow
async def fan_out(
    ctx: phalanx.WorkflowContext,
    branches: dict[str, dict[str, Any]],
    policy: str = "all",
    deadline: float | None = None,
    heartbeat: float | None = None,
    accept: bool = False,
    after: str | None = None,
) -> dict[str, Any]:
    """Gather `branches` ({name: {"kind": ..., **inputs}}) and report the result.

    Tries to read `values` first (a partial result refuses, recorded in CAUGHT), then,
    with `accept`, accepts a partial result visibly. `after` names a label whose step
    runs after the gather (a place to crash once the fan-out is complete).
    """
    specs = {
        name: Branch(KINDS[spec["kind"]], {k: v for k, v in spec.items() if k != "kind"})
        for name, spec in branches.items()
    }
    result = await gather(
        ctx,
        "fan",
        specs,
        policy=_policy(policy),
        deadline=deadline,
        heartbeat_timeout=heartbeat,
    )
    RESULTS.append(result)
    values: dict[str, Any] | None = None
    try:
        values = result.values
    except phalanx.PartialResultError as exc:
        CAUGHT.append(exc)
        if accept:
            values = await result.accept_partial("good enough for the test")
    if after is not None:
        await ctx.step("after", _work, after, None, 0.0)
    return {**result.to_json(), "values": values}
