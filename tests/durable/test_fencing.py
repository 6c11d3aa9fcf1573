"""Fencing: a runner whose run was taken over writes nothing more and says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import phalanx
from tests.durable import workflows as wf
from tests.durable.helpers import capture, journal, of_type, status

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


async def test_a_forced_takeover_fences_out_the_old_runner(open_rt: OpenRuntime) -> None:
    """B's forced resume fences A: A's next write is refused, A raises FencedError, B finishes."""
    gate = wf.gate("two")  # holds A's call; B's call (the second) passes straight through
    # A renews its lease rarely, so its journal write, not its lease keeper, meets the fence.
    async with open_rt(lease_ttl=30) as a, open_rt() as b:
        assert a.owner != b.owner
        async with asyncio.TaskGroup() as group:
            a_task = group.create_task(capture(a.run(wf.paused_pipeline, run_id="r")))
            await gate.entered.wait()

            b_outcome = await b.resume("r", force=True)
            assert b_outcome.ok and b_outcome.result == [1, "two", 3]

            gate.release.set()  # A's step returns; A tries to journal it
        a_error = a_task.result()
        events = await journal(b, "r")
        final_status = await status(a, "r")

    assert isinstance(a_error, phalanx.FencedError), a_error
    assert a_error.epoch == 1 and a_error.current_epoch == 2
    assert "another runner owns it" in str(a_error)
    takeover = next(e.seq for e in events if e.epoch == 2)
    assert all(e.epoch == 1 for e in events[: takeover - 1])
    assert all(e.epoch == 2 for e in events[takeover - 1 :]), "A wrote nothing after B took over"
    for name in ("one", "two", "three"):
        assert len(of_type(events, "StepCompleted", name)) == 1, name
    assert len(of_type(events, "RunCompleted")) == 1
    assert final_status == "completed"
    assert wf.CALLS == {"one": 1, "pause:two": 2, "three": 1}


async def test_a_runner_whose_lease_is_taken_stops_at_its_next_renewal(
    open_rt: OpenRuntime,
) -> None:
    """A runner blocked in a step notices the takeover at its next renewal and is fenced."""
    gate = wf.gate("two", hold=2)  # both A's and B's calls block
    async with open_rt(lease_ttl=0.15) as a, open_rt() as b:
        async with asyncio.TaskGroup() as group:
            a_task = group.create_task(capture(a.run(wf.paused_pipeline, run_id="r")))
            await gate.entered.wait()
            b_task = group.create_task(b.resume("r", force=True))
            a_error = await a_task  # fenced by its keeper while still blocked in the step
            gate.release.set()
        b_outcome = b_task.result()
        events = await journal(b, "r")

    assert isinstance(a_error, phalanx.FencedError), a_error
    assert b_outcome.ok and b_outcome.result == [1, "two", 3]
    takeover = next(e.seq for e in events if e.epoch == 2)
    assert all(e.epoch == 2 for e in events[takeover - 1 :]), "A wrote nothing after B took over"
    [two] = of_type(events, "StepCompleted", "two")
    assert two.epoch == 2
    assert wf.CALLS == {"one": 1, "pause:two": 2, "three": 1}
