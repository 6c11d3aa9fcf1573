"""Fencing at the receiver: an agent refuses instructions carrying a stale lease epoch.

Unit-level tests feed a real agent run hand-made instructions; the two-orchestrator
test runs the old and the new runner of one orchestration in one process (the old one
held up mid-step, as a pause would); the real SIGSTOP/SIGCONT version with separate
processes is in `test_split_brain_instructions.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn

import pytest

import phalanx
from phalanx.testing import FaultyStore
from tests.orchestration import workflows as wf
from tests.orchestration.helpers import holds, journal, of_type, reached

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


def instruction(
    instruction_id: str, epoch: int, payload: Any, orchestration: str = "orch"
) -> dict[str, Any]:
    """An instruction as an orchestrator stamps it."""
    return {
        "id": instruction_id,
        "orchestration": orchestration,
        "epoch": epoch,
        "sender": orchestration,
        "payload": payload,
    }


async def test_a_lower_epoch_is_rejected_with_an_event_and_a_higher_one_accepted(
    runtime: phalanx.Runtime,
) -> None:
    """Epochs 1, 2 accepted; 1 again rejected (highest 2); 3 accepted; duplicates and junk not."""
    sent = [
        instruction("a", 1, {"n": 1}),
        instruction("b", 2, {"n": 2}),
        instruction("c", 1, {"n": 3}),  # the old runner, after the new one spoke: refused
        instruction("b", 3, {"n": 2}),  # a redelivery of b: taken once
        instruction("x", 1, {"n": 5}, orchestration="other"),  # epochs are per orchestration
        {"payload": "no epoch"},
        instruction("d", 3, {"n": 4}),
        instruction("e", 2, "stop"),  # a stale stop is refused too
        instruction("f", 3, "stop"),
    ]
    async with asyncio.TaskGroup() as group:
        agent = group.create_task(runtime.run(wf.fenced_agent, run_id="agent"))
        await reached(runtime, "agent", "SignalWaiting")  # it exists: it can be signalled
        for data in sent:
            await runtime.signal("agent", "instruction", data)

    outcome = agent.result()
    assert outcome.ok and outcome.result == 4
    assert wf.ACTED == [
        ("a", 1, {"n": 1}),
        ("b", 2, {"n": 2}),
        ("x", 1, {"n": 5}),
        ("d", 3, {"n": 4}),
    ]
    events = await journal(runtime, "agent")
    rejected = of_type(events, "InstructionRejected")
    assert [(e.data.get("id"), e.data.get("epoch"), e.data.get("highest")) for e in rejected] == [
        ("c", 1, 2),
        (None, None, None),
        ("e", 2, 3),
    ]
    assert "taken over" in rejected[0].data["reason"]
    assert rejected[1].data["reason"].startswith("malformed")
    [duplicate] = of_type(events, "InstructionDuplicate")
    assert (duplicate.data["id"], duplicate.data["epoch"]) == ("b", 3)
    accepted = [(e.data["id"], e.data["highest"]) for e in of_type(events, "InstructionAccepted")]
    assert accepted == [("a", None), ("b", 1), ("x", None), ("d", 3), ("f", 3)]


async def test_the_highest_epoch_survives_the_agents_own_crash(runtime: phalanx.Runtime) -> None:
    """An agent resumed after a crash still refuses epoch 1 once it had accepted epoch 2."""
    wf.CRASH_AT["z"] = 1  # acting on z crashes the agent's process, once
    async with asyncio.TaskGroup() as group:
        first = group.create_task(capture_all(runtime.run(wf.fenced_agent, run_id="agent")))
        await reached(runtime, "agent", "SignalWaiting")
        await runtime.signal("agent", "instruction", instruction("a", 1, {"label": "a"}))
        await runtime.signal("agent", "instruction", instruction("b", 2, {"label": "b"}))
        await runtime.signal("agent", "instruction", instruction("z", 2, {"label": "z"}))
    assert holds(first.result(), wf.Crash)
    await runtime.signal("agent", "instruction", instruction("c", 1, {"label": "c"}))
    await runtime.signal("agent", "instruction", instruction("stop", 2, "stop"))

    outcome = await runtime.resume("agent", force=True)

    assert outcome.ok and outcome.result == 3
    # a and b replayed from the journal; z was in flight at the crash and ran again.
    assert wf.LEDGER == {"a": 1, "b": 1, "z": 2}
    [rejected] = of_type(await journal(runtime, "agent"), "InstructionRejected")
    assert (rejected.data["id"], rejected.data["epoch"], rejected.data["highest"]) == ("c", 1, 2)


async def capture_all(awaitable: Any) -> Any:
    """Await and return the result, or whatever was raised (a simulated crash included)."""
    try:
        return await awaitable
    except BaseException as exc:  # the simulated crash is a BaseException by design
        return exc


async def test_the_old_orchestrator_held_up_mid_step_is_refused_by_the_agent(
    runtime: phalanx.Runtime, open_rt: OpenRuntime
) -> None:
    """Old runner A paused inside a step; B takes over; A's late instruction is refused."""
    held_a = wf.GATES["task-1"] = asyncio.Event()  # A's first execution of task 1 waits here
    held_b = wf.GATES["task-2"] = asyncio.Event()  # and B's of task 2, until A has spoken
    inputs = {"agent": "agent", "tasks": 3}
    # A's lease outlives the test, so its keeper does not notice the takeover: like a
    # paused process, it learns of it only from its next write.
    async with open_rt(lease_ttl=60.0) as rt_a, open_rt() as rt_b, asyncio.TaskGroup() as group:
        agent = group.create_task(runtime.run(wf.fenced_agent, run_id="agent"))
        await reached(runtime, "agent", "SignalWaiting")
        old = group.create_task(
            capture(rt_a.run(wf.instructing_orchestrator, inputs, run_id="orch"))
        )
        # A is inside task 1's step, held at the gate.
        await reached(runtime, "orch", "StepStarted", count=2)
        new = group.create_task(rt_b.resume("orch", force=True))
        await reached(runtime, "agent", "StepCompleted", count=2)  # B's task 1, acted on
        assert wf.ACTED[-1] == ("orch:2", 2, {"task": 1})
        held_a.set()  # A wakes up and finishes its step: delivers task 1 at epoch 1
        await reached(runtime, "agent", "InstructionRejected")
        held_b.set()

    assert isinstance(old.result(), phalanx.FencedError), old.result()
    assert new.result().ok and new.result().result == 3
    assert agent.result().ok and agent.result().result == 3
    assert [(i, e) for i, e, _ in wf.ACTED] == [("orch:1", 1), ("orch:2", 2), ("orch:3", 2)]
    events = await journal(runtime, "agent")
    [rejected] = of_type(events, "InstructionRejected")
    assert rejected.data["id"] == "orch:2", "the same step's instruction, from the old runner"
    assert (rejected.data["epoch"], rejected.data["highest"]) == (1, 2)
    announcements = [
        e.data["epoch"]
        for e in of_type(events, "InstructionAccepted")
        if e.data["kind"] == "announcement"
    ]
    assert announcements == [1, 2]


