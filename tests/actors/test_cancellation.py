"""Cancellation: stopping cascades to every descendant, and no task or actor is left over."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from phalanx import ActorDeadlockError
from phalanx.actors import Actor, ActorSystem, open_actor_system
from tests.actors.helpers import EventLog, Hang, Tree, settle

STOPPED: list[str] = []


class Tracked(Tree):
    """A Tree node that records its on_stop and works forever on any message."""

    async def on_stop(self) -> None:
        STOPPED.append(self.path)

    async def receive(self, message: Any) -> Any:
        if message == "refs":
            return dict(self.refs)
        await asyncio.Event().wait()


def tracked(children: dict[str, Any]) -> Any:
    return functools.partial(Tracked, children)


# Three levels, fan-out 3 then 2: 1 + 3 + 6 = 10 actors under the root.
TREE = tracked(
    {name: tracked({f"{name}{i}": tracked({}) for i in range(2)}) for name in ("x", "y", "z")}
)


async def build(system: ActorSystem) -> dict[str, Any]:
    """Spawn TREE, set every node working forever; return the top's children by name."""
    top = await system.spawn(TREE, name="top")
    refs: dict[str, Any] = await top.ask("refs", timeout=5)
    for child in refs.values():
        for grandchild in (await child.ask("refs", timeout=5)).values():
            await grandchild.tell("work forever")
        await child.tell("work forever")
    await top.tell("work forever")
    await settle()
    return refs


async def test_cancelling_the_host_stops_every_descendant_and_leaves_no_task() -> None:
    """Cancelling the code that opened the system cascades through the whole tree."""
    STOPPED.clear()
    before = asyncio.all_tasks()
    seen: dict[str, Any] = {}
    ready = asyncio.Event()

    async def host() -> None:
        async with open_actor_system() as system:
            seen["system"] = system
            await build(system)
            seen["live_inside"] = system.live_actor_count()
            seen["tasks_inside"] = len(asyncio.all_tasks() - before)
            ready.set()
            await asyncio.Event().wait()

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(host())
        await ready.wait()
        task.cancel()
    assert task.cancelled()
    assert seen["live_inside"] == 10
    # One task per actor, one supervisor per parent (root, top, x, y, z), the host.
    assert seen["tasks_inside"] == 10 + 5 + 1
    assert seen["system"].live_actor_count() == 0
    assert asyncio.all_tasks() == before
    assert len(STOPPED) == 10
    # Children are stopped (on_stop done) before their parent's on_stop runs.
    assert STOPPED.index("/top/x/x0") < STOPPED.index("/top/x") < STOPPED.index("/top")


async def test_leaving_the_block_normally_stops_everything() -> None:
    """A normal exit from the block stops all actors and waits for all their tasks."""
    STOPPED.clear()
    before = asyncio.all_tasks()
    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        await build(system)
    assert system.live_actor_count() == 0
    assert asyncio.all_tasks() == before
    assert len(STOPPED) == 10
    assert len(log.find("stopped", reason="shutdown")) == 10


async def test_an_exception_in_the_body_stops_everything_and_propagates() -> None:
    """The body's own exception propagates unchanged after every actor has stopped."""
    before = asyncio.all_tasks()
    with pytest.raises(KeyError):
        async with open_actor_system() as system:
            await build(system)
            raise KeyError("boom")
    assert system.live_actor_count() == 0
    assert asyncio.all_tasks() == before


async def test_stopping_a_middle_node_stops_its_subtree_only() -> None:
    """ref.stop() on a parent stops its descendants (no orphans) and spares its siblings."""
    STOPPED.clear()
    async with open_actor_system() as system:
        refs = await build(system)
        x = refs["x"]
        await x.stop()
        assert not x.alive
        assert sorted(STOPPED) == ["/top/x", "/top/x/x0", "/top/x/x1"]
        assert refs["y"].alive
        assert system.live_actor_count() == 7
        await x.stop()  # idempotent
        assert x.stop_reason == "stopped"


async def test_concurrent_stops_are_idempotent() -> None:
    """Several concurrent stop() calls all return once the actor is gone."""
    async with open_actor_system() as system:
        ref = await system.spawn(Hang, name="h")
        await ref.tell("work")
        await settle()
        async with asyncio.TaskGroup() as tg:
            for _ in range(3):
                tg.create_task(ref.stop())
        assert not ref.alive
        assert system.live_actor_count() == 0


async def test_a_stop_waiter_cancelled_midway_does_not_undo_the_stop() -> None:
    """If the caller of stop() is cancelled, the actor still stops completely."""

    class SlowStop(Actor):
        async def receive(self, message: Any) -> Any:
            return message

        async def on_stop(self) -> None:
            for _ in range(5):
                await asyncio.sleep(0)

    async with open_actor_system() as system:
        ref = await system.spawn(SlowStop, name="slow")
        async with asyncio.TaskGroup() as tg:
            stopper = tg.create_task(ref.stop())
            await asyncio.sleep(0)
            stopper.cancel()
        await ref.stop()
        assert not ref.alive


async def test_the_system_cannot_be_stopped_from_inside_an_actor() -> None:
    """system.stop() inside an actor raises ActorDeadlockError instead of hanging."""

    class Stopper(Actor):
        def __init__(self, system: ActorSystem) -> None:
            self.system = system

        async def receive(self, message: Any) -> Any:
            await self.system.stop()

    async with open_actor_system() as system:
        ref = await system.spawn(functools.partial(Stopper, system), name="stopper")
        with pytest.raises(ActorDeadlockError):
            await ref.ask("stop everything", timeout=5)
        await system.stop()
        await system.stop()  # idempotent
        assert system.live_actor_count() == 0


async def test_a_receive_that_swallows_cancellation_is_still_stopped() -> None:
    """An actor that catches CancelledError is stopped after its message anyway."""

    class Stubborn(Actor):
        async def receive(self, message: Any) -> Any:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return "ignored"

    async with open_actor_system() as system:
        ref = await system.spawn(Stubborn, name="stubborn")
        await ref.tell("work")
        await settle()
        await ref.stop()
        assert not ref.alive


async def test_an_actor_can_stop_itself_through_its_own_ref() -> None:
    """await self.ref.stop() inside receive stops the actor (no deadlock) for good."""

    class Quitter(Actor):
        async def receive(self, message: Any) -> Any:
            await self.ref.stop()
            return "not reached"

    async with open_actor_system() as system:
        ref = await system.spawn(Quitter, name="quitter")
        await ref.tell("quit")
        await ref.stop()
        assert ref.stop_reason == "stopped"
        assert system.live_actor_count() == 0
