"""Cancellation: a requested cancel is an outcome; a cancelled runner task is a crash."""

from __future__ import annotations

import asyncio

import pytest

import phalanx
from tests.durable import workflows as wf
from tests.durable.helpers import journal, of_type, status


async def test_cancel_reaches_the_run_and_its_cleanup_is_journaled(
    runtime: phalanx.Runtime,
) -> None:
    """runtime.cancel stops the run at its await; its finally step runs; it ends cancelled."""
    gate = wf.gate("work")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.cancellable, run_id="r"))
        await gate.entered.wait()
        assert await runtime.cancel("r", reason="user pressed stop") is True
    outcome = task.result()

    assert outcome.status == "cancelled"
    assert outcome.error is not None and outcome.error["type"] == "Cancelled"
    assert wf.CALLS == {"pause:work": 1, "cleanup": 1}
    events = await journal(runtime, "r")
    assert [e.type for e in events][-3:] == ["StepStarted", "StepCompleted", "RunCancelled"]
    assert of_type(events, "StepCompleted", "cleanup")
    assert not of_type(events, "StepCompleted", "work")
    [cancelled] = of_type(events, "RunCancelled")
    assert cancelled.data["reason"] == "user pressed stop"
    assert await status(runtime, "r") == "cancelled"
    assert (await runtime.resume("r")).status == "cancelled"


async def test_cancel_of_a_finished_run_returns_false(runtime: phalanx.Runtime) -> None:
    """Cancelling a run that has already ended changes nothing and returns False."""
    await runtime.run(wf.pipeline, {"n": 0}, run_id="r")
    assert await runtime.cancel("r") is False
    assert await status(runtime, "r") == "completed"
    with pytest.raises(phalanx.UnknownRunError):
        await runtime.cancel("nope")


async def test_cancelling_a_parent_cancels_its_child_in_flight(runtime: phalanx.Runtime) -> None:
    """A cancelled parent's child run in flight ends cancelled too, its cleanup journaled."""
    gate = wf.gate("work")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.cancellable_parent, run_id="p"))
        await gate.entered.wait()
        await runtime.cancel("p")
    assert task.result().status == "cancelled"

    child_id = "p.1"
    assert await status(runtime, child_id) == "cancelled"
    child_events = await journal(runtime, child_id)
    assert of_type(child_events, "RunCancelled")
    assert len(of_type(child_events, "StepCompleted", "cleanup")) == 1
    assert of_type(await journal(runtime, "p"), "StepCompleted", "parent-cleanup")
    assert wf.CALLS["cleanup"] == 1 and wf.CALLS["parent-cleanup"] == 1


async def test_a_cancel_sent_while_the_run_is_down_takes_effect_on_resume(
    runtime: phalanx.Runtime,
) -> None:
    """A run cancelled while no runner ran it ends cancelled when resumed, doing no new work."""
    gate = wf.gate("work")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.cancellable, run_id="r"))
        await gate.entered.wait()
        task.cancel()  # the runner dies with the step in flight
    assert await runtime.cancel("r") is True

    outcome = await runtime.resume("r", force=True)

    assert outcome.status == "cancelled"
    assert await status(runtime, "r") == "cancelled"
    assert wf.CALLS == {"pause:work": 1, "cleanup": 1}, "the in-flight step did not rerun"
    assert of_type(await journal(runtime, "r"), "StepCompleted", "cleanup")


async def test_outside_cancellation_writes_nothing_so_resume_finishes_normally(
    runtime: phalanx.Runtime,
) -> None:
    """Cancelled from outside: no cleanup journaled, the lease handed back; resume finishes it."""
    gate = wf.gate("work")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.cancellable, run_id="r"))
        await gate.entered.wait()
        task.cancel()
    events = await journal(runtime, "r")
    # The step in flight left no start: it rides in the commit of the step's end.
    assert [e.type for e in events] == ["RunStarted", "RunInterrupted"]
    lease = await runtime.store.get_lease("run:r")
    assert lease is not None and lease.expires_at <= runtime.clock.now(), "handed back"

    outcome = await runtime.resume("r")  # no force needed: nobody holds the lease

    assert outcome.ok and outcome.result == "finished"
    assert wf.CALLS == {"pause:work": 2, "more": 1, "cleanup": 1}


async def test_a_cancel_sent_while_down_stops_parallel_branches(
    runtime: phalanx.Runtime,
) -> None:
    """A pending cancel raised in one parallel branch cancels the whole run, cleanup included."""
    gates = [wf.gate("branch-0"), wf.gate("branch-1")]
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.fan_out, run_id="r"))
        for gate in gates:
            await gate.entered.wait()
        task.cancel()
    assert await runtime.cancel("r") is True

    outcome = await runtime.resume("r", force=True)

    assert outcome.status == "cancelled"
    assert wf.CALLS["pause:branch-0"] == 1, "the branch that met the cancel did not rerun"
    assert wf.CALLS["cleanup"] == 1
    assert wf.CALLS["after"] == 0, "no work after the branches started"
    events = await journal(runtime, "r")
    assert not of_type(events, "StepCompleted", "branch-0")
    assert of_type(events, "RunCancelled")


async def test_a_cancel_landing_after_an_append_committed_does_not_wedge_the_journal(
    store: phalanx.EventStore,
) -> None:
    """An append cancelled after its commit is learned of before the next write goes in."""
    from phalanx.durable._journal import RunJournal
    from phalanx.testing import FaultyStore

    def cancelled_after_commit() -> None:
        raise asyncio.CancelledError("a deadline landed as the write returned")

    faulty = FaultyStore(store, kill_after_append=1, crash=cancelled_after_commit)
    lease = await store.acquire_lease("run:r", "me", ttl=30)
    pen = RunJournal(faulty, lease, 0, phalanx.Metadata(run_id="r"))
    pen.defer("ValueRecorded", {"op": 1})
    with pytest.raises(asyncio.CancelledError):
        await pen.append("StepStarted", {"op": 2})
    await pen.append("RunCancelled", {"reason": "deadline exceeded"})
    types = [e.type for e in await store.read_stream("run:r")]
    assert types == ["ValueRecorded", "StepStarted", "RunCancelled"]
