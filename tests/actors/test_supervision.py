"""Supervision: which siblings each strategy restarts, restart types, intensity, escalation."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from phalanx import ActorSpawnError, ActorStoppedError, SupervisorEscalationError
from phalanx.actors import (
    Actor,
    ActorRef,
    ActorSystem,
    HeartbeatPolicy,
    Strategy,
    SupervisionPolicy,
    open_actor_system,
)
from phalanx.testing import VirtualClock
from tests.actors.helpers import EventLog, Hang, Tree, Worker, settle

THREE = {"a": Worker, "b": Worker, "c": Worker}


async def spawn_family(
    system: ActorSystem, strategy: Strategy, **policy: Any
) -> dict[str, ActorRef]:
    parent = await system.spawn(
        functools.partial(Tree, THREE),
        name="parent",
        supervision=SupervisionPolicy(strategy=strategy, **policy),
    )
    children: dict[str, ActorRef] = await parent.ask("children", timeout=5)
    for child in children.values():
        assert await child.ask("count", timeout=5) == 1
    return children


async def fail_b_and_wait(
    log: EventLog, children: dict[str, ActorRef], restarted: list[str]
) -> None:
    with pytest.raises(ValueError):
        await children["b"].ask("fail", timeout=5)
    for name in restarted:
        await log.wait_for("started", f"/parent/{name}", incarnation=2)


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        ("one_for_one", ["b"]),
        ("one_for_all", ["a", "b", "c"]),
        ("rest_for_one", ["b", "c"]),
    ],
)
async def test_each_strategy_restarts_the_right_siblings(
    strategy: Strategy, restarted: list[str]
) -> None:
    """one_for_one restarts the failed child, one_for_all all, rest_for_one it and later ones."""
    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        children = await spawn_family(system, strategy)
        await fail_b_and_wait(log, children, restarted)
        await settle()
        for name, child in children.items():
            expected = 2 if name in restarted else 1
            assert child.incarnation == expected, name
            # A restarted child has fresh state; the others kept theirs.
            assert await child.ask("count", timeout=5) == (1 if name in restarted else 2)
    assert sorted(e.path for e in log.find("restarted")) == [f"/parent/{n}" for n in restarted]
    for event in log.find("restarted"):
        assert event.reason == f"{strategy}: /parent/b failed"


async def test_one_for_all_restart_stops_the_siblings_before_restarting_them() -> None:
    """Siblings restarted by one_for_all run on_stop (their incarnation ends cleanly) first."""
    stops: list[str] = []

    class Tidy(Worker):
        async def on_stop(self) -> None:
            stops.append(f"{self.name}@{self.incarnation}")

    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        parent = await system.spawn(
            functools.partial(Tree, {"a": Tidy, "b": Tidy, "c": Tidy}),
            name="parent",
            supervision=SupervisionPolicy(strategy="one_for_all"),
        )
        children = await parent.ask("children", timeout=5)
        await fail_b_and_wait(log, children, ["a", "b", "c"])
        assert sorted(stops) == ["a@1", "b@1", "c@1"]
        assert stops.index("c@1") < stops.index("a@1")  # reverse start order


async def test_a_restarted_actor_keeps_its_ref_and_mailbox() -> None:
    """Messages queued behind the failing one are processed by the new incarnation."""
    async with open_actor_system() as system:
        worker = await system.spawn(Worker, name="w")
        await worker.tell("fail")
        await worker.tell("after")
        assert await worker.ask("after", timeout=5) == 2
        assert worker.incarnation == 2
        assert worker.alive


async def test_restart_intensity_escalates_to_the_parent() -> None:
    """More than max_restarts failures in the window stop the children and fail the parent."""
    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        parent = await system.spawn(
            functools.partial(Tree, {"a": Worker, "b": Worker}),
            name="parent",
            supervision=SupervisionPolicy(max_restarts=2, within=60),
        )
        children = await parent.ask("children", timeout=5)
        for incarnation in (1, 2):
            with pytest.raises(ValueError):
                await children["b"].ask("fail", timeout=5)
            await log.wait_for("started", "/parent/b", incarnation=incarnation + 1)
        with pytest.raises(ValueError):
            await children["b"].ask("fail", timeout=5)
        escalated = await log.wait_for("escalated", "/parent")
        assert escalated.error_type == "ValueError"
        failed = await log.wait_for("failed", "/parent", incarnation=1)
        assert failed.error_type == "SupervisorEscalationError"
        # The root restarted the parent (its own policy), which spawned new children.
        await log.wait_for("started", "/parent", incarnation=2)
        assert not children["a"].alive
        assert children["a"].stop_reason == "escalated"
        fresh = await parent.ask("children", timeout=5)
        assert fresh["a"] is not children["a"]
        assert await fresh["a"].ask("count", timeout=5) == 1


async def test_failures_spread_beyond_the_window_do_not_escalate() -> None:
    """Restart intensity is measured on the clock: old restarts fall out of the window."""
    clock = VirtualClock()
    log = EventLog()
    async with open_actor_system(
        clock=clock, on_event=log, supervision=SupervisionPolicy(max_restarts=1, within=10)
    ) as system:
        worker = await system.spawn(Worker, name="w")
        for incarnation in (1, 2, 3):
            with pytest.raises(ValueError):
                await worker.ask("fail", timeout=5)
            await log.wait_for("started", "/w", incarnation=incarnation + 1)
            clock.advance(11)
        assert not log.find("escalated")
        assert worker.incarnation == 4


async def test_escalation_at_the_root_cancels_the_body_and_raises() -> None:
    """When the root gives up, the block's body is cancelled and the block raises."""
    before = asyncio.all_tasks()
    log = EventLog()
    with pytest.raises(SupervisorEscalationError) as caught:
        async with open_actor_system(
            on_event=log, supervision=SupervisionPolicy(max_restarts=1, within=60)
        ) as system:
            worker = await system.spawn(Worker, name="w")
            await system.spawn(Hang, name="bystander")
            await worker.tell("fail")
            await worker.tell("fail")
            await asyncio.Event().wait()  # only the escalation can end this
    assert caught.value.supervisor == "/"
    assert caught.value.child == "/w"
    assert caught.value.error_type == "ValueError"
    assert "max_restarts" in str(caught.value)
    assert system.live_actor_count() == 0
    assert asyncio.all_tasks() == before
    assert log.find("stopped", "/bystander", reason="escalated")


