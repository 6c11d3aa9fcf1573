"""The memory manager as a durable actor: supervised, resumed, stopped by mail.

`memory_manager` is a workflow that hosts a memory's manager for as long as its run
lives, so the manager's lifecycle is a durable actor's (`phalanx.actors`): a
`Supervisor` spawns and restarts it, `phalanx resume RUN --force` takes it over
with a larger epoch (the store then fences the old manager out), and its mailbox
takes control messages: `{"stop": true}` ends it (the run's result counts what it
decided), any message asked (`actors.ask`) is answered with its status. Writes do
not travel through the mailbox: they take the request stream (`_manager`), one
append each way, where a mailbox would journal every receipt and reply in the run.

Every (re)start takes the memory's lease over at once: a restarted or resumed
manager's predecessor is dead or must be fenced out. A manager fenced out by a
newer one stops serving, and its run fails with `FencedError`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..actors import mailbox, reply
from ..durable import WorkflowContext, lowlevel, workflow
from ._manager import MemoryManager, open_memory_manager


def _status(manager: MemoryManager) -> dict[str, Any]:
    state = manager.state
    return {
        "memory": manager.name,
        "epoch": manager.epoch,
        "position": state.position,
        "writes": state.writes,
        "conflicts": state.conflicts,
    }


@workflow
async def memory_manager(
    ctx: WorkflowContext, name: str, lease_ttl: float = 10.0
) -> dict[str, Any]:
    """Host memory `name`'s manager until told `{"stop": true}`; its status then.

    Example (a supervised manager)::

        async with Supervisor(ctx, "team") as sup:
            address = await sup.spawn("memory", Actor(memory_manager), name="plan")

    Raises:
        FencedError: a newer manager took the memory over while this one ran.
    """
    store = lowlevel.store(ctx)
    async with open_memory_manager(
        store, name, take_over=True, lease_ttl=lease_ttl, clock=ctx.clock
    ) as manager:

        async def control() -> dict[str, Any]:
            async for message in mailbox(ctx):
                if message.reply_to is not None:
                    await reply(ctx, message, _status(manager))
                if isinstance(message.body, dict) and message.body.get("stop"):
                    break
            return _status(manager)

        async with asyncio.TaskGroup() as group:
            fenced = group.create_task(manager.until_fenced())
            served = group.create_task(control())
            await asyncio.wait([fenced, served], return_when=asyncio.FIRST_COMPLETED)
            (fenced if served.done() else served).cancel()
        if served.cancelled():
            raise fenced.result()  # taken over: this run must not go on as the manager
        return served.result()
