"""Workflows with planted bugs that `phalanx simulate` must find, and their correct twins.

Each bug is one a reviewer can miss and an ordinary test rarely trips over, because it
needs a particular interleaving or a crash at a particular point:

- `coin_flip` decides which step to run with the stdlib `random`, not `ctx.random()`:
  a replay (or a second run of the same seed) takes the other branch.
- `unguarded_counter` bumps a shared counter by reading it and appending the next value
  with no expected version: two bumps interleaved lose one (a lost update).
- `double_debit` debits an account inside a step with no idempotency check: a crash
  after the debit committed but before the step completed runs the step again.

The twins (`fair_coin`, `guarded_counter`, `idempotent_debit`) do the same with the
seams and must pass every seed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import phalanx
from phalanx import ConcurrencyError, NewEvent
from phalanx.durable import RetryPolicy, lowlevel
from phalanx.journal import Event, EventStore
from phalanx.testing import invariant


def _add(x: int, y: int) -> int:
    return x + y


@phalanx.workflow
async def coin_flip(ctx: phalanx.WorkflowContext) -> int:
    """BUG: the branch taken comes from the stdlib `random`, outside the seams."""
    a = await ctx.step("a", _add, 1, 1)
    if random.random() < 0.5:
        return int(await ctx.step("heads", _add, a, 1))
    return int(await ctx.step("tails", _add, a, 2))


@phalanx.workflow
async def fair_coin(ctx: phalanx.WorkflowContext) -> int:
    """Correct: `ctx.random()` is journaled, so a replay takes the same branch."""
    a = await ctx.step("a", _add, 1, 1)
    if ctx.random() < 0.5:
        return int(await ctx.step("heads", _add, a, 1))
    return int(await ctx.step("tails", _add, a, 2))


# -- a counter bumped by two tasks at once -----------------------------------------------

COUNTER = "counter:shared"


async def _current(store: EventStore) -> tuple[int, int]:
    events = await store.read_stream(COUNTER)
    return (events[-1].data["value"] if events else 0), len(events)


async def _bump_blindly(store: EventStore, who: str) -> int:
    value, _ = await _current(store)
    await store.append(COUNTER, [NewEvent("Counted", {"value": value + 1, "by": who})])
    return value + 1


async def _bump_guarded(store: EventStore, who: str) -> int:
    while True:
        value, version = await _current(store)
        try:
            await store.append(
                COUNTER,
                [NewEvent("Counted", {"value": value + 1, "by": who})],
                expected_version=version,
            )
        except ConcurrencyError:
            continue
        return value + 1


#: Steps that touch the store directly retry through an outage, as such steps should.
RETRY = RetryPolicy(max_attempts=8, initial_interval=0.1, max_interval=2.0)


async def _bump_twice(ctx: phalanx.WorkflowContext, bump: Any) -> list[int]:
    store = lowlevel.store(ctx)
    # A TaskGroup, not asyncio.gather: a failed bump must not leave the other running.
    async with asyncio.TaskGroup() as group:
        first = group.create_task(ctx.step("bump a", bump, store, "a", retry=RETRY))
        second = group.create_task(ctx.step("bump b", bump, store, "b", retry=RETRY))
    return [first.result(), second.result()]


@phalanx.workflow
async def unguarded_counter(ctx: phalanx.WorkflowContext) -> list[int]:
    """BUG: read-then-append without an expected version loses concurrent updates."""
    return await _bump_twice(ctx, _bump_blindly)


@phalanx.workflow
async def guarded_counter(ctx: phalanx.WorkflowContext) -> list[int]:
    """Correct: the append names the version it read, and retries on a conflict."""
    return await _bump_twice(ctx, _bump_guarded)


def _counts_every_bump(events: Sequence[Event]) -> str | None:
    counted = [e for e in events if e.stream_id == COUNTER]
    bumps = {e.data["by"] for e in counted}
    last = counted[-1].data["value"] if counted else 0
    if last < len(bumps):
        return f"{len(bumps)} tasks bumped the counter but it reads {last}: an update was lost"
    return None


invariant(unguarded_counter)(_counts_every_bump)
invariant(guarded_counter)(_counts_every_bump)


# -- a transfer whose debit is not idempotent ---------------------------------------------


async def _debit_blindly(store: EventStore, transfer: str, amount: int) -> str:
    await store.append(
        "account:alice", [NewEvent("Debited", {"transfer": transfer, "amount": amount})]
    )
    await store.append(
        "account:bob", [NewEvent("Credited", {"transfer": transfer, "amount": amount})]
    )
    return transfer


async def _debit_once(store: EventStore, transfer: str, amount: int) -> str:
    for account, kind in (("account:alice", "Debited"), ("account:bob", "Credited")):
        while True:
            events = await store.read_stream(account)
            if transfer in {e.data["transfer"] for e in events}:
                break  # the idempotency key: a re-run after a crash skips the write
            try:
                # The version read: a runner racing us (one fenced out a moment ago
                # still runs its step) cannot both find it missing and both write it.
                await store.append(
                    account,
                    [NewEvent(kind, {"transfer": transfer, "amount": amount})],
                    expected_version=len(events),
                )
            except ConcurrencyError:
                continue
            break
    return transfer


@phalanx.workflow
async def double_debit(ctx: phalanx.WorkflowContext, amount: int = 10) -> str:
    """BUG: a crash between the debit and the step's completion debits twice."""
    store = lowlevel.store(ctx)
    return str(await ctx.step("transfer", _debit_blindly, store, "t1", amount, retry=RETRY))


@phalanx.workflow
async def idempotent_debit(ctx: phalanx.WorkflowContext, amount: int = 10) -> str:
    """Correct: the step checks its transfer id before each write."""
    store = lowlevel.store(ctx)
    return str(await ctx.step("transfer", _debit_once, store, "t1", amount, retry=RETRY))


def _moves_money_once(events: Sequence[Event]) -> str | None:
    for account in ("account:alice", "account:bob"):
        moved = [e for e in events if e.stream_id == account]
        if len(moved) > 1:
            return f"{account} was written {len(moved)} times for one transfer"
    return None


invariant(double_debit)(_moves_money_once)
invariant(idempotent_debit)(_moves_money_once)
