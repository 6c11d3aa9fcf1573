"""Durable actors: a supervised counter crashes, restarts as a new run, and loses no mail.

Run it from the repository root:  .venv/bin/python examples/actors.py
"""

from __future__ import annotations

import asyncio
import tempfile

import phalanx
from phalanx import Actor, Mailbox, Supervisor, mailbox, tell


def add(total: int, n: int) -> int:
    return total + n


@phalanx.workflow
async def counter(ctx: phalanx.WorkflowContext) -> int:
    total = 0
    async for message in mailbox(ctx):  # one message at a time, each journaled once
        if message.body == "crash":
            raise RuntimeError("cannot count that")  # the supervisor starts a new run
        total = await ctx.step("add", add, total, message.body)
    return total


@phalanx.workflow
async def team(ctx: phalanx.WorkflowContext) -> str:
    async with Supervisor(ctx, "team", strategy="one_for_one", max_restarts=3, within=60) as sup:
        address = await sup.spawn("counter", Actor(counter, mailbox=Mailbox(capacity=100)))
        for body in (1, 2, "crash", 3, 4):
            await tell(ctx, address, body, deadline=10)  # waits while the mailbox is full
    return address  # leaving the scope stops the counter once its mailbox is drained


async def main() -> None:
    store = f"sqlite:///{tempfile.mkdtemp()}/actors.db"
    async with phalanx.open_runtime(store) as runtime:
        outcome = await runtime.run(team, run_id="team")
        for run in await runtime.runs():
            if run.run_id.startswith(f"{outcome.result}#"):
                history = await runtime.history(run.run_id)
                print(run.run_id, history.status, history.result)


if __name__ == "__main__":
    asyncio.run(main())
