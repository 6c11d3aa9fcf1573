"""Workflows the chaos tests kill and resume in real processes.

Every step's side effect appends one JSON line (step name, idempotency key, pid) to
an external ledger file, opened with O_APPEND and written with a single `write`, so
lines from a killed process and its successor never interleave. The ledger is what a
real external system would have seen, independent of the journal.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import phalanx
from phalanx import RetryPolicy, WorkflowContext


def record(ledger: str, step: str, key: str) -> None:
    """Perform a step's effect: one line appended to the ledger."""
    line = json.dumps({"step": step, "key": key, "pid": os.getpid()}) + "\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_ledger(ledger: str) -> list[dict[str, Any]]:
    """The effects recorded so far, in order."""
    if not os.path.exists(ledger):
        return []
    with open(ledger, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Flaky(Exception):
    """The transient failure `check` raises on its first attempt."""


# -- the pipeline killed at every point ------------------------------------------------


def fetch(ctx: WorkflowContext, ledger: str) -> dict[str, Any]:
    """A sync step (runs in a worker thread)."""
    record(ledger, "fetch", ctx.idempotency_key)
    return {"items": [3, 1, 2]}


async def check(ctx: WorkflowContext, ledger: str, marker: str, items: list[int]) -> int:
    """An async step that fails once (ever, across processes), then succeeds."""
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        pass  # failed before: succeed now
    else:
        raise Flaky("the first attempt fails")
    await asyncio.sleep(0)
    record(ledger, "check", ctx.idempotency_key)
    return sum(items)


def publish(ctx: WorkflowContext, ledger: str, total: int, approval: Any) -> str:
    """The last step, after the timer and the signal."""
    record(ledger, "publish", ctx.idempotency_key)
    return f"published total {total}, approved by {approval}"


#: The steps of `pipeline`, in order.
PIPELINE_STEPS = ("fetch", "check", "publish")


@phalanx.workflow
async def pipeline(
    ctx: WorkflowContext, ledger: str, marker: str, backoff: float, timer: float
) -> dict[str, Any]:
    """Step, retried step, durable timer, signal wait, step."""
    fetched = await ctx.step("fetch", fetch, ctx, ledger)
    total = await ctx.step(
        "check",
        check,
        ctx,
        ledger,
        marker,
        fetched["items"],
        retry=RetryPolicy(max_attempts=3, initial_interval=backoff, jitter=0.0),
    )
    await ctx.sleep(timer)
    approval = await ctx.wait_for_signal("approve")
    published = await ctx.step("publish", publish, ctx, ledger, total, approval)
    return {"fetched": fetched, "total": total, "approval": approval, "published": published}


# -- the slow pipeline paused mid-run for the split-brain test -------------------------


def slow_effect(ctx: WorkflowContext, ledger: str, step: str, seconds: float) -> str:
    """Work for `seconds`, then perform the effect."""
    time.sleep(seconds)
    record(ledger, step, ctx.idempotency_key)
    return f"{step} done"


@phalanx.workflow
async def slow_pipeline(
    ctx: WorkflowContext, ledger: str, steps: int = 8, seconds: float = 0.3
) -> list[str]:
    """`steps` steps of `seconds` each, one after another."""
    return [
        await ctx.step(f"s{i}", slow_effect, ctx, ledger, f"s{i}", seconds) for i in range(steps)
    ]


# -- the step that kills its own process every time ------------------------------------


def first(ctx: WorkflowContext, ledger: str) -> str:
    """A step that completes: it must never run again."""
    record(ledger, "first", ctx.idempotency_key)
    return "first done"


async def fatal(ctx: WorkflowContext, ledger: str) -> str:
    """Record the attempt, then SIGKILL this process (a native crash, the OOM killer).

    Async, with no await: the process dies before its held start could be written.
    """
    record(ledger, "fatal", ctx.idempotency_key)
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@phalanx.workflow
async def crash_loop(ctx: WorkflowContext, ledger: str) -> str:
    """A completed step, then a step whose process dies on every start."""
    done = await ctx.step("first", first, ctx, ledger)
    return done + await ctx.step("fatal", fatal, ctx, ledger)
