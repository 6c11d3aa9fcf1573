"""Reliable calls: retries with back-off on the runtime's clock, failures dead-lettered."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

import phalanx
from phalanx.durable import occurred_at
from phalanx.testing import VirtualClock
from phalanx.tools import DeadLetterQueue
from phalanx.tools._call import call_in_memory
from tests.tools import workflows as wf
from tests.tools.helpers import of_type

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


async def test_flaky_tool_succeeds_on_its_third_attempt_after_journaled_backoff(
    open_rt: OpenRuntime,
) -> None:
    """Two failures, then success: each attempt journaled, retried only after retry_at."""
    wf.FAULTS["flaky"] = 2
    clock = VirtualClock()
    began = time.monotonic()
    async with open_rt(clock=clock) as runtime:
        outcome = await runtime.run(wf.flaky_flow, {"x": 21}, run_id="r")
        events = (await runtime.history("r")).events
    # Loose on purpose (a loaded machine is slow): really sleeping would take 30 s.
    assert time.monotonic() - began < 25, "30 s of back-off must pass on the virtual clock"
    assert outcome.ok, outcome.error
    assert outcome.result == 42
    assert wf.CALLS["flaky"] == 3
    started = of_type(events, "StepStarted", "tool/flaky")
    failed = of_type(events, "StepFailed", "tool/flaky")
    [completed] = of_type(events, "StepCompleted", "tool/flaky")
    assert [e.data["attempt"] for e in started] == [1, 2, 3]
    assert completed.data["result"] == {"tool": "flaky", "attempt": 3, "result": 42}
    for attempt, event, retried, delay in zip(
        started[:-1], failed, started[1:], [10.0, 20.0], strict=True
    ):
        fields = event.data["error"]["fields"]
        assert fields["error_type"] == "ConnectionError" and fields["retryable"] is True
        # retry_at is decided after the attempt began and before its failure committed.
        # Not to the microsecond: other tasks' sleeps move this virtual clock while an
        # append is in flight (a PostgreSQL round trip, a commit shared with others).
        decided_at = event.data["retry_at"] - delay
        assert occurred_at(attempt) <= decided_at <= event.recorded_at
        assert retried.recorded_at >= event.data["retry_at"], "the retry waited for retry_at"
    assert not of_type(events, "StepStarted", "tool/flaky/dead-letter")


async def test_in_memory_call_backs_off_exactly_on_the_clock_it_is_given() -> None:
    """Outside a workflow the back-off sleeps on the given clock: 10 s, then 20 s."""
    wf.FAULTS["flaky"] = 2
    clock = VirtualClock(start=1000.0)
    report = await call_in_memory(wf.flaky, {"x": 5}, clock=clock)
    assert (report.value, report.attempts, report.outcome) == (10, 3, "ok")
    assert clock.now() == 1030.0


async def test_permanently_failing_tool_lands_in_the_dlq_with_every_attempt(
    runtime: phalanx.Runtime,
) -> None:
    """Exhausted retries make one DLQ entry holding all attempts, secrets redacted."""
    outcome = await runtime.run(wf.broken_flow, {}, run_id="b")
    assert outcome.ok, outcome.error
    assert wf.CALLS["broken"] == 3
    result = outcome.result
    assert result["status"] == "unavailable" and result["reason"] == "dead_lettered"
    [entry] = await DeadLetterQueue(runtime).entries()
    assert result["dead_letter_id"] == entry.id
    info = entry.to_json()
    assert info["tool"] == "broken" and info["run_id"] == "b" and info["step"] == "tool/broken"
    assert info["reason"] == "exhausted" and info["policy"] == "continue"
    assert info["arguments"] == {"query": "leases", "api_key": "[redacted]"}
    assert [a["attempt"] for a in info["attempts"]] == [1, 2, 3]
    for attempt in info["attempts"]:
        assert attempt["error_type"] == "RuntimeError"
        assert attempt["started_at"] is not None and attempt["duration_s"] >= 0
        assert "backend exploded" in attempt["message"]
        assert "Traceback" in attempt["traceback"]
    # The secret is in neither the entry nor the run's journal, however the tool echoed it.
    full = (await DeadLetterQueue(runtime).get(entry.id)).to_json()
    assert "sk-secret-123" not in repr(full)
    assert "sk-secret-123" not in repr([e.data for e in (await runtime.history("b")).events])
    # The escalation reached the tool's notifier, and its delivery is journaled.
    [escalation] = wf.ESCALATIONS
    assert escalation.kind == "dead_lettered" and escalation.dead_letter_id == entry.id
    assert full["escalations"][0]["deliveries"] == [
        {"notifier": "Recording()", "ok": True, "error": None}
    ]


async def test_fail_policy_raises_a_typed_error_naming_the_entry(runtime: phalanx.Runtime) -> None:
    """Under `fail` the workflow gets ToolDeadLetteredError with the entry id."""
    wf.FAULTS["strict"] = 10
    outcome = await runtime.run(wf.strict_flow, {}, run_id="s")
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error["type"] == "phalanx._errors.ToolDeadLetteredError"
    fields = outcome.error["fields"]
    assert fields["attempts"] == 3 and fields["error_type"] == "phalanx._errors.ToolFailed"
    entry = await DeadLetterQueue(runtime).get(fields["dead_letter_id"])
    assert entry.status == "open" and entry.data["error"]["status"] == 503


async def test_non_retryable_status_is_tried_once(runtime: phalanx.Runtime) -> None:
    """A 400 is the caller's fault: one attempt, dead-lettered as non_retryable."""
    outcome = await runtime.run(wf.picky_flow, {"x": -1}, run_id="p")
    assert outcome.ok, outcome.error
    assert wf.CALLS["picky"] == 1
    assert outcome.result["status"] == "unavailable"
    [entry] = await DeadLetterQueue(runtime).entries()
    assert entry.data["reason"] == "non_retryable" and len(entry.data["attempts"]) == 1


