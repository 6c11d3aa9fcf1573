"""Claims (`phalanx.TaskBoard`): no two runs do the same task.

Runs race for tasks through compare-and-set appends on one board stream; a claim
belongs to its run and is released when that run is no longer live (its lease
expired), so another run can take the task over and the old holder, resumed, backs
off. Effects are counted outside the journal, in `EFFECTS`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import phalanx
from phalanx import TaskBoard
from tests.peers import workflows as wf
from tests.peers.helpers import assert_all_terminal, crashes, faulty_runtime, journal

Opener = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]
TASKS = [f"t{i}" for i in range(8)]


async def lease_lapsed(runtime: phalanx.Runtime, run_id: str) -> None:
    """Wait until the (crashed) run's lease has expired."""
    while True:
        lease = await runtime.store.get_lease(f"run:{run_id}")
        if lease is not None and lease.expires_at < runtime.clock.now():
            return
        await asyncio.sleep(0.05)


async def test_racing_runs_do_each_task_once(open_rt: Opener) -> None:
    """Four runs on four connections race for eight tasks: each task is done exactly once."""
    async with contextlib.AsyncExitStack() as stack:
        runtimes = [await stack.enter_async_context(open_rt()) for _ in range(4)]
        async with asyncio.TaskGroup() as group:
            runs = [
                group.create_task(
                    # Each starts at a different task, so they meet in the middle.
                    rt.run(wf.solo_worker, {"board": "race", "tasks": TASKS[i:] + TASKS[:i]})
                )
                for i, rt in enumerate(runtimes)
            ]
        outcomes = [r.result() for r in runs]
        assert all(o.status == "completed" for o in outcomes), [o.error for o in outcomes]
        done_by = {
            task: o.run_id
            for o in outcomes
            for task, result in o.result.items()
            if result["status"] == "done"
        }
        assert sorted(done_by) == TASKS
        assert {task: 1 for task in TASKS} == wf.EFFECTS
        board = await TaskBoard("race").tasks(runtimes[0].store)
        assert {t: (s.done, s.holder) for t, s in board.items()} == {
            t: (True, done_by[t]) for t in TASKS
        }


async def test_peers_of_a_conversation_split_the_work(runtime: phalanx.Runtime) -> None:
    """Three peers each handed every task do each task once between them."""
    tasks = TASKS[:6]
    inputs = {"board": "split", "tasks": tasks, "peers": 3}
    outcome = await runtime.run(wf.share_work, inputs, run_id="split")
    assert outcome.status == "completed", outcome.error
    done = [t for o in outcome.result["peers"].values() for t in o["value"]]
    assert sorted(done) == tasks
    assert {task: 1 for task in tasks} == wf.EFFECTS
    await assert_all_terminal(runtime)


async def test_claim_of_a_dead_holder_is_released_and_taken_over(url: str, open_rt: Opener) -> None:
    """A holder that died mid-task keeps its claim until its lease lapses, then loses it."""
    wf.CRASH_AT.add("task:t")
    inputs: dict[str, Any] = {"board": "orphans", "tasks": ["t"]}
    async with faulty_runtime(url) as rt:
        await crashes(rt.run(wf.solo_worker, inputs, run_id="dead"))
    async with open_rt() as rt:
        # The holder's lease is still live: the claim is respected.
        early = await rt.run(wf.solo_worker, inputs, run_id="early")
        assert early.result == {"t": {"status": "refused", "holder": "dead"}}
        await lease_lapsed(rt, "dead")
        late = await rt.run(wf.solo_worker, inputs, run_id="late")
        assert late.result == {"t": {"status": "done", "holder": "late"}}
        claimed = [
            e for e in await rt.store.read_stream("claims:orphans") if e.type == "TaskClaimed"
        ]
        assert [(e.data["holder"], e.data["previous"]) for e in claimed] == [
            ("dead", None),
            ("late", "dead"),
        ]
        # The old holder, resumed, finds its claim taken over and does not do the work.
        resumed = await rt.resume("dead", force=True)
        assert resumed.result == {"t": {"status": "lost", "holder": "late"}}
        assert any(e.type == "StepFailed" for e in await journal(rt, "dead"))
        board = await TaskBoard("orphans").tasks(rt.store)
        assert board["t"].done and board["t"].holder == "late"
        await assert_all_terminal(rt)
    assert wf.EFFECTS == {"t": 1}


async def test_holder_resumed_in_time_keeps_its_claim(url: str, open_rt: Opener) -> None:
    """A claim belongs to the run, not the process: resumed before anyone took it, it is kept."""
    wf.CRASH_AT.add("task:t")
    inputs: dict[str, Any] = {"board": "kept", "tasks": ["t"]}
    async with faulty_runtime(url) as rt:
        await crashes(rt.run(wf.solo_worker, inputs, run_id="holder"))
    async with open_rt() as rt:
        resumed = await rt.resume("holder", force=True)
        assert resumed.result == {"t": {"status": "done", "holder": "holder"}}
        other = await rt.run(wf.solo_worker, inputs, run_id="other")
        assert other.result == {"t": {"status": "refused", "holder": "holder"}}
        events = [e.type for e in await rt.store.read_stream("claims:kept")]
        assert events == ["TaskClaimed", "ClaimReaffirmed", "TaskDone"]
    assert wf.EFFECTS == {"t": 1}


async def test_failed_work_releases_its_claim(runtime: phalanx.Runtime) -> None:
    """Work that fails gives its claim back at once, so another run can do the task."""
    wf.CRASH_AT.add("fail:t")
    inputs: dict[str, Any] = {"board": "retry", "tasks": ["t"]}
    failed = await runtime.run(wf.solo_worker, inputs, run_id="failed")
    assert failed.status == "failed"
    assert failed.error is not None and "cannot be done now" in failed.error["message"]
    retried = await runtime.run(wf.solo_worker, inputs, run_id="retried")
    assert retried.result == {"t": {"status": "done", "holder": "retried"}}
    events = [e.type for e in await runtime.store.read_stream("claims:retry")]
    assert events == ["TaskClaimed", "TaskReleased", "TaskClaimed", "TaskDone"]
    assert wf.EFFECTS == {"t": 1}
