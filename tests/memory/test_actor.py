"""The memory manager as a durable actor: serving, asked, stopped by mail, taken over."""

from __future__ import annotations

import asyncio

import pytest

import phalanx
from phalanx.actors import post
from phalanx.durable.lowlevel import run_stream
from phalanx.memory import Memory, memory_manager, memory_stream
from tests.conftest import OpenRuntime


async def serving(store: phalanx.EventStore, name: str) -> None:
    """Wait until some manager holds the memory's lease."""
    for _ in range(400):
        if await store.get_lease(memory_stream(name)) is not None:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("no manager started")


async def test_an_actor_hosted_manager_serves_writes_and_stops_by_mail(
    runtime: phalanx.Runtime,
) -> None:
    """Writes through the request stream are answered; {"stop": true} ends the run."""
    run = asyncio.ensure_future(runtime.run(memory_manager, {"name": "plan"}, run_id="mgr"))
    try:
        await serving(runtime.store, "plan")
        plan = Memory(runtime.store, "plan", agent="a", timeout=30).linearizable()
        await plan.cas("plan", ["x"], based_on=0)
        with pytest.raises(phalanx.MemoryConflictError):
            await plan.cas("plan", ["y"], based_on=0)
        await post(runtime.store, "mgr", {"stop": True}, message_id="stop-1")
        outcome = await asyncio.wait_for(run, 30)
    finally:
        run.cancel()
    assert outcome.ok, outcome.error
    assert outcome.result["writes"] == 1 and outcome.result["conflicts"] == 1
    assert outcome.result["position"] == 2


async def test_a_resumed_manager_run_takes_over_and_fences_the_old_one(
    runtime: phalanx.Runtime, open_rt: OpenRuntime
) -> None:
    """`resume --force` of the manager's run: a larger epoch; the old run is fenced out."""
    old = asyncio.ensure_future(runtime.run(memory_manager, {"name": "plan"}, run_id="mgr"))
    try:
        await serving(runtime.store, "plan")
        plan = Memory(runtime.store, "plan", timeout=30).linearizable()
        await plan.cas("plan", 1, based_on=0)
        first = await runtime.store.get_lease(memory_stream("plan"))
        async with open_rt() as other:
            new = asyncio.ensure_future(other.resume("mgr", force=True))
            try:
                with pytest.raises(phalanx.FencedError):
                    await asyncio.wait_for(asyncio.shield(old), 30)  # the old runner
                await plan.cas("plan", 2, based_on=1)  # answered by the new manager
                second = await other.store.get_lease(memory_stream("plan"))
                await post(other.store, "mgr", {"stop": True}, message_id="stop-2")
                new_outcome = await asyncio.wait_for(new, 30)
            finally:
                new.cancel()
    finally:
        old.cancel()
    assert first is not None and second is not None and second.epoch > first.epoch
    assert new_outcome.ok, new_outcome.error
    assert new_outcome.result["epoch"] == second.epoch
    events = await runtime.store.read_stream(memory_stream("plan"))
    assert [e.epoch for e in events] == [first.epoch, second.epoch]
    assert await runtime.store.stream_version(run_stream("mgr")) > 0
