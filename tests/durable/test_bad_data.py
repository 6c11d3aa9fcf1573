"""Bad data never sticks a run: refused where it enters, the step or run fails cleanly.

Every entry point (inputs, a step result, a signal, a tool result, a model response,
the run's own result) on every store: the value is journaled and returned unchanged,
or refused with `EventDataError` naming its path, and the run ends, never `running`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

import phalanx
from tests.conftest import StoreFactory
from tests.durable import bad_workflows as bad
from tests.durable.helpers import of_type, reached, until_status
from tests.strategies import HOSTILE_TEXT, MIB, hostile_values, journalable, nested

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]

SURROGATE_PATH = "$.result.items[3].text"


@pytest.fixture
def url(store_factory: StoreFactory) -> str:
    """Every runtime of these tests runs on each store in turn."""
    return store_factory.url


@pytest.fixture(autouse=True)
def _reset() -> None:
    bad.VALUE["value"] = None
    bad.HANG["on"] = False
    bad.ANSWER["text"] = ""


async def assert_step_failed(runtime: phalanx.Runtime, run_id: str, step: str) -> dict[str, Any]:
    """The step is journaled failed (not running) and the run failed; return the error."""
    history = await runtime.history(run_id)
    assert history.status == "failed"
    events = history.events
    assert not of_type(events, "StepCompleted", step)
    [failed] = of_type(events, "StepFailed", step)
    assert failed.data["retry_at"] is None
    error: dict[str, Any] = failed.data["error"]
    return error


async def test_a_step_result_with_a_lone_surrogate_fails_the_step(
    runtime: phalanx.Runtime,
) -> None:
    """The issue's poisoned step: StepFailed with EventDataError at result.items[3].text."""
    outcome = await runtime.run(bad.poisoned, run_id="p")
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error["type"] == "phalanx._errors.EventDataError"
    assert SURROGATE_PATH in outcome.error["message"]
    error = await assert_step_failed(runtime, "p", "fetch")
    assert error["fields"]["path"] == SURROGATE_PATH
    assert "unavailable" not in error["message"]  # the step's failure, not the store's


async def test_a_5_mb_step_result_fails_the_step_with_payload_too_large(
    runtime: phalanx.Runtime,
) -> None:
    """A result over the payload limit: PayloadTooLargeError, and StepFailed is journaled."""
    bad.VALUE["value"] = "x" * (5 * 1000 * 1000)
    outcome = await runtime.run(bad.step_result, run_id="big")
    assert outcome.error is not None
    assert outcome.error["type"] == "phalanx._errors.PayloadTooLargeError"
    error = await assert_step_failed(runtime, "big", "produce")
    assert error["fields"]["size"] > 5_000_000
    assert "max_payload_bytes" in error["message"]


async def test_a_step_error_holding_a_lone_surrogate_is_still_journaled(
    runtime: phalanx.Runtime,
) -> None:
    """A step whose exception message holds a lone surrogate fails with it escaped."""
    outcome = await runtime.run(bad.bad_error, run_id="e")
    assert outcome.error is not None and outcome.error["type"] == "builtins.ValueError"
    error = await assert_step_failed(runtime, "e", "explode")
    assert error["message"] == "bad byte: \\udcff"


async def test_a_run_result_the_store_refuses_fails_the_run(runtime: phalanx.Runtime) -> None:
    """A workflow returning a lone surrogate ends failed (RunFailed), not stuck running."""
    bad.VALUE["value"] = {"answer": "\ud800"}
    outcome = await runtime.run(bad.run_result, run_id="r")
    assert outcome.status == "failed" and outcome.error is not None
    assert "$.result.answer" in outcome.error["message"]
    history = await runtime.history("r")
    assert history.status == "failed" and history.events[-1].type == "RunFailed"


