"""Workflows the fleet tests submit; each step's effect is a line in an external ledger."""

from __future__ import annotations

import asyncio
from typing import Any

import phalanx
from phalanx import WorkflowContext
from tests.chaos.workflows import record


def effect(ctx: WorkflowContext, ledger: str, step: str) -> str:
    """A step's side effect, done once per attempt; returns the step's name."""
    record(ledger, step, ctx.idempotency_key)
    return step


async def slow_effect(ctx: WorkflowContext, ledger: str, step: str, seconds: float) -> str:
    """The effect first, then time in the step: a kill here leaves the step in flight."""
    record(ledger, step, ctx.idempotency_key)
    await asyncio.sleep(seconds)
    return step


@phalanx.workflow
async def steps(
    ctx: WorkflowContext, ledger: str, count: int = 3, seconds: float = 0.0
) -> list[str]:
    """`count` steps named s0, s1...; each records its effect, then takes `seconds`."""
    done = []
    for i in range(count):
        done.append(await ctx.step(f"s{i}", slow_effect, ctx, ledger, f"s{i}", seconds))
    return done


@phalanx.workflow
async def approval(ctx: WorkflowContext, ledger: str) -> Any:
    """A step, a wait for a person's `approve` signal, then a step."""
    await ctx.step("before", effect, ctx, ledger, "before")
    answer = await ctx.wait_for_signal("approve")
    await ctx.step("after", effect, ctx, ledger, "after")
    return answer


@phalanx.workflow
async def needs_arg(ctx: WorkflowContext, topic: str) -> str:
    """A workflow with a required input, for input validation."""
    return topic


@phalanx.workflow
async def leaf(ctx: WorkflowContext, ledger: str, name: str, seconds: float = 0.0) -> str:
    """A child run: one step whose effect (with the pid that ran it) goes to the ledger."""
    return await ctx.step(name, slow_effect, ctx, ledger, name, seconds)


@phalanx.workflow
async def held(ctx: WorkflowContext) -> Any:
    """A child run that waits for a `go` signal nobody sends: it ends only if stopped."""
    return await ctx.wait_for_signal("go")


@phalanx.workflow
async def tree(
    ctx: WorkflowContext,
    ledger: str,
    width: int = 10,
    seconds: float = 0.0,
    hold: bool = False,
    deadline: float | None = None,
) -> dict[str, str]:
    """A fan-out of `width` child runs (`leaf`, or `held` with `hold`), then a step.

    Returns each branch's status.
    """
    branches = {
        f"c{i}": phalanx.Branch(held, {})
        if hold
        else phalanx.Branch(leaf, {"ledger": ledger, "name": f"c{i}", "seconds": seconds})
        for i in range(width)
    }
    result = await phalanx.gather(
        ctx, "fan", branches, policy=phalanx.Policy.best_effort(), deadline=deadline
    )
    await ctx.step("after", effect, ctx, ledger, "after")
    return {name: outcome.status for name, outcome in result.outcomes.items()}


@phalanx.workflow
async def sleeper(ctx: WorkflowContext, ledger: str, seconds: float) -> str:
    """A durable timer of `seconds`, then a step."""
    await ctx.sleep(seconds)
    return await ctx.step("woke", effect, ctx, ledger, "woke")


@phalanx.workflow
async def broken(ctx: WorkflowContext) -> None:
    """A child run that fails."""
    raise ValueError("broken on purpose")


@phalanx.workflow
async def nested(ctx: WorkflowContext, ledger: str) -> list[str]:
    """`ctx.child` twice: a leaf's result, then a failing child's error type."""
    first = await ctx.child(leaf, ledger=ledger, name="first")
    try:
        await ctx.child(broken)
    except phalanx.RunFailedError as exc:
        return [first, exc.status, exc.error_type]
    return [first]
