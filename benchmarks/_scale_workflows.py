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
