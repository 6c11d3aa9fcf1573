"""Replay: completed work is never redone, in-flight work is redone under the same key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

import phalanx
from phalanx.testing import SeededEntropy
from tests.durable import workflows as wf
from tests.durable.helpers import crashes, journal, of_type, status

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


async def test_uncrashed_run_completes_with_one_call_per_step(runtime: phalanx.Runtime) -> None:
    """A run without crashes journals each step once and returns the workflow's result."""
    outcome = await runtime.run(wf.pipeline, {"n": 1}, run_id="r")
    assert outcome.ok and outcome.result == {"a": 2, "b": 12, "c": 112}
    assert wf.CALLS == {"a": 1, "b": 1, "c": 1}
    events = await journal(runtime, "r")
    assert [e.type for e in events] == [
        "RunStarted",
        *["StepStarted", "StepCompleted"] * 3,
        "RunCompleted",
    ]
    assert await status(runtime, "r") == "completed"


@pytest.mark.parametrize("crash_in", ["b", "c"])
async def test_completed_steps_are_not_rerun_after_a_crash(
    runtime: phalanx.Runtime, crash_in: str
) -> None:
    """After a crash in a step, resume replays the steps before it and ends as if uncrashed."""
    uncrashed = await runtime.run(wf.pipeline, {"n": 1}, run_id="clean")
    wf.CALLS.clear()
    wf.CRASH_AT.add(crash_in)
    await crashes(runtime.run(wf.pipeline, {"n": 1}, run_id="r"))
    assert await status(runtime, "r") == "running"

    outcome = await runtime.resume("r", force=True)

    assert outcome.ok and outcome.result == uncrashed.result == {"a": 2, "b": 12, "c": 112}
    expected = {"a": 1, "b": 1, "c": 1}
    expected[crash_in] = 2  # in flight at the crash: run again
    assert expected == wf.CALLS
    events = await journal(runtime, "r")
    assert [len(of_type(events, "StepCompleted", n)) for n in "abc"] == [1, 1, 1]
    assert of_type(events, "RunCompleted")[0].data["result"] == outcome.result


async def test_resume_after_outside_cancellation_reruns_nothing_completed(
    runtime: phalanx.Runtime,
) -> None:
    """Cancelling the runner's task from outside leaves the run resumable; resume finishes it."""
    gate = wf.gate("two")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.paused_pipeline, run_id="r"))
        await gate.entered.wait()
        task.cancel()
    assert task.cancelled()
    assert await status(runtime, "r") == "running"
    types = [e.type for e in await journal(runtime, "r")]
    assert "RunCancelled" not in types and "RunFailed" not in types

    outcome = await runtime.resume("r", force=True)  # the gate lets the second call through

    assert outcome.ok and outcome.result == [1, "two", 3]
    assert wf.CALLS == {"one": 1, "pause:two": 2, "three": 1}


async def test_resume_of_a_finished_run_reports_its_outcome(runtime: phalanx.Runtime) -> None:
    """Resuming a completed run runs nothing and returns the journaled outcome."""
    first = await runtime.run(wf.pipeline, {"n": 0}, run_id="r")
    again = await runtime.resume("r")
    assert again == first
    assert wf.CALLS == {"a": 1, "b": 1, "c": 1}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_step_in_flight_at_a_crash_runs_again_with_the_same_key(
    runtime: phalanx.Runtime, use_async: bool
) -> None:
    """The step in flight at a crash runs again under the same idempotency key."""
    wf.CRASH_AT.add("second")
    await crashes(runtime.run(wf.keyed, {"use_async": use_async}, run_id="r"))

    outcome = await runtime.resume("r", force=True)

    assert outcome.ok
    first_key, second_key = outcome.result
    assert first_key != second_key
    assert [first_key, second_key, second_key] == wf.KEYS
    started = of_type(await journal(runtime, "r"), "StepStarted", "second")
    # The crashed attempt's start rode in the commit it never reached; the resumed
    # runner journals its start before running the step.
    assert len(started) == 1
    assert {e.data["key"] for e in started} == {second_key}
    assert {e.data["op"] for e in started} == {2}
    assert all(e.data["attempt"] == 1 for e in started)


async def test_idempotency_key_outside_a_step_is_misuse(runtime: phalanx.Runtime) -> None:
    """Reading ctx.idempotency_key outside a running step raises UserError."""
    outcome = await runtime.run(wf.key_outside_step, run_id="r")
    assert outcome.result == "refused"
    assert "inside a running step" in str(wf.CAUGHT[0])


async def test_now_random_and_uuid_are_replayed(open_rt: OpenRuntime) -> None:
    """ctx.now(), ctx.random() and ctx.uuid() return the recorded values on replay."""
    wf.CRASH_AT.add("after")
    async with open_rt(entropy=SeededEntropy(1)) as first:
        await crashes(first.run(wf.draws, run_id="r"))
    async with open_rt(entropy=SeededEntropy(2)) as second:
        outcome = await second.resume("r", force=True)
        recorded = of_type(await journal(second, "r"), "ValueRecorded")
    assert outcome.ok
    assert [outcome.result] == wf.SEEN  # `remember` ran once, with the same values
    assert [e.data["name"] for e in recorded] == ["now", "random", "uuid"]
    assert [e.data["value"] for e in recorded] == list(outcome.result.values())


class TestNonDeterminism:
    """Code that changed under a running run is detected, reported and never mixed in."""

    async def test_a_renamed_step_stops_the_run_without_failing_it(
        self, runtime: phalanx.Runtime
    ) -> None:
        """Replay asking for step "b" where the journal holds "a" raises NonDeterminismError."""
        wf.CRASH_AT.add("second")
        await crashes(runtime.run(wf.evolving, run_id="r"))
        wf.CODE["first"] = "b"

        with pytest.raises(phalanx.NonDeterminismError) as info:
            await runtime.resume("r", force=True)

        error = info.value
        assert (error.position, error.expected, error.actual) == (1, "step 'a'", "step 'b'")
        assert wf.CALLS == {"a": 1, "second": 1}, "no step of the new code ran"
        events = await journal(runtime, "r")
        diverged = of_type(events, "ReplayDiverged")
        assert len(diverged) == 1
        assert diverged[0].data["error"]["fields"]["position"] == 1
        assert not of_type(events, "StepStarted", "b")
        assert await status(runtime, "r") == "running"

        wf.CODE["first"] = "a"  # roll the deploy back
        outcome = await runtime.resume("r")  # the diverged runner released its lease
        assert outcome.ok and outcome.result == 2
        assert wf.CALLS == {"a": 1, "second": 2}

    async def test_code_that_ends_early_is_divergence(self, runtime: phalanx.Runtime) -> None:
        """Replay that returns while the journal holds more operations raises too."""
        wf.CRASH_AT.add("second")
        await crashes(runtime.run(wf.evolving, run_id="r"))
        wf.CRASH_AT.add("second")  # a resumed runner journals the start before it crashes
        await crashes(runtime.resume("r", force=True))
        wf.CODE["ends_early"] = True

        with pytest.raises(phalanx.NonDeterminismError) as info:
            await runtime.resume("r", force=True)

        error = info.value
        assert (error.position, error.expected) == (2, "step 'second'")
        assert error.actual == "the end of the workflow"
        events = await journal(runtime, "r")
        assert of_type(events, "ReplayDiverged")
        assert not of_type(events, "RunCompleted")
        assert await status(runtime, "r") == "running"

        wf.CODE["ends_early"] = False
        outcome = await runtime.resume("r")
        assert outcome.ok and outcome.result == 2
