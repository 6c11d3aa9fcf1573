"""One commit per quick step: a step's start rides in the commit of its end.

A long step's start is written on its own once it ran `HOLD_S`, so it shows as
running; a step's real start time is kept (`occurred_at`); a resumed runner writes
its starts first, so crash loops are counted.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading

import pytest

import phalanx
from phalanx._threads import WorkerThreads
from phalanx.durable import occurred_at
from tests.conftest import OpenRuntime
from tests.durable import workflows as wf
from tests.durable.helpers import crashes, journal, of_type


async def test_a_held_start_keeps_the_time_the_step_started(runtime: phalanx.Runtime) -> None:
    """Each StepStarted directly precedes its StepCompleted and says when the step began."""
    outcome = await runtime.run(wf.pipeline, {"n": 1}, run_id="r")
    assert outcome.ok
    events = await journal(runtime, "r")
    for started, completed in zip(
        of_type(events, "StepStarted"), of_type(events, "StepCompleted"), strict=True
    ):
        assert completed.seq == started.seq + 1
        assert occurred_at(started) == started.data["started_at"] <= completed.recorded_at


async def test_a_long_step_shows_as_started_while_it_runs(open_rt: OpenRuntime) -> None:
    """A step still running after start_hold has its StepStarted journaled before it ends."""
    gate = wf.gate("two")
    async with open_rt(start_hold=0.05) as runtime, asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.paused_pipeline, run_id="r"))
        await gate.entered.wait()
        for _ in range(600):  # the start is written ~50 ms in; allow for a loaded machine
            started = of_type(await journal(runtime, "r"), "StepStarted", "two")
            if started:
                break
            await asyncio.sleep(0.05)
        assert started, "the long step's start was never written while it ran"
        assert not of_type(await journal(runtime, "r"), "StepCompleted", "two")
        gate.release.set()
    assert task.result().ok
    async with open_rt() as runtime:
        assert len(of_type(await journal(runtime, "r"), "StepStarted", "two")) == 1


async def test_a_resumed_runner_journals_the_start_before_running(
    runtime: phalanx.Runtime,
) -> None:
    """After a crash, the re-run step's start is committed before the step runs again."""
    wf.CRASH_AT.add("b")
    await crashes(runtime.run(wf.pipeline, {"n": 1}, run_id="r"))
    assert not of_type(await journal(runtime, "r"), "StepStarted", "b"), "held, never written"
    wf.CRASH_AT.add("b")
    await crashes(runtime.resume("r", force=True))
    assert len(of_type(await journal(runtime, "r"), "StepStarted", "b")) == 1
    outcome = await runtime.resume("r", force=True)
    assert outcome.ok and wf.CALLS["b"] == 3


async def test_the_crash_limit_fails_a_step_whose_starts_all_crashed(
    open_rt: OpenRuntime,
) -> None:
    """With crash_limit=2, a step journaled as started twice fails with StepCrashLoopError."""
    async with open_rt(crash_limit=2) as runtime:
        wf.CRASH_AT.add("b")
        await crashes(runtime.run(wf.pipeline, {"n": 1}, run_id="r"))
        for _ in range(2):  # the first crash left no start, the next two do
            wf.CRASH_AT.add("b")
            await crashes(runtime.resume("r", force=True))
        outcome = await runtime.resume("r", force=True)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["type"] == "phalanx._errors.StepCrashLoopError"
    assert wf.CALLS["b"] == 3 and wf.CALLS["c"] == 0


def test_crash_limit_below_one_or_a_negative_hold_is_a_config_error() -> None:
    """Runtime(crash_limit=0) and start_hold=-1 are refused with a ConfigError naming them."""
    store = phalanx.store_from_url("memory://")
    with pytest.raises(phalanx.ConfigError, match="crash_limit"):
        phalanx.Runtime(store, crash_limit=0)
    with pytest.raises(phalanx.ConfigError, match="start_hold"):
        phalanx.Runtime(store, start_hold=-1)


async def test_start_hold_zero_writes_each_start_before_its_step(open_rt: OpenRuntime) -> None:
    """With start_hold=0 a crashed step's start is in the journal: two commits per step."""
    wf.CRASH_AT.add("b")
    async with open_rt(start_hold=0) as runtime:
        await crashes(runtime.run(wf.pipeline, {"n": 1}, run_id="r"))
        started = of_type(await journal(runtime, "r"), "StepStarted", "b")
    assert len(started) == 1 and "started_at" not in started[0].data


async def test_worker_threads_run_in_the_callers_context_and_raise_its_errors() -> None:
    """WorkerThreads.run sees the caller's context vars in another thread and re-raises."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    threads = WorkerThreads(max_threads=2)

    def read() -> tuple[str, bool]:
        return var.get(), threading.current_thread() is threading.main_thread()

    results = await asyncio.gather(*(threads.run(read) for _ in range(8)))
    assert results == [("caller", False)] * 8

    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await threads.run(fail)


async def test_reading_a_history_leaves_the_garbage_collector_as_it_was(
    runtime: phalanx.Runtime,
) -> None:
    """The collector paused while a history is folded is on again after, off if it was off."""
    await runtime.run(wf.pipeline, {"n": 1}, run_id="r")
    assert gc.isenabled()
    await runtime.history("r")
    assert gc.isenabled()
    gc.disable()
    try:
        await runtime.history("r")
        assert not gc.isenabled()
    finally:
        gc.enable()
