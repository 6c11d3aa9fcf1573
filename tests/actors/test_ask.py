"""Asking a durable actor: the answer comes back once, and is kept across a resume."""

from __future__ import annotations

import asyncio

import pytest

import phalanx
from tests.actors import workflows
from tests.actors.workflows import asker, doubler

ACTOR = "doubler"


async def journal(rt: phalanx.Runtime, run_id: str) -> list[phalanx.Event]:
    return await rt.store.read_stream(f"run:{run_id}")


async def test_ask_returns_the_actors_reply(runtime: phalanx.Runtime) -> None:
    """Each ask gets the reply to its own request."""
    actor = asyncio.create_task(runtime.run(doubler, {"serve": 2}, run_id=ACTOR))
    outcome = await runtime.run(asker, {"to": ACTOR, "bodies": [1, 21]}, run_id="a")
    assert outcome.result == [2, 42], outcome
    assert (await asyncio.wait_for(actor, 30)).result == 2


async def test_ask_times_out_and_the_timeout_is_journaled(runtime: phalanx.Runtime) -> None:
    """Nobody answers: AskTimeoutError, and `ReplyTimedOut` in the asker's journal."""
    outcome = await runtime.run(asker, {"to": "nobody", "bodies": [1], "timeout": 0.3}, run_id="a")
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error["type"].endswith("AskTimeoutError")
    assert "ReplyTimedOut" in [e.type for e in await journal(runtime, "a")]


async def test_a_resumed_asker_keeps_its_answers_without_asking_again(
    runtime: phalanx.Runtime,
) -> None:
    """Crashed between two asks and resumed, the first answer comes from the journal."""
    actor = asyncio.create_task(runtime.run(doubler, {"serve": 2}, run_id=ACTOR))
    workflows.CRASH_AT.add("between")
    with pytest.raises(BaseException) as crashed:
        await runtime.run(asker, {"to": ACTOR, "bodies": [1, 21]}, run_id="a")
    assert isinstance(crashed.value, workflows.Crash) or crashed.group_contains(workflows.Crash)
    outcome = await runtime.resume("a", force=True)
    assert outcome.result == [2, 42], outcome
    assert (await asyncio.wait_for(actor, 30)).result == 2
    doubled = [e for e in await journal(runtime, ACTOR) if e.type == "StepCompleted"]
    assert [e.data["result"] for e in doubled] == [2, 42]


async def test_reply_to_a_told_message_is_refused(runtime: phalanx.Runtime) -> None:
    """A message sent with tell has nobody waiting: reply raises UserError."""
    actor = asyncio.create_task(runtime.run(doubler, {"serve": 1}, run_id=ACTOR))
    await phalanx.actors.post(runtime.store, ACTOR, 5, message_id="told")
    outcome = await runtime.run(asker, {"to": ACTOR, "bodies": [3]}, run_id="a")
    assert outcome.result == [6]
    assert (await asyncio.wait_for(actor, 30)).result == 1
