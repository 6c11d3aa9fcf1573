"""Workers in this process: submit, claim, park, drain and the registry, on every store."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

import pytest

import phalanx
from phalanx.journal import open_queue
from tests.chaos.workflows import read_ledger
from tests.conftest import OpenRuntime
from tests.fleet import workflows as wf
from tests.fleet.harness import until_status, working


async def test_submit_records_the_run_without_running_it(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A submitted run is journaled (RunStarted, its queue) and nothing of it executes."""
    ledger = str(tmp_path / "ledger")
    run_id = await runtime.submit(wf.steps, {"ledger": ledger}, run_id="r1", queue="q")
    await asyncio.sleep(0.2)
    history = await runtime.history(run_id)
    assert [e.type for e in history.events] == ["RunStarted"]
    assert history.events[0].data["queue"] == "q"
    assert read_ledger(ledger) == []
    with pytest.raises(phalanx.RunExistsError):
        await runtime.submit(wf.steps, {"ledger": ledger}, run_id="r1")


async def test_a_worker_runs_submitted_runs_to_completion(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """Every submitted run completes under a worker, each step's effect once."""
    ledger = str(tmp_path / "ledger")
    ids = [await runtime.submit(wf.steps, {"ledger": ledger}) for _ in range(5)]
    async with working(runtime, concurrency=2, grace=60) as worker:
        for run_id in ids:
            assert await until_status(runtime, run_id, "completed", "failed") == "completed"
    assert worker.finished == 5
    keys = [e["key"] for e in read_ledger(ledger)]
    assert len(keys) == 15 and len(set(keys)) == 15
    for run_id in ids:
        epochs = {e.epoch for e in (await runtime.history(run_id)).events[1:]}
        assert epochs == {1}


async def test_workers_serve_only_their_queues_and_priority_goes_first(
    open_rt: OpenRuntime, tmp_path: Path
) -> None:
    """A worker takes its own queues only, higher priority first, then oldest first."""
    ledger = str(tmp_path / "ledger")
    async with open_rt() as rt:
        await rt.submit(wf.steps, {"ledger": ledger, "count": 1}, run_id="other", queue="gpu")
        await rt.submit(wf.steps, {"ledger": ledger, "count": 1}, run_id="low")
        await rt.submit(wf.steps, {"ledger": ledger, "count": 1}, run_id="high", priority=5)
        await rt.submit(wf.steps, {"ledger": ledger, "count": 1}, run_id="low2")
        work = await rt.work_queue()
        claims = await work.claim("me", ["default"], 10, 5.0)
        assert [c.run_id for c in claims] == ["high", "low", "low2"]
        assert all(c.lease.epoch == 1 and c.lease.owner == "me" for c in claims)
        assert await work.claim("you", ["default"], 10, 5.0) == []  # all leased now
        assert [c.run_id for c in await work.claim("you", ["gpu"], 10, 5.0)] == ["other"]


async def test_concurrent_claimers_never_share_a_run(open_rt: OpenRuntime, tmp_path: Path) -> None:
    """Four claimers on their own connections at once: each run goes to exactly one."""
    ledger = str(tmp_path / "ledger")
    async with open_rt() as rt:
        for i in range(40):
            await rt.submit(wf.steps, {"ledger": ledger}, run_id=f"r{i}")
    async with contextlib.AsyncExitStack() as stack:
        runtimes = [await stack.enter_async_context(open_rt()) for _ in range(4)]
        queues = [await rt.work_queue() for rt in runtimes]

        async def claim_all(n: int) -> list[str]:
            got: list[str] = []
            while batch := await queues[n].claim(f"w{n}", ["default"], 3, 30.0):
                got += [c.run_id for c in batch]
            return got

        results = await asyncio.gather(*(claim_all(n) for n in range(4)))
    claimed = [run_id for got in results for run_id in got]
    assert sorted(claimed) == sorted(f"r{i}" for i in range(40))


async def test_an_expired_lease_is_claimed_again_with_a_larger_epoch(
    open_rt: OpenRuntime, tmp_path: Path
) -> None:
    """A claim whose holder stopped renewing is taken over once it expires, epoch + 1."""
    ledger = str(tmp_path / "ledger")
    async with open_rt() as rt:
        await rt.submit(wf.steps, {"ledger": ledger}, run_id="r")
        work = await rt.work_queue()
        (first,) = await work.claim("dead", ["default"], 1, 0.3)
        assert await work.claim("alive", ["default"], 1, 0.3) == []
        await asyncio.sleep(0.5)  # the time the dead holder's lease takes to lapse
        (second,) = await work.claim("alive", ["default"], 1, 5.0)
        assert (second.run_id, second.lease.epoch) == ("r", first.lease.epoch + 1)
        with pytest.raises(phalanx.FencedError):
            await rt.store.append("run:r", [phalanx.NewEvent("Late")], epoch=first.lease.epoch)


async def test_a_run_waiting_for_a_signal_is_handed_back_and_woken_by_it(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A parked run frees its slot (RunInterrupted, lease released); its signal brings it back."""
    ledger = str(tmp_path / "ledger")
    await runtime.submit(wf.approval, {"ledger": ledger}, run_id="a")
    await runtime.submit(wf.steps, {"ledger": ledger, "count": 1}, run_id="b")
    async with working(runtime, concurrency=1):
        # One slot: b can only run once a, waiting for its signal, gave the slot up.
        assert await until_status(runtime, "b", "completed") == "completed"
        events = [e.type for e in (await runtime.history("a")).events]
        assert events[-1] == "RunInterrupted" and "SignalWaiting" in events
        lease = await runtime.store.get_lease("run:a")
        assert lease is not None and lease.owner == ""
        await runtime.signal("a", "approve", "yes")
        assert await until_status(runtime, "a", "completed") == "completed"
    history = await runtime.history("a")
    assert history.result == "yes"
    assert [e["step"] for e in read_ledger(ledger)].count("before") == 1


async def test_shutdown_hands_a_running_run_back_for_another_worker(
    open_rt: OpenRuntime, tmp_path: Path
) -> None:
    """Draining past the grace period journals RunInterrupted and releases the lease."""
    ledger = str(tmp_path / "ledger")
    async with open_rt() as rt:
        await rt.submit(wf.steps, {"ledger": ledger, "count": 3, "seconds": 0.5}, run_id="r")
        worker = phalanx.Worker(rt, poll=0.05, grace=0.1)
        async with asyncio.TaskGroup() as group:
            group.create_task(worker.run())
            while True:  # polling a file another task writes
                if read_ledger(ledger):
                    break
                await asyncio.sleep(0.02)
            worker.shutdown()
        events = [e.type for e in (await rt.history("r")).events]
        assert events[-1] == "RunInterrupted"
        lease = await rt.store.get_lease("run:r")
        assert lease is not None and lease.owner == ""
    async with open_rt() as other:
        async with working(other):
            assert await until_status(other, "r", "completed") == "completed"
        assert [e.epoch for e in (await other.history("r")).events][-1] == 2


async def test_the_registry_lists_live_workers_and_forgets_stopped_ones(
    runtime: phalanx.Runtime,
) -> None:
    """`workers()` has a running worker's id, host, pid and queues; not after it stops."""
    work = await runtime.work_queue()
    async with working(runtime, queues=["a", "b"]) as worker:
        async with asyncio.timeout(30):
            while True:  # polling the store
                if found := await work.workers():
                    break
                await asyncio.sleep(0.02)
        (info,) = found
        assert info.worker_id == worker.worker_id
        assert info.queues == ("a", "b") and info.runs == 0 and info.pid > 0
    assert await work.workers() == []


async def test_a_memory_like_store_cannot_hold_a_queue(tmp_path: Path) -> None:
    """A store that is not SQLite or PostgreSQL is refused with a ConfigError."""

    class Elsewhere:
        url = "elsewhere://"

    with pytest.raises(phalanx.ConfigError, match="cannot hold a work queue"):
        open_queue(Elsewhere())  # type: ignore[arg-type]  # deliberately not a store


async def test_a_queue_limit_holds_across_workers(open_rt: OpenRuntime, tmp_path: Path) -> None:
    """Limit 1: two workers with room for 3 each still run the queue's runs one at a time."""
    ledger = str(tmp_path / "ledger")
    async with open_rt() as one, open_rt() as two:
        await (await one.work_queue()).set_limit("default", 1)
        ids = [
            await one.submit(wf.steps, {"ledger": ledger, "count": 2, "seconds": 0.1})
            for _ in range(4)
        ]
        async with working(one, concurrency=3, grace=60), working(two, concurrency=3, grace=60):
            for run_id in ids:
                assert await until_status(one, run_id, "completed") == "completed"
        spans = []
        for run_id in ids:
            events = (await one.history(run_id)).events
            spans.append((events[1].recorded_at, events[-1].recorded_at))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, spans  # never two at once


async def test_queue_limits_are_set_listed_and_cleared(runtime: phalanx.Runtime) -> None:
    """set_limit stores a queue's limit, None clears it, and a limit below 1 is refused."""
    work = await runtime.work_queue()
    await work.set_limit("gpu", 2)
    await work.set_limit("gpu", 3)
    await work.set_limit("cpu", 1)
    assert await work.limits() == {"gpu": 3, "cpu": 1}
    await work.set_limit("cpu", None)
    assert await work.limits() == {"gpu": 3}
    with pytest.raises(ValueError, match="at least 1"):
        await work.set_limit("gpu", 0)


async def test_the_registry_shows_the_runs_a_worker_holds_now(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A worker running a run is listed with runs=1 while it runs, 0 once it ended."""
    ledger = str(tmp_path / "ledger")
    await runtime.submit(wf.steps, {"ledger": ledger, "count": 4, "seconds": 0.5}, run_id="r")
    work = await runtime.work_queue()

    async def runs_listed(n: int) -> None:
        async with asyncio.timeout(30):
            while True:  # polling the store: the worker's heartbeat changes it
                listed = await work.workers()
                if listed and listed[0].runs == n:
                    return
                await asyncio.sleep(0.02)

    async with working(runtime, grace=60):
        await runs_listed(1)
        assert await until_status(runtime, "r", "completed") == "completed"
        await runs_listed(0)
