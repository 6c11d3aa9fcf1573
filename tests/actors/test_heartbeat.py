"""Heartbeats: a busy actor that goes silent is reported as stalled, before its deadline."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from phalanx import ActorConfigError
from phalanx.actors import Actor, HeartbeatPolicy, open_actor_system
from phalanx.testing import VirtualClock
from tests.actors.helpers import EventLog, Hang


class SubAgent(Actor):
    """Works in steps of `step` seconds, heartbeating `beats` times, then hangs (or not)."""

    def __init__(self, clock: VirtualClock, beats: int, step: float, hang: bool) -> None:
        self.clock = clock
        self.beats = beats
        self.step = step
        self.hang = hang

    async def receive(self, message: Any) -> Any:
        for done in range(1, self.beats + 1):
            await self.clock.sleep(self.step)
            self.heartbeat(progress={"steps_done": done})
        if self.hang:
            await asyncio.Event().wait()  # the model call that never returns
        return "done"


async def test_a_silent_actor_is_reported_stalled_before_its_deadline() -> None:
    """The watchdog reports a stall (with the last progress) well before the deadline fires."""
    clock = VirtualClock()
    log = EventLog()
    async with open_actor_system(clock=clock, on_event=log) as system:
        ref = await system.spawn(
            functools.partial(SubAgent, clock, beats=3, step=0.5, hang=True),
            name="web_search",
            deadline=30,
            heartbeat=HeartbeatPolicy(timeout=2.0),
        )
        assert ref.deadline is not None
        deadline_at = clock.now() + ref.deadline.remaining()
        await ref.tell("search")
        stalled = await log.wait_for("stalled", "/web_search")
        assert ref.alive  # "report" only: the actor is still there, still busy
        assert stalled.progress == {"steps_done": 3}
        assert ref.progress == {"steps_done": 3}
        assert "no heartbeat" in stalled.reason
        await log.wait_for("stopped", "/web_search")
    kinds = [e.kind for e in log.events if e.path == "/web_search"]
    assert kinds.index("stalled") < kinds.index("deadline_exceeded")
    assert stalled.time < deadline_at
    assert kinds.count("stalled") == 1


async def test_an_actor_that_keeps_beating_never_stalls() -> None:
    """Long work is fine as long as heartbeats come more often than the timeout."""
    clock = VirtualClock()
    log = EventLog()
    async with open_actor_system(clock=clock, on_event=log) as system:
        ref = await system.spawn(
            functools.partial(SubAgent, clock, beats=20, step=0.5, hang=False),
            name="synthesis",
            heartbeat=HeartbeatPolicy(timeout=2.0),
        )
        assert await ref.ask("write", timeout=None) == "done"
    assert not log.find("stalled")


async def test_an_idle_actor_never_stalls() -> None:
    """Silence while waiting for mail is not a stall: only busy actors are watched."""
    clock = VirtualClock()
    log = EventLog()
    async with open_actor_system(clock=clock, on_event=log) as system:
        ref = await system.spawn(
            functools.partial(SubAgent, clock, beats=1, step=0.1, hang=False),
            name="idle",
            heartbeat=HeartbeatPolicy(timeout=1.0),
        )
        await ref.ask("once", timeout=None)
        await clock.sleep(100)
        await ref.ask("again", timeout=None)
    assert not log.find("stalled")


async def test_a_heartbeat_after_a_stall_reports_recovery() -> None:
    """An actor that comes back to life after a stall gets a recovered event."""
    clock = VirtualClock()
    log = EventLog()
    resume = asyncio.Event()

    class Slowpoke(Actor):
        async def receive(self, message: Any) -> Any:
            self.heartbeat(progress="thinking")
            await resume.wait()
            self.heartbeat(progress="answering")
            return "late answer"

    async with open_actor_system(clock=clock, on_event=log) as system:
        ref = await system.spawn(Slowpoke, name="slowpoke", heartbeat=HeartbeatPolicy(timeout=1.0))
        async with asyncio.TaskGroup() as tg:
            answer = tg.create_task(ref.ask("question", timeout=None))
            await log.wait_for("stalled", "/slowpoke")
            resume.set()
        assert answer.result() == "late answer"
        recovered = await log.wait_for("recovered", "/slowpoke")
        assert recovered.progress == "answering"


async def test_a_stalled_actor_can_be_stopped_by_policy() -> None:
    """on_stall="stop" stops the silent actor for good."""
    log = EventLog()
    async with open_actor_system(clock=VirtualClock(), on_event=log) as system:
        ref = await system.spawn(
            Hang, name="hang", heartbeat=HeartbeatPolicy(timeout=1.0, on_stall="stop")
        )
        await ref.tell("work")
        await log.wait_for("stopped", "/hang")
        assert ref.stop_reason == "stopped"


async def test_heartbeats_work_on_the_real_clock() -> None:
    """With the system clock, a short heartbeat timeout is detected by the loop's timers."""
    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        ref = await system.spawn(Hang, name="hang", heartbeat=HeartbeatPolicy(timeout=0.02))
        await ref.tell("work")
        await log.wait_for("stalled", "/hang")


def test_a_heartbeat_policy_rejects_a_non_positive_timeout() -> None:
    """HeartbeatPolicy(timeout=0) is a configuration error that names the setting."""
    with pytest.raises(ActorConfigError, match=r"HeartbeatPolicy\.timeout"):
        HeartbeatPolicy(timeout=0)


async def test_a_stalled_message_that_finishes_reports_recovery() -> None:
    """With on_stall="report", a stalled actor that finally answers is recovered."""
    clock = VirtualClock()
    log = EventLog()
    release = asyncio.Event()

    class Late(Actor):
        async def receive(self, message: Any) -> Any:
            await release.wait()
            return "finally"

    async with open_actor_system(clock=clock, on_event=log) as system:
        ref = await system.spawn(Late, name="late", heartbeat=HeartbeatPolicy(timeout=1.0))
        async with asyncio.TaskGroup() as tg:
            answer = tg.create_task(ref.ask("question", timeout=None))
            await log.wait_for("stalled", "/late")
            release.set()
        assert answer.result() == "finally"
        assert log.kinds("/late")[-2:] == ["stalled", "recovered"]
