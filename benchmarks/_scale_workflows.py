"""The workflows `scale.py` submits; workers import them from here (the repo on PYTHONPATH)."""

from __future__ import annotations

import asyncio

import phalanx
from phalanx import WorkflowContext


def _nothing() -> None:
    return None


@phalanx.workflow
async def noop(ctx: WorkflowContext, count: int = 10) -> int:
    """`count` steps that do nothing: the unit of work of the throughput figures."""
    for i in range(count):
        await ctx.step(f"n{i}", _nothing)
    return count


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)


@phalanx.workflow
async def long(ctx: WorkflowContext, count: int = 200, seconds: float = 0.05) -> int:
    """A run long enough to be killed in the middle of (the takeover figure)."""
    for i in range(count):
        await ctx.step(f"p{i}", _pause, seconds)
    return count


@phalanx.workflow
async def wait_once(ctx: WorkflowContext, seconds: float = 0.2) -> None:
    """A child run: one step that waits `seconds` (a model call's latency, say)."""
    await ctx.step("wait", _pause, seconds)


@phalanx.workflow
async def fan(ctx: WorkflowContext, width: int = 8, seconds: float = 0.2) -> int:
    """A fan-out of `width` child runs (`wait_once`): under workers, spread over them."""
    branches = {f"b{i}": phalanx.Branch(wait_once, {"seconds": seconds}) for i in range(width)}
    result = await phalanx.gather(ctx, "fan", branches)
    return len(result.values)
