"""Child runs under workers: queued for any worker, parents and timers hold no slot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import phalanx
from phalanx import SystemClock
from phalanx.durable._recover import until_parked
from phalanx.journal import open_queue
from tests.chaos.workflows import read_ledger
from tests.conftest import OpenRuntime
from tests.fleet import workflows as wf
from tests.fleet.harness import until, until_status, working

TERMINAL = ("completed", "failed", "cancelled")


async def child_ids(runtime: phalanx.Runtime, parent: str) -> list[str]:
    """The run ids of `parent`'s child runs, oldest first."""
    return [r.run_id for r in await runtime.runs() if r.parent_run_id == parent]


async def has_children(runtime: phalanx.Runtime, parent: str, count: int) -> bool:
    """Whether `parent` started `count` child runs."""
    return len(await child_ids(runtime, parent)) >= count


async def handed_back(runtime: phalanx.Runtime, run_id: str) -> bool:
    """Whether a worker handed the run back (journaled `RunInterrupted`)."""
    return "RunInterrupted" in [e.type for e in (await runtime.history(run_id)).events]


async def test_one_worker_with_one_slot_runs_a_fan_out_of_ten_child_runs(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """Concurrency 1: the parent hands its slot back while its 10 queued children run."""
    ledger = str(tmp_path / "ledger")
    await runtime.submit(wf.tree, {"ledger": ledger, "width": 10}, run_id="p", priority=3)
    async with working(runtime, concurrency=1) as worker:
        assert await until_status(runtime, "p", *TERMINAL) == "completed"
    assert (await runtime.history("p")).result == {f"c{i}": "succeeded" for i in range(10)}
    children = await child_ids(runtime, "p")
    assert len(children) == 10
    for child in children:
        history = await runtime.history(child)
        assert history.status == "completed"
        assert (history.queue, history.priority) == ("default", 4)  # one above its parent
    parent = [e.type for e in (await runtime.history("p")).events]
    assert "RunInterrupted" in parent  # it was handed back while its children ran
    inbox = await runtime.store.read_stream("run:p:inbox")
    assert sorted(e.data["child_run_id"] for e in inbox if e.type == "ChildEnded") == sorted(
        children
    )
    steps = [line["step"] for line in read_ledger(ledger)]
    assert sorted(steps) == sorted([*(f"c{i}" for i in range(10)), "after"])
    assert worker.finished == 11


async def test_a_child_ends_with_its_parent_notice_in_one_commit(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A queued child's terminal event and the parent's ChildEnded share one transaction."""
    ledger = str(tmp_path / "ledger")
    await runtime.submit(wf.tree, {"ledger": ledger, "width": 2}, run_id="p")
    async with working(runtime, concurrency=2):
        assert await until_status(runtime, "p", *TERMINAL) == "completed"
    notices = {
        e.data["child_run_id"]: e
        for e in await runtime.store.read_stream("run:p:inbox")
        if e.type == "ChildEnded"
    }
    for child in await child_ids(runtime, "p"):
        ended = (await runtime.history(child)).events[-1]
        assert ended.type == "RunCompleted"
        # Adjacent global positions, the notice right after: one append_many commit.
        assert notices[child].position == ended.position + 1
        assert notices[child].data["status"] == "completed"


async def test_outside_a_worker_children_run_in_process_as_before(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """runtime.run: children are not queued and leave no notice in the parent's inbox."""
    ledger = str(tmp_path / "ledger")
    outcome = await runtime.run(wf.tree, {"ledger": ledger, "width": 3}, run_id="p")
    assert outcome.result == {f"c{i}": "succeeded" for i in range(3)}
    for child in await child_ids(runtime, "p"):
        assert (await runtime.history(child)).queue is None
    assert await runtime.store.read_stream("run:p:inbox") == []
    work = await runtime.work_queue()
    assert await work.claim("w", ["default"], 10, 5.0) == []


async def test_a_cancelled_parent_cancels_its_queued_children(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """Children parked on other slots end cancelled when their parent is cancelled."""
    ledger = str(tmp_path / "ledger")
    await runtime.submit(wf.tree, {"ledger": ledger, "width": 3, "hold": True}, run_id="p")
    async with working(runtime, concurrency=2):
        await until(lambda: has_children(runtime, "p", 3))
        for child in await child_ids(runtime, "p"):
            assert await until_status(runtime, child, "waiting") == "waiting"
        await runtime.cancel("p", reason="stop it")
        assert await until_status(runtime, "p", *TERMINAL) == "cancelled"
        for child in await child_ids(runtime, "p"):
            assert await until_status(runtime, child, *TERMINAL) == "cancelled"
            error = (await runtime.history(child)).error or {}
            assert "parent cancelled" in str(error.get("message"))
    assert read_ledger(ledger) == []  # the step after the fan-out never ran


async def test_children_past_the_parents_deadline_are_stopped(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A deadline wakes parked children: they end cancelled, the parent reports it."""
    ledger = str(tmp_path / "ledger")
    inputs = {"ledger": ledger, "width": 2, "hold": True, "deadline": 1.0}
    await runtime.submit(wf.tree, inputs, run_id="p")
    async with working(runtime, concurrency=1):
        assert await until_status(runtime, "p", *TERMINAL) == "completed"
    assert (await runtime.history("p")).result == {"c0": "timed_out", "c1": "timed_out"}
    for child in await child_ids(runtime, "p"):
        history = await runtime.history(child)
        assert history.status == "cancelled" and history.deadline_at is not None
        assert "deadline" in str((history.error or {}).get("message"))
        assert history.ended_at is not None and history.ended_at >= history.deadline_at


async def test_a_run_on_a_durable_timer_holds_no_slot(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """One slot: a run sleeping 2 s is handed back, another runs, then the timer wakes it."""
    ledger = str(tmp_path / "ledger")
    await runtime.submit(wf.sleeper, {"ledger": ledger, "seconds": 2.0}, run_id="sleepy")
    async with working(runtime, concurrency=1):
        await until(lambda: handed_back(runtime, "sleepy"))  # parked: its slot is free
        await runtime.submit(wf.steps, {"ledger": ledger, "count": 1}, run_id="quick")
        assert await until_status(runtime, "quick", *TERMINAL) == "completed"
        assert (await runtime.history("sleepy")).status == "running"  # still asleep
        assert await until_status(runtime, "sleepy", *TERMINAL) == "completed"
    events = (await runtime.history("sleepy")).events
    started = next(e for e in events if e.type == "TimerStarted")
    fired = next(e for e in events if e.type == "TimerFired")
    assert fired.recorded_at >= started.data["fire_at"]
    assert [line["step"] for line in read_ledger(ledger)] == ["s0", "woke"]


async def test_a_parked_run_is_claimable_once_the_stores_clock_passes_its_wake_up(
    open_rt: OpenRuntime, tmp_path: Path
) -> None:
    """park(wake_in): no claim before the time passes on the store's clock, one after."""
    ledger = str(tmp_path / "ledger")
    async with open_rt() as rt:
        await rt.submit(wf.steps, {"ledger": ledger}, run_id="r")
        work = open_queue(rt.store)
        await work.open()
        (claim,) = await work.claim("w", ["default"], 1, 5.0)
        await rt.store.release_lease(claim.lease)
        await work.park("r", 0, wake_in=0.6)
        assert await work.claim("w", ["default"], 1, 5.0) == []
        await asyncio.sleep(0.8)  # the time the wake-up takes to pass
        assert [c.run_id for c in await work.claim("w", ["default"], 1, 5.0)] == ["r"]
        await work.park("r", 0)  # parked on its inbox alone: a signal wakes it
        await rt.store.release_lease((await rt.store.get_lease("run:r")) or claim.lease)
        assert await work.claim("w", ["default"], 1, 5.0) == []
        await rt.signal("r", "nudge")
        assert [c.run_id for c in await work.claim("w", ["default"], 1, 5.0)] == ["r"]


async def test_ctx_child_under_a_worker_returns_results_and_raises_failures(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """ctx.child through the queue: a result comes back, a failed child raises in the parent."""
    ledger = str(tmp_path / "ledger")
    await runtime.submit(wf.nested, {"ledger": ledger}, run_id="n")
    async with working(runtime, concurrency=1):
        assert await until_status(runtime, "n", *TERMINAL) == "completed"
    assert (await runtime.history("n")).result == ["first", "failed", "builtins.ValueError"]
    children = await child_ids(runtime, "n")
    assert [(await runtime.history(c)).status for c in children] == ["completed", "failed"]
    notices = [e.data["status"] for e in await runtime.store.read_stream("run:n:inbox")]
    assert notices == ["completed", "failed"]


async def test_a_wait_that_begins_without_a_write_still_parks() -> None:
    """A run busy at one look and idle after, its journal unchanged, parks after the settle."""
    looks = iter([(False, (1, 0))])  # busy (submitting children), then only waiting

    async def look() -> tuple[bool, tuple[int, ...]]:
        return next(looks, (True, (1, 0)))

    async with asyncio.TaskGroup() as group:
        forever = group.create_task(asyncio.Event().wait())
        async with asyncio.timeout(5):
            assert await until_parked(SystemClock(), forever, look) == (1, 0)
        forever.cancel()