@pytest.mark.parametrize(
    ("inputs", "path"),
    [
        ({"topic": "\ud800"}, "$.topic"),
        ({"topic": {"list": [1, math.inf]}}, "$.topic.list[1]"),
        ({"topic": nested(500)}, "$.topic"),
    ],
)
async def test_inputs_no_store_can_hold_are_refused_before_anything_is_written(
    runtime: phalanx.Runtime, inputs: dict[str, Any], path: str
) -> None:
    """Inputs with a bad value raise EventDataError naming `$.key`; no run is created."""
    with pytest.raises(phalanx.EventDataError) as info:
        await runtime.run(bad.echo, inputs, run_id="in")
    assert info.value.path is not None and info.value.path.startswith(path)
    assert await runtime.runs() == []
    assert await runtime.store.get_lease("run:in") is None
    outcome = await runtime.run(bad.echo, {"topic": "fine"}, run_id="in")  # the id is free
    assert outcome.result == "fine"


@pytest.mark.parametrize("run_id", ["a\x00b", "a\udcffb"])
async def test_run_ids_no_store_can_hold_are_refused(runtime: phalanx.Runtime, run_id: str) -> None:
    """A run id with NUL or a lone surrogate: EventDataError to start, unknown to read."""
    with pytest.raises(phalanx.EventDataError):
        await runtime.run(bad.echo, {"topic": "x"}, run_id=run_id)
    with pytest.raises(phalanx.UnknownRunError):
        await runtime.history(run_id)
    assert await runtime.runs() == []


async def test_a_signal_no_store_can_hold_is_refused_and_a_good_one_still_lands(
    runtime: phalanx.Runtime,
) -> None:
    """A signal whose data holds a lone surrogate raises EventDataError; the run waits on."""
    waiting = asyncio.ensure_future(runtime.run(bad.waiter, run_id="w"))
    await reached(runtime, "w", "SignalWaiting")
    with pytest.raises(phalanx.EventDataError) as info:
        await runtime.signal("w", "approve", {"ok": "\udfff"})
    assert info.value.path == "$.data.ok"
    await runtime.signal("w", "approve", {"ok": True})
    outcome = await waiting
    assert outcome.result == {"ok": True}


async def test_a_tool_result_no_store_can_hold_fails_the_tool_step(
    runtime: phalanx.Runtime,
) -> None:
    """A tool returning a lone surrogate: its step fails with EventDataError, run fails."""
    bad.VALUE["value"] = ["fine", "caf\ud800"]
    outcome = await runtime.run(bad.tool_result, run_id="t")
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error["type"] == "phalanx._errors.EventDataError"
    error = await assert_step_failed(runtime, "t", "tool/lookup")
    assert error["fields"]["path"].endswith("hit[1]")


async def test_a_model_response_no_store_can_hold_fails_the_model_step(
    runtime: phalanx.Runtime,
) -> None:
    """A model answering with a lone surrogate: its step fails with EventDataError."""
    outcome = await runtime.run(bad.model_response, run_id="m")
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error["type"] == "phalanx._errors.EventDataError"
    error = await assert_step_failed(runtime, "m", "writer/model/1")
    assert error["fields"]["path"].startswith("$.result")


async def test_a_poisoned_crashed_run_fails_cleanly_and_recover_resumes_the_others(
    open_rt: OpenRuntime,
) -> None:
    """recover(): the run whose in-flight step now returns bad data fails; the rest finish."""
    async with open_rt(lease_ttl=0.3, start_hold=0) as dead:  # starts visible at once
        bad.HANG["on"] = True
        for run_id in ("poisoned", "healthy"):
            task = asyncio.ensure_future(dead.run(bad.step_result, run_id=run_id))
            await reached(dead, run_id, "StepStarted")
            task.cancel()  # the runner dies mid-step: the run stays `running`
            with pytest.raises(asyncio.CancelledError):
                await task
        await dead.clock.sleep(0.4)  # the dead runner's leases lapse
    bad.HANG["on"] = False
    bad.VALUE["value"] = {"items": ["\ud800"]}  # what the re-run step of either now returns

    async with open_rt() as survivor:
        # Resume the poisoned one first, alone: it must end failed, not stuck.
        outcome = await survivor.resume("poisoned")
        assert outcome.status == "failed"
        await assert_step_failed(survivor, "poisoned", "produce")
        bad.VALUE["value"] = {"items": ["fine"]}
        recovery = await survivor.recover()
        assert [(o.run_id, o.status) for o in recovery.outcomes] == [("healthy", "completed")]
        assert recovery.failures == {}
        statuses = {r.run_id: r.status for r in await survivor.runs()}
        assert statuses == {"poisoned": "failed", "healthy": "completed"}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=hostile_values())
