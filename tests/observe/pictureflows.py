"""Workflows whose runs the picture tests draw: retries, pattern operations, children."""

from __future__ import annotations

from typing import Any

import phalanx
from phalanx.durable import lowlevel

_attempts: dict[str, int] = {}


def flaky(key: str) -> str:
    """Fails on the first call for `key`, then succeeds."""
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] == 1:
        raise ConnectionError("transient failure")
    return "ok"


async def _compensate(ctx: phalanx.WorkflowContext) -> None:
    """A saga-like operation, recorded through the pattern API: two steps compensated."""
    op, recorded = lowlevel.claim(ctx, "saga", "publish")
    if recorded is not None:
        return
    await lowlevel.record(ctx, "SagaStarted", {"op": op, "name": "publish"})
    for step in ("draft", "outline"):
        await lowlevel.record(ctx, "CompensationStarted", {"op": op, "name": step})
        await lowlevel.record(ctx, "CompensationCompleted", {"op": op, "name": step})
    await lowlevel.record(ctx, "DisagreementDetected", {"op": op, "name": "publish"})
    await lowlevel.record(ctx, "SagaCompensated", {"op": op, "name": "publish"})


async def _mystery(ctx: phalanx.WorkflowContext) -> None:
    """An operation of a kind no view knows: drawn by its op_kind, never dropped."""
    op, recorded = lowlevel.claim(ctx, "consensus_round", "round-1")
    if recorded is None:
        await lowlevel.record(ctx, "ProposalMade", {"op": op, "name": "round-1"})
        await lowlevel.record(ctx, "ProposalAccepted", {"op": op, "name": "round-1"})


@phalanx.workflow
async def little(ctx: phalanx.WorkflowContext, n: int = 1) -> int:
    """A child run."""
    return await ctx.step("double", lambda: n * 2)


@phalanx.workflow
async def patterned(ctx: phalanx.WorkflowContext, key: str) -> dict[str, Any]:
    """A retried step, a child run, a compensating operation and an unknown one."""
    retried = await ctx.step(
        "fetch", flaky, key, retry=phalanx.RetryPolicy(max_attempts=3, initial_interval=0.01)
    )
    child = await ctx.child(little, n=2)
    await _compensate(ctx)
    await _mystery(ctx)
    return {"retried": retried, "child": child}
