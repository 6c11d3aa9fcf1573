"""Step failures: retries with back-off, and failures that replay as they first happened."""

from __future__ import annotations

import pytest

import phalanx
from tests.durable import workflows as wf
from tests.durable.helpers import crashes, journal, of_type


async def test_a_step_failing_twice_succeeds_on_its_third_attempt(
    runtime: phalanx.Runtime,
) -> None:
    """Two failures then success journal 3 StepStarted, 2 StepFailed and 1 StepCompleted."""
    wf.FAILURES["flaky"] = 2
    outcome = await runtime.run(wf.retrying, {"kind": "ValueError"}, run_id="r")

    assert outcome.ok and outcome.result == "flaky ok"
    assert wf.CALLS["flaky"] == 3
    events = await journal(runtime, "r")
    started = of_type(events, "StepStarted", "flaky")
    failed = of_type(events, "StepFailed", "flaky")
    completed = of_type(events, "StepCompleted", "flaky")
    assert [e.data["attempt"] for e in started] == [1, 2, 3]
    assert len({e.data["key"] for e in started}) == 1, "every attempt shares one key"
    assert [e.data["attempt"] for e in failed] == [1, 2]
    assert [e.data["attempt"] for e in completed] == [3]
    for event, retried, left in zip(failed, started[1:], [1, 0], strict=True):
        assert event.data["error"]["type"] == "builtins.ValueError"
        assert event.data["error"]["message"] == f"flaky failed, {left} left"
        assert retried.recorded_at >= event.data["retry_at"], "the retry waited for retry_at"
    # attempts follow each other in the journal: started, failed, started, failed, ...
    order = [e.type for e in events if e.data.get("name") == "flaky"]
    assert order == ["StepStarted", "StepFailed"] * 2 + ["StepStarted", "StepCompleted"]


@pytest.mark.parametrize("kind", ["ValueError", "Transient"])
async def test_exhausted_retries_raise_the_original_exception(
    runtime: phalanx.Runtime, kind: str
) -> None:
    """When every attempt fails the step raises the last error, of its original type."""
    wf.FAILURES["flaky"] = 5
    outcome = await runtime.run(wf.retrying, {"kind": kind}, run_id="r")

    assert outcome.result == f"caught {kind}"
    assert type(wf.CAUGHT[0]).__name__ == kind
    assert str(wf.CAUGHT[0]) == "flaky failed, 2 left"
    assert wf.CALLS["flaky"] == 3
    failed = of_type(await journal(runtime, "r"), "StepFailed", "flaky")
    assert [e.data["retry_at"] is None for e in failed] == [False, False, True]


@pytest.mark.parametrize("kind", ["BadInput", "Permanent"])
async def test_non_retryable_errors_are_not_retried(runtime: phalanx.Runtime, kind: str) -> None:
    """UserError subclasses and errors declaring retryable = False fail on the first attempt."""
    wf.FAILURES["flaky"] = 1
    outcome = await runtime.run(wf.retrying, {"kind": kind}, run_id="r")

    assert outcome.result == f"caught {kind}"
    assert type(wf.CAUGHT[0]) is getattr(wf, kind)
    assert wf.CALLS["flaky"] == 1
    events = await journal(runtime, "r")
    assert len(of_type(events, "StepStarted", "flaky")) == 1
    [failed] = of_type(events, "StepFailed", "flaky")
    assert failed.data["retry_at"] is None
    assert failed.data["error"]["type"] == f"tests.durable.workflows.{kind}"


async def test_a_failed_step_fails_the_run_with_its_error(runtime: phalanx.Runtime) -> None:
    """An uncaught step failure ends the run failed, its error journaled in RunFailed."""
    wf.FAILURES["flaky"] = 1
    outcome = await runtime.run(wf.failing_step, {"kind": "ValueError"}, run_id="r")

    assert outcome.status == "failed" and not outcome.ok
    assert outcome.error is not None
    assert outcome.error["type"] == "builtins.ValueError"
    assert outcome.error["message"] == "flaky failed, 0 left"
    [failed] = of_type(await journal(runtime, "r"), "RunFailed")
    assert failed.data["error"]["type"] == "builtins.ValueError"
    assert (await runtime.resume("r")).status == "failed", "a failed run stays failed"


@pytest.mark.parametrize("kind", ["ValueError", "Transient", "BadInput", "Permanent"])
async def test_a_failed_step_replays_as_the_same_exception(
    runtime: phalanx.Runtime, kind: str
) -> None:
    """On replay a journaled step failure re-raises as the same type with the same message."""
    wf.FAILURES["flaky"] = 5
    wf.CRASH_AT.add("after")
    await crashes(runtime.run(wf.retrying, {"kind": kind, "max_attempts": 1}, run_id="r"))

    outcome = await runtime.resume("r", force=True)

    assert outcome.result == f"caught {kind}"
    live, replayed = wf.CAUGHT
    assert type(replayed) is type(live)
    assert type(live).__name__ == kind
    assert str(replayed) == str(live)
    assert wf.CALLS["flaky"] == 1, "the failed step did not run again"


async def test_an_exception_that_cannot_be_rebuilt_replays_as_step_error(
    runtime: phalanx.Runtime,
) -> None:
    """A failure whose class needs other constructor arguments replays as StepError."""
    wf.FAILURES["flaky"] = 1
    wf.CRASH_AT.add("after")
    await crashes(runtime.run(wf.retrying, {"kind": "NeedsArgs", "max_attempts": 1}, run_id="r"))

    outcome = await runtime.resume("r", force=True)

    assert outcome.result == "caught StepError"
    live, replayed = wf.CAUGHT
    assert type(live) is wf.NeedsArgs
    assert isinstance(replayed, phalanx.StepError)
    assert replayed.error_type == "tests.durable.workflows.NeedsArgs"
    assert replayed.message == "error 418: flaky is a teapot"
    assert replayed.step == "flaky"
    assert "NeedsArgs" in str(replayed)


async def test_a_crash_between_attempts_resumes_with_the_next_attempt(
    runtime: phalanx.Runtime,
) -> None:
    """A run that crashed while a retry was pending resumes with the next attempt."""
    wf.FAILURES["flaky"] = 1
    wf.CRASH_AT.add("flaky")  # the first call crashes: attempt 1 in flight
    await crashes(runtime.run(wf.retrying, {"kind": "ValueError"}, run_id="r"))

    outcome = await runtime.resume("r", force=True)  # attempt 1 again: fails, attempt 2 ok

    assert outcome.result == "flaky ok"
    started = of_type(await journal(runtime, "r"), "StepStarted", "flaky")
    # The crashed first try left no start (it rides in its end's commit); resumed: 1, 2.
    assert [e.data["attempt"] for e in started] == [1, 2]