def test_hostile_step_results_round_trip_or_fail_the_step(url: str, value: Any) -> None:
    """Any hostile value returned by a step: returned unchanged, or the step fails cleanly."""

    async def scenario() -> None:
        bad.VALUE["value"] = value
        async with phalanx.open_runtime(url, lease_ttl=5) as runtime:
            outcome = await runtime.run(bad.step_result)
            if journalable(value, limit=MIB - 512):
                assert outcome.status == "completed", outcome.error
                assert outcome.result == value
                assert (await runtime.history(outcome.run_id)).result == value
            else:
                assert outcome.status == "failed"
                assert outcome.error is not None
                assert outcome.error["type"].endswith(("EventDataError", "PayloadTooLargeError"))
                await assert_step_failed(runtime, outcome.run_id, "produce")

    asyncio.run(scenario())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=hostile_values())
def test_hostile_inputs_and_signals_are_taken_unchanged_or_refused(url: str, value: Any) -> None:
    """Any hostile input or signal: delivered unchanged, or refused with EventDataError."""

    async def scenario() -> None:
        async with phalanx.open_runtime(url, lease_ttl=5) as runtime:
            try:
                outcome = await runtime.run(bad.echo, {"topic": value})
            except phalanx.EventDataError:
                assert not journalable(value, limit=MIB - 512)
                return
            assert journalable(value, limit=MIB * 2)
            if outcome.ok:
                assert outcome.result == value
            else:  # the input fitted in RunStarted, but its echo not in StepCompleted
                assert outcome.error is not None
                assert outcome.error["type"].endswith("PayloadTooLargeError")
            # A signal goes to a run that has not ended (one that has refuses it).
            run_id = runtime.entropy.token(8)
            async with asyncio.TaskGroup() as group:
                waiter = group.create_task(runtime.run(bad.waiter, run_id=run_id))
                await until_status(runtime, run_id, "waiting")
                try:
                    await runtime.signal(run_id, "s", value)
                except phalanx.EventDataError:
                    assert not journalable(value, limit=MIB - 512)
                else:
                    [sent] = await runtime.store.read_stream(f"run:{run_id}:inbox")
                    assert sent.data["data"] == value
                await runtime.cancel(run_id)
            assert waiter.result().status == "cancelled"

    asyncio.run(scenario())


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=hostile_values())
def test_hostile_tool_results_round_trip_or_fail_the_tool_step(url: str, value: Any) -> None:
    """Any hostile value a tool returns: handed back unchanged, or its step fails cleanly."""

    async def scenario() -> None:
        bad.VALUE["value"] = value
        async with phalanx.open_runtime(url, lease_ttl=5) as runtime:
            outcome = await runtime.run(bad.tool_result)
            if journalable(value, limit=MIB - 512, depth=3):  # at $.result.result.hit
                assert outcome.status == "completed", outcome.error
                assert outcome.result == {"query": "q", "hit": value}
            else:
                assert outcome.status == "failed" and outcome.error is not None
                assert outcome.error["type"].endswith(("EventDataError", "PayloadTooLargeError"))
                await assert_step_failed(runtime, outcome.run_id, "tool/lookup")

    asyncio.run(scenario())


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=HOSTILE_TEXT)
@example(text="{prompt} {tool_results}")  # found by Hypothesis: no template expansion
def test_hostile_model_answers_round_trip_or_fail_the_model_step(url: str, text: str) -> None:
    """Any hostile text a model answers: the agent's output, or its model step fails."""

    async def scenario() -> None:
        bad.ANSWER["text"] = text
        async with phalanx.open_runtime(url, lease_ttl=5) as runtime:
            outcome = await runtime.run(bad.echo_model)
            if journalable(text, limit=MIB // 2):
                assert outcome.status == "completed", outcome.error
                assert outcome.result == text
            elif not journalable(text, limit=MIB * 4):
                assert outcome.status == "failed" and outcome.error is not None
                assert outcome.error["type"].endswith(("EventDataError", "PayloadTooLargeError"))
                await assert_step_failed(runtime, outcome.run_id, "echoer/model/1")

    asyncio.run(scenario())
