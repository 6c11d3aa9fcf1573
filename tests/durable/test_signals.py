"""Signals: data sent to a run is delivered to one wait, across crashes, or times out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

import phalanx
from tests.durable import workflows as wf
from tests.durable.helpers import crashes, journal, of_type, reached, status

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


async def test_a_signal_from_another_runtime_is_received(
    runtime: phalanx.Runtime, open_rt: OpenRuntime
) -> None:
    """A run waiting for a signal is "waiting", and receives data another runtime sends."""
    async with open_rt() as sender, asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.approval, run_id="r"))
        await reached(runtime, "r", "SignalWaiting")
        assert await status(runtime, "r") == "waiting"
        assert await status(sender, "r") == "waiting"
        await sender.signal("r", "approve", {"by": "ada", "ok": True})
    outcome = task.result()
    assert outcome.ok and outcome.result == {"by": "ada", "ok": True}
    assert await status(runtime, "r") == "completed"
    [received] = of_type(await journal(runtime, "r"), "SignalReceived")
    assert received.data["data"] == {"by": "ada", "ok": True}


async def test_signals_sent_before_the_waits_are_delivered_in_order(
    runtime: phalanx.Runtime,
) -> None:
    """Signals that arrive before the run waits for them are kept and delivered, oldest first."""
    gate = wf.gate("gate")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.two_messages, {"gated": True}, run_id="r"))
        await gate.entered.wait()
        await runtime.signal("r", "msg", "one")
        await runtime.signal("r", "msg", "two")
        await runtime.signal("r", "other", "not for msg")
        gate.release.set()
    assert task.result().result == ["one", "two"]


async def test_each_signal_is_delivered_once(runtime: phalanx.Runtime) -> None:
    """One signal satisfies one wait: a second wait for the same name times out."""
    gate = wf.gate("gate")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(
            runtime.run(wf.two_messages, {"gated": True, "timeout": 0.1}, run_id="r")
        )
        await gate.entered.wait()
        await runtime.signal("r", "msg", "only")
        gate.release.set()
    assert task.result().result == ["only", "timed out"]
    events = await journal(runtime, "r")
    assert len(of_type(events, "SignalReceived")) == 1
    assert len(of_type(events, "SignalTimedOut")) == 1


async def test_two_waits_need_two_signals(runtime: phalanx.Runtime) -> None:
    """After the first signal is received the run waits again until a second one comes."""
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.two_messages, run_id="r"))
        await reached(runtime, "r", "SignalWaiting")
        await runtime.signal("r", "msg", 1)
        await reached(runtime, "r", "SignalWaiting", count=2)
        assert await status(runtime, "r") == "waiting"
        assert not task.done()
        await runtime.signal("r", "msg", 2)
    assert task.result().result == [1, 2]


async def test_a_wait_times_out_with_signal_timeout_error(runtime: phalanx.Runtime) -> None:
    """No signal within the timeout raises SignalTimeoutError and journals SignalTimedOut."""
    outcome = await runtime.run(wf.approval, {"timeout": 0.05}, run_id="r")

    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["type"] == "phalanx._errors.SignalTimeoutError"
    assert "'approve'" in outcome.error["message"]
    events = await journal(runtime, "r")
    assert [e.type for e in events if e.data.get("name") == "approve"] == [
        "SignalWaiting",
        "SignalTimedOut",
    ]
    assert wf.CALLS["act"] == 0


async def test_a_signal_sent_while_the_run_is_down_is_received_on_resume(
    runtime: phalanx.Runtime,
) -> None:
    """A run that crashed while waiting receives, once resumed, the signal sent meanwhile."""
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.approval, run_id="r"))
        await reached(runtime, "r", "SignalWaiting")
        task.cancel()
    await runtime.signal("r", "approve", "sent while down")

    outcome = await runtime.resume("r", force=True)

    assert outcome.ok and outcome.result == "sent while down"
    events = await journal(runtime, "r")
    assert len(of_type(events, "SignalWaiting")) == 1, "the wait was not started anew"


async def test_a_signal_received_before_a_crash_is_not_delivered_again(
    runtime: phalanx.Runtime,
) -> None:
    """After resume, a signal consumed before the crash does not satisfy a later wait."""
    wf.CRASH_AT.add("between")
    gate = wf.gate("gate")
    async with asyncio.TaskGroup() as group:
        group.create_task(
            crashes(runtime.run(wf.two_messages, {"gated": True, "timeout": 0.1}, run_id="r"))
        )
        await gate.entered.wait()
        await runtime.signal("r", "msg", "first")
        gate.release.set()

    outcome = await runtime.resume("r", force=True)

    assert outcome.result == ["first", "timed out"]
    assert isinstance(wf.CAUGHT[0], phalanx.SignalTimeoutError)
    assert isinstance(wf.CAUGHT[0], TimeoutError)


async def test_signalling_an_unknown_run_is_an_error(runtime: phalanx.Runtime) -> None:
    """runtime.signal to a run that does not exist raises UnknownRunError."""
    with pytest.raises(phalanx.UnknownRunError):
        await runtime.signal("nope", "approve", 1)


async def test_a_signal_timeout_counts_from_the_first_wait_across_a_crash(
    runtime: phalanx.Runtime,
) -> None:
    """A resumed wait keeps its original deadline: it does not start a fresh timeout."""
    timeout = 0.3
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.approval, {"timeout": timeout}, run_id="r"))
        waiting = await reached(runtime, "r", "SignalWaiting")
        task.cancel()
    deadline = waiting.data["deadline"]
    assert deadline == pytest.approx(waiting.recorded_at + timeout, abs=0.05)

    outcome = await runtime.resume("r", force=True)

    assert outcome.status == "failed"
    [timed_out] = of_type(await journal(runtime, "r"), "SignalTimedOut")
    assert deadline <= timed_out.recorded_at < deadline + timeout / 2


async def test_a_run_waiting_for_a_signal_can_be_cancelled(runtime: phalanx.Runtime) -> None:
    """runtime.cancel reaches a run blocked in wait_for_signal; it ends cancelled."""
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.approval, run_id="r"))
        await reached(runtime, "r", "SignalWaiting")
        assert await runtime.cancel("r") is True
    assert task.result().status == "cancelled"
    assert await status(runtime, "r") == "cancelled"
    assert wf.CALLS["act"] == 0
