"""Deadlines: scopes, propagation down the tree (effective = earliest), expiry stops subtrees."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from phalanx import ActorStoppedError, DeadlineExceededError
from phalanx.actors import (
    Actor,
    ActorRef,
    Deadline,
    current_deadline,
    fail_after,
    move_on_after,
    open_actor_system,
)
from phalanx.testing import VirtualClock
from tests.actors.helpers import EventLog, Hang, Tree


async def test_fail_after_raises_when_the_body_overruns() -> None:
    """fail_after cancels the body at its deadline and raises DeadlineExceededError."""
    cleaned_up = False
    async with open_actor_system(clock=VirtualClock()):
        with pytest.raises(DeadlineExceededError) as caught:
            async with fail_after(5):
                try:
                    await asyncio.Event().wait()
                finally:
                    cleaned_up = True
    assert caught.value.timeout == 5
    assert isinstance(caught.value, TimeoutError)
    assert cleaned_up


async def test_move_on_after_stops_the_body_silently() -> None:
    """move_on_after ends the body at its deadline and says so in cancelled_caught."""
    async with open_actor_system(clock=VirtualClock()):
        async with move_on_after(5) as scope:
            await asyncio.Event().wait()
        assert scope.cancelled_caught
        async with move_on_after(5) as quick:
            await asyncio.sleep(0)
        assert not quick.cancelled_caught


async def test_scopes_work_on_the_real_clock_outside_a_system() -> None:
    """Outside an actor system the scopes use the system clock and the loop's timers."""
    with pytest.raises(DeadlineExceededError):
        async with fail_after(0.01):
            await asyncio.Event().wait()


async def test_a_nested_scope_never_extends_its_parent() -> None:
    """An inner scope's deadline is the earlier one; the outer scope owns the expiry."""
    clock = VirtualClock()
    async with open_actor_system(clock=clock):
        with pytest.raises(DeadlineExceededError) as caught:
            async with fail_after(2) as outer, fail_after(100) as inner:
                assert inner.deadline == outer.deadline
                assert current_deadline() == outer.deadline
                await asyncio.Event().wait()
        assert caught.value.timeout == 2
        assert not inner.cancelled_caught
        assert outer.cancelled_caught
        assert current_deadline() is None


async def test_an_inner_scope_with_an_earlier_deadline_fires_first() -> None:
    """A shorter inner scope expires by itself and leaves the outer one running."""
    async with open_actor_system(clock=VirtualClock()):
        async with fail_after(100) as outer:
            async with move_on_after(1) as inner:
                assert inner.deadline is not None and outer.deadline is not None
                assert inner.deadline < outer.deadline
                await asyncio.Event().wait()
            assert inner.cancelled_caught
        assert not outer.cancelled_caught


class Level(Actor):
    """Spawns the next level with the next deadline, and records its own deadline."""

    def __init__(self, deadlines: list[float | None], seen: dict[str, Any]) -> None:
        self.deadlines = deadlines
        self.seen = seen
        self.child: ActorRef | None = None

    async def on_start(self) -> None:
        self.seen[self.path] = current_deadline()
        if self.deadlines:
            clock = self.deadline.clock if self.deadline else None
            before = clock.monotonic() if clock else None
            self.child = await self.spawn(
                functools.partial(Level, self.deadlines[1:], self.seen),
                name=f"level{len(self.path.split('/'))}",
                deadline=self.deadlines[0],
            )
            self.seen[f"{self.child.path}:spawned_between"] = (
                before,
                clock.monotonic() if clock else None,
            )

    async def receive(self, message: Any) -> Any:
        return self.child


async def test_deadlines_propagate_three_levels_as_the_earliest() -> None:
    """Each level's effective deadline is min(own, parent's), three levels deep."""
    clock = VirtualClock()
    seen: dict[str, Any] = {}
    async with open_actor_system(clock=clock) as system:
        # Own deadlines: 10s, then 20s (later than the parent's), then 5s (earlier).
        top = await system.spawn(
            functools.partial(Level, [20, 5], seen), name="level1", deadline=10
        )
        middle = await top.ask("child", timeout=5)
        bottom = await middle.ask("child", timeout=5)
        assert top.deadline is not None and middle.deadline is not None
        assert bottom.deadline is not None
        # Level 2 asked for 20s but may not outlive level 1: it gets exactly level 1's.
        assert middle.deadline == top.deadline
        # Level 3 asked for 5s, earlier than what is left: its own, from its spawn.
        before, after = seen["/level1/level2/level3:spawned_between"]
        assert before + 5 <= bottom.deadline.at <= after + 5
        assert bottom.deadline < middle.deadline
        # What the code inside each actor sees is the same deadline.
        assert seen["/level1"] == top.deadline
        assert seen["/level1/level2"] == middle.deadline
        assert seen["/level1/level2/level3"] == bottom.deadline


async def test_a_grandparent_deadline_bounds_every_descendant() -> None:
    """Children asking for more time than the top allows all get the top's deadline."""
    seen: dict[str, Any] = {}
    async with open_actor_system(clock=VirtualClock()) as system:
        top = await system.spawn(
            functools.partial(Level, [None, 300], seen), name="level1", deadline=10
        )
        middle = await top.ask("child", timeout=5)
        bottom = await middle.ask("child", timeout=5)
        assert top.deadline == middle.deadline == bottom.deadline


async def test_an_actor_spawned_inside_a_scope_inherits_its_deadline() -> None:
    """The deadline in force where spawn is called also bounds the new actor."""
    async with open_actor_system(clock=VirtualClock()) as system:
        async with fail_after(30) as scope:
            ref = await system.spawn(Hang, name="bounded", deadline=3600)
        assert ref.deadline == scope.deadline
        free = await system.spawn(Hang, name="free")
        assert free.deadline is None


async def test_a_passed_deadline_stops_the_whole_subtree() -> None:
    """When an actor's deadline passes, it and every descendant are stopped, none orphaned."""
    log = EventLog()
    async with open_actor_system(clock=VirtualClock(), on_event=log) as system:
        top = await system.spawn(
            functools.partial(Tree, {"a": Hang, "b": functools.partial(Tree, {"c": Hang})}),
            name="top",
            deadline=10,
        )
        children = await top.ask("refs", timeout=5)
        await children["a"].tell("work forever")
        await log.wait_for("stopped", "/top")
        assert system.live_actor_count() == 0
        assert {e.path for e in log.find("stopped", reason="deadline")} == {
            "/top",
            "/top/a",
            "/top/b",
            "/top/b/c",
        }
        assert log.find("deadline_exceeded", "/top")
        with pytest.raises(ActorStoppedError) as caught:
            await top.ask("anything", timeout=5)
        assert caught.value.reason == "deadline"


async def test_deadline_objects_order_by_time_and_convert_between_clocks() -> None:
    """Deadlines compare by time; on() carries one to another clock by remaining time."""
    a, b = VirtualClock(start=100.0), VirtualClock(start=5_000.0)
    early = Deadline.after(5, a)
    late = Deadline.after(50, a)
    assert min(late, early) is early
    moved = early.on(b)
    assert moved.clock is b
    assert moved.remaining() == pytest.approx(early.remaining())
    a.advance(6)
    assert early.expired
    assert not late.expired