async def test_restart_types_decide_who_comes_back() -> None:
    """temporary never restarts, transient only after failing, permanent even after stopping."""

    class Quitter(Worker):
        async def receive(self, message: Any) -> Any:
            if message == "quit":
                self.stop()
                return "bye"
            return await super().receive(message)

    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        temporary = await system.spawn(Worker, name="temporary", restart="temporary")
        transient = await system.spawn(Quitter, name="transient", restart="transient")
        permanent = await system.spawn(Quitter, name="permanent", restart="permanent")
        with pytest.raises(ValueError):
            await temporary.ask("fail", timeout=5)
        await log.wait_for("stopped", "/temporary")
        assert temporary.stop_reason == "failed"

        assert await transient.ask("quit", timeout=5) == "bye"
        await log.wait_for("stopped", "/transient")
        assert transient.stop_reason == "stopped"

        assert await permanent.ask("quit", timeout=5) == "bye"
        await log.wait_for("started", "/permanent", incarnation=2)
        assert permanent.alive


async def test_a_failing_first_on_start_fails_the_spawn() -> None:
    """If on_start raises the first time, spawn raises it and the actor is not restarted."""

    class Broken(Actor):
        async def on_start(self) -> None:
            raise RuntimeError("no model configured")

    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        with pytest.raises(RuntimeError, match="no model configured"):
            await system.spawn(Broken, name="broken")
        assert system.live_actor_count() == 0
        assert log.kinds("/broken") == ["failed", "stopped"]
        # The name is free again.
        await system.spawn(Worker, name="broken")


async def test_a_factory_that_makes_no_actor_is_a_spawn_error() -> None:
    """A factory returning something else than an Actor fails the spawn with a clear error."""
    async with open_actor_system() as system:
        with pytest.raises(ActorSpawnError, match="not an Actor"):
            await system.spawn(lambda: object(), name="odd")  # type: ignore[arg-type,return-value]  # on purpose


async def test_a_stalled_actor_can_be_restarted_by_policy() -> None:
    """on_stall="restart" fails the silent actor; its supervisor restarts it."""
    log = EventLog()
    async with open_actor_system(clock=VirtualClock(), on_event=log) as system:
        ref = await system.spawn(
            Hang, name="hang", heartbeat=HeartbeatPolicy(timeout=1.0, on_stall="restart")
        )
        await ref.tell("work")
        failed = await log.wait_for("failed", "/hang")
        assert failed.error_type == "ActorStalledError"
        await log.wait_for("started", "/hang", incarnation=2)
        await ref.tell("work again")
        await log.wait_for("stalled", "/hang", incarnation=2)
    # The stall died with its incarnation: the next one starts clean, not "recovered".
    assert not log.find("recovered")


async def test_an_ask_interrupted_by_a_sibling_restart_fails_with_the_reason() -> None:
    """A message cut short by a one_for_all restart fails its asker with ActorStoppedError."""
    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        parent = await system.spawn(
            functools.partial(Tree, {"slow": Hang, "b": Worker}),
            name="parent",
            supervision=SupervisionPolicy(strategy="one_for_all"),
        )
        children = await parent.ask("children", timeout=5)
        async with asyncio.TaskGroup() as tg:
            pending = tg.create_task(_caught(children["slow"].ask("work", timeout=None)))
            await settle()
            with pytest.raises(ValueError):
                await children["b"].ask("fail", timeout=5)
        error = pending.result()
        assert isinstance(error, ActorStoppedError)
        assert error.reason == "restarting"


async def _caught(awaitable: Any) -> Any:
    try:
        return await awaitable
    except Exception as error:
        return error