async def capture(awaitable: Any) -> Any:
    """Await and return the result, or the exception raised."""
    try:
        return await awaitable
    except Exception as exc:
        return exc


def crash() -> NoReturn:
    """What the faulty store does instead of SIGKILL in these in-process tests."""
    raise wf.Crash("store")


async def test_a_journaled_send_lost_before_its_delivery_mark_is_redelivered_and_taken_once(
    runtime: phalanx.Runtime, url: str
) -> None:
    """A crash between delivery and its marker sends again on resume; the agent drops the copy."""
    async with asyncio.TaskGroup() as group:
        agent = group.create_task(runtime.run(wf.fenced_agent, run_id="agent"))
        await reached(runtime, "agent", "SignalWaiting")
        # The second StepStarted (pace 1) would also carry send 1's delivery marker: lost.
        faulty = FaultyStore(
            phalanx.store_from_url(url), kill_before_append=2, event_type="StepStarted", crash=crash
        )
        async with faulty:
            rt = phalanx.Runtime(faulty, lease_ttl=1.0, inbox_poll=0.02)
            with pytest.raises(BaseException) as info:
                await rt.run(
                    wf.journaled_orchestrator, {"agent": "agent", "tasks": 3}, run_id="orch"
                )
        assert holds(info.value, wf.Crash)
        sent = of_type(await journal(runtime, "orch"), "InstructionSent")
        delivered = of_type(await journal(runtime, "orch"), "InstructionDelivered")
        assert len(sent) == 2 and len(delivered) == 1
        outcome = await runtime.resume("orch", force=True)
        assert outcome.ok

    assert agent.result().ok and agent.result().result == 3
    assert [i for i, _, _ in wf.ACTED] == ["orch:1", "orch:3", "orch:5"]
    events = await journal(runtime, "agent")
    [duplicate] = of_type(events, "InstructionDuplicate")
    assert duplicate.data["id"] == "orch:3" and duplicate.data["epoch"] == 2
    assert of_type(events, "InstructionRejected") == []