@pytest.mark.parametrize("bad", ["seven", None, {"nested": 1}])
async def test_invalid_arguments_never_reach_the_tool(runtime: phalanx.Runtime, bad: Any) -> None:
    """Arguments that break the schema raise before any step, attempt or breaker."""
    outcome = await runtime.run(wf.picky_flow, {"x": bad}, run_id="i")
    assert outcome.ok, outcome.error
    assert "x" in outcome.result["invalid"]
    assert wf.CALLS.get("picky", 0) == 0
    events = (await runtime.history("i")).events
    assert not of_type(events, "StepStarted")
    assert await DeadLetterQueue(runtime).entries(status=None) == []


async def test_invalid_arguments_from_a_model_are_not_a_tool_failure(
    runtime: phalanx.Runtime,
) -> None:
    """An agent's invalid call goes back to the model; the breaker counts nothing."""
    outcome = await runtime.run(wf.research_flow, {"instructions": "invalid"}, run_id="a")
    assert outcome.ok, outcome.error
    [record] = outcome.result["tool_calls"]
    assert record["outcome"] == "invalid_arguments" and record["attempts"] == 0
    assert outcome.result["tool_failures"] == []
    assert wf.CALLS.get("guarded", 0) == 0
    assert await runtime.store.read_stream("breaker:guarded") == []


async def test_agent_sees_a_typed_unavailable_result_and_reports_every_failure(
    open_rt: OpenRuntime,
) -> None:
    """The model gets 'unavailable' for a dead tool; the result lists failed and retried calls."""
    wf.FAULTS["flaky"] = 1
    async with open_rt(clock=VirtualClock()) as runtime:
        outcome = await runtime.run(wf.research_flow, {"instructions": "research"}, run_id="a")
    assert outcome.ok, outcome.error
    assert '"status": "unavailable"' in outcome.result["output"]
    broken, flaky = outcome.result["tool_calls"]
    assert broken["outcome"] == "unavailable" and broken["attempts"] == 3
    assert broken["dead_letter_id"] is not None and "RuntimeError" in broken["error"]
    assert flaky["outcome"] == "ok" and flaky["attempts"] == 2
    assert [c["tool"] for c in outcome.result["tool_failures"]] == ["broken", "flaky"]


async def test_agent_fails_when_the_tool_policy_says_fail(runtime: phalanx.Runtime) -> None:
    """A `fail` tool that fails for good fails the agent's run with the entry id."""
    wf.FAULTS["strict"] = 10
    outcome = await runtime.run(wf.research_flow, {"instructions": "strict"}, run_id="a")
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error["type"].endswith("ToolDeadLetteredError")
    assert outcome.error["fields"]["step"] == "researcher/tool/strict/1.0"


async def test_replay_after_completion_does_not_call_the_tool_again(
    open_rt: OpenRuntime,
) -> None:
    """A resumed run answers retried and dead-lettered calls from the journal."""
    wf.FAULTS["flaky"] = 1
    async with open_rt(clock=VirtualClock()) as runtime:
        first = await runtime.run(wf.research_flow, {"instructions": "research"}, run_id="a")
    calls = dict(wf.CALLS)
    async with open_rt(clock=VirtualClock()) as runtime:
        again = await runtime.resume("a")
    assert again.result == first.result
    assert calls == wf.CALLS
