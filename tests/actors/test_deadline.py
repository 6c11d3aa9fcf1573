"""Deadline scopes inside a run: journaled, so a resumed run keeps the deadline it set."""

from __future__ import annotations

import asyncio

import pytest

import phalanx
from tests.actors import workflows
from tests.actors.workflows import Crash, bounded


async def journal(rt: phalanx.Runtime, run_id: str) -> list[phalanx.Event]:
    return await rt.store.read_stream(f"run:{run_id}")


async def test_fail_after_raises_when_the_body_overruns(runtime: phalanx.Runtime) -> None:
    """A body slower than its deadline is stopped and the scope raises DeadlineExceededError."""
    outcome = await runtime.run(bounded, {"limit": 0.3, "work": 5.0}, run_id="r")
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["type"].endswith("DeadlineExceededError")
    types = [e.type for e in await journal(runtime, "r")]
    assert types.count("DeadlineSet") == 1 and types.count("DeadlineExpired") == 1


async def test_fail_after_lets_a_fast_body_finish(runtime: phalanx.Runtime) -> None:
    """A body within its deadline completes, and no expiry is journaled."""
    outcome = await runtime.run(bounded, {"limit": 5.0, "work": 0.05}, run_id="r")
    assert outcome.result == "done"
    assert "DeadlineExpired" not in [e.type for e in await journal(runtime, "r")]


async def test_move_on_after_stops_the_body_and_carries_on(runtime: phalanx.Runtime) -> None:
    """move_on_after swallows its own expiry; the run goes on to its next step."""
    outcome = await runtime.run(bounded, {"limit": 0.3, "work": 5.0, "move_on": True})
    assert outcome.status == "completed"
    assert outcome.result == {"cancelled_caught": True, "after": 1}


async def test_a_resumed_run_keeps_the_deadline_it_journaled(runtime: phalanx.Runtime) -> None:
    """Resumed after its deadline passed, the scope fails: the deadline did not start over."""
    workflows.CRASH_AT.add("work")
    with pytest.raises(BaseException) as crashed:
        await runtime.run(bounded, {"limit": 0.5, "work": 0.2}, run_id="r")
    assert isinstance(crashed.value, Crash) or crashed.group_contains(Crash)
    [deadline] = [e.data for e in await journal(runtime, "r") if e.type == "DeadlineSet"]
    await asyncio.sleep(0.6)  # a fresh 0.5 s scope would let the 0.2 s step finish
    outcome = await runtime.resume("r", force=True)
    assert outcome.status == "failed", outcome
    assert outcome.error is not None
    assert outcome.error["type"].endswith("DeadlineExceededError")
    events = await journal(runtime, "r")
    assert [e.data for e in events if e.type == "DeadlineSet"] == [deadline]
    # Stopped before it re-ran the step it had been in: no second attempt completed.
    assert not [e for e in events if e.type == "StepCompleted" and e.data["name"] == "work"]
