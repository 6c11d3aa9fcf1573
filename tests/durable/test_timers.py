"""Durable timers: a resumed run sleeps only for what is left of its timer."""

from __future__ import annotations

import asyncio
import time

import pytest

import phalanx
from tests.durable import workflows as wf
from tests.durable.helpers import crashes, journal, of_type, reached


async def test_a_sleep_interrupted_by_a_crash_resumes_with_the_time_left(
    runtime: phalanx.Runtime,
) -> None:
    """A run crashed mid-sleep and resumed waits only until the original fire time."""
    seconds = 0.6
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.napping, {"seconds": seconds}, run_id="r"))
        timer = await reached(runtime, "r", "TimerStarted")
        await asyncio.sleep(0.3)  # part of the timer passes before the crash: the scenario
        task.cancel()
    assert task.cancelled()

    resumed_at = time.monotonic()
    outcome = await runtime.resume("r", force=True)
    took = time.monotonic() - resumed_at

    assert outcome.ok and outcome.result == 1
    assert took < seconds - 0.15, f"slept {took:.2f}s of a {seconds}s timer after 0.3s had passed"
    events = await journal(runtime, "r")
    [fired] = of_type(events, "TimerFired")
    assert fired.recorded_at >= timer.data["fire_at"]
    assert timer.data["fire_at"] == pytest.approx(timer.recorded_at + seconds, abs=0.05)
    assert len(of_type(events, "TimerStarted")) == 1, "the timer was not started anew"
    assert wf.CALLS == {"before": 1, "after": 1}


async def test_a_timer_that_fired_before_the_crash_does_not_sleep_again(
    runtime: phalanx.Runtime,
) -> None:
    """Replaying a fired timer returns at once."""
    wf.CRASH_AT.add("after")
    await crashes(runtime.run(wf.napping, {"seconds": 0.4}, run_id="r"))

    resumed_at = time.monotonic()
    outcome = await runtime.resume("r", force=True)
    took = time.monotonic() - resumed_at

    assert outcome.ok
    assert took < 0.25, f"resume slept {took:.2f}s for a timer that had fired"
    events = await journal(runtime, "r")
    assert len(of_type(events, "TimerStarted")) == len(of_type(events, "TimerFired")) == 1
    assert wf.CALLS == {"before": 1, "after": 2}
