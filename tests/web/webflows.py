"""Workflows the dashboard tests run (`phalanx run tests.web.webflows:...`)."""

from __future__ import annotations

import phalanx
from phalanx.durable import lowlevel
from phalanx.memory import memory, open_memory_manager


def _same(value: int) -> int:
    return value


@phalanx.workflow
async def quick(ctx: phalanx.WorkflowContext) -> str:
    """One step, done at once."""
    return str(await ctx.step("hello", _same, 1))


@phalanx.workflow
async def many_steps(ctx: phalanx.WorkflowContext, n: int) -> int:
    """`n` steps: a run long enough to page through."""
    total = 0
    for index in range(n):
        total += await ctx.step(f"step-{index}", _same, index)
    return total


@phalanx.workflow
async def waits(ctx: phalanx.WorkflowContext) -> str:
    """Parks `waiting` until it is signalled `go` (the live-update latency test)."""
    answer = await ctx.wait_for_signal("go")
    return str(answer)


@phalanx.workflow
async def many_writes(ctx: phalanx.WorkflowContext, n: int) -> int:
    """`n` versions of key `n` in memory `counter` (the memory page's pagination)."""
    store = lowlevel.store(ctx)
    async with open_memory_manager(store, "counter", take_over=True, clock=ctx.clock) as manager:
        counter = memory(ctx, "counter", agent="counter", manager=manager).linearizable()
        for index in range(n):
            await counter.put("n", {"count": index + 1, "note": "<b>bold</b>"})
    return n
