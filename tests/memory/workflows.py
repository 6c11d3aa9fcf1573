"""Workflows the memory tests run (importable by name, so a resume can load them)."""

from __future__ import annotations

from typing import Any

import phalanx
from phalanx.memory import memory

#: Runs (by id) whose next pass through `crash_point` raises `Crash` once.
CRASH_ONCE: set[str] = set()


class Crash(BaseException):
    """A simulated process crash: not an `Exception`, so phalanx journals no outcome."""


def crash_point(run_id: str) -> str:
    if run_id in CRASH_ONCE:
        CRASH_ONCE.discard(run_id)
        raise Crash(run_id)
    return "passed"


@phalanx.workflow
async def observer(ctx: phalanx.WorkflowContext, name: str) -> dict[str, Any]:
    """Reads one key three ways, crashes once, then writes what it saw."""
    mem = memory(ctx, name, agent="observer")
    plan = mem.linearizable()
    seen = await plan.read("k")
    pinned = await mem.snapshot()
    pinned_value = (await pinned.read("k")).value
    eventual = await mem.eventual().read("k")
    versions = await plan.history("k")
    await ctx.step("crash point", crash_point, ctx.run_id)
    written = await plan.update("seen", lambda v: [*v, seen.value], default=[])
    return {
        "linearizable": seen.value,
        "snapshot": pinned_value,
        "eventual": eventual.value,
        "history": [v.value for v in versions],
        "version": written.version,
    }


@phalanx.workflow
async def incrementer(ctx: phalanx.WorkflowContext, name: str, times: int) -> int:
    """Adds one to a shared counter `times` times with compare-and-set."""
    plan = memory(ctx, name, agent=ctx.run_id, timeout=60).linearizable()
    for _ in range(times):
        await plan.update("n", lambda n: n + 1, default=0, max_attempts=10_000)
    return times
