"""Misuse and bad data: typed errors that say what went wrong."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

import phalanx
from phalanx.durable import load_workflow
from tests.durable import workflows as wf
from tests.durable.helpers import journal, of_type

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


async def test_resuming_an_unknown_run_is_an_error(runtime: phalanx.Runtime) -> None:
    """resume (and history) of a run id the store has never seen raises UnknownRunError."""
    with pytest.raises(phalanx.UnknownRunError) as info:
        await runtime.resume("ghost")
    assert info.value.run_id == "ghost" and "phalanx runs" in str(info.value)
    with pytest.raises(phalanx.UnknownRunError):
        await runtime.history("ghost")


async def test_starting_a_run_under_a_taken_id_is_an_error(runtime: phalanx.Runtime) -> None:
    """run with the id of an existing run raises RunExistsError and leaves that run alone."""
    await runtime.run(wf.pipeline, {"n": 0}, run_id="r")
    with pytest.raises(phalanx.RunExistsError) as info:
        await runtime.run(wf.pipeline, {"n": 9}, run_id="r")
    assert "phalanx resume r" in str(info.value)
    history = await runtime.history("r")
    assert history.inputs == {"n": 0} and history.status == "completed"
    assert wf.CALLS == {"a": 1, "b": 1, "c": 1}


async def test_a_result_that_is_not_json_fails_the_step(runtime: phalanx.Runtime) -> None:
    """A step result that is not JSON raises EventDataError and is journaled as StepFailed."""
    outcome = await runtime.run(wf.unjournalable, run_id="r")

    assert outcome.result == "refused"
    assert isinstance(wf.CAUGHT[0], phalanx.EventDataError)
    assert "not JSON-serialisable" in str(wf.CAUGHT[0])
    events = await journal(runtime, "r")
    [failed] = of_type(events, "StepFailed", "bad")
    assert failed.data["error"]["type"] == "phalanx._errors.EventDataError"
    assert failed.data["retry_at"] is None
    assert not of_type(events, "StepCompleted", "bad")


async def test_a_workflow_result_that_is_not_json_fails_the_run(
    runtime: phalanx.Runtime,
) -> None:
    """A workflow returning a non-JSON value ends failed with EventDataError."""
    outcome = await runtime.run(wf.returns_a_set, run_id="r")
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["type"] == "phalanx._errors.EventDataError"


async def test_an_undecorated_function_is_not_a_workflow(runtime: phalanx.Runtime) -> None:
    """Running or loading a function without @phalanx.workflow raises WorkflowImportError."""
    with pytest.raises(phalanx.WorkflowImportError, match="not decorated"):
        await runtime.run(wf.undecorated)  # type: ignore[arg-type]
    with pytest.raises(phalanx.WorkflowImportError, match="not decorated"):
        load_workflow("tests.durable.workflows:undecorated")
    with pytest.raises(phalanx.WorkflowImportError, match="has no"):
        load_workflow("tests.durable.workflows:missing")
    with pytest.raises(phalanx.WorkflowImportError, match="ModuleNotFoundError"):
        load_workflow("tests.durable.no_such_module:wf")
    assert load_workflow("tests.durable.workflows:pipeline") is wf.pipeline
    assert await runtime.runs() == []


async def test_a_journaled_workflow_that_no_longer_loads_cannot_resume(
    runtime: phalanx.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming a run whose workflow is gone from its module raises WorkflowImportError."""
    wf.CRASH_AT.add("c")
    with pytest.raises(BaseException):  # noqa: B017  # the simulated crash
        await runtime.run(wf.pipeline, {"n": 0}, run_id="r")
    monkeypatch.delattr(wf, "pipeline")
    with pytest.raises(phalanx.WorkflowImportError, match="pipeline"):
        await runtime.resume("r", force=True)


async def test_inputs_that_are_not_json_are_refused_without_a_trace(
    runtime: phalanx.Runtime, open_rt: OpenRuntime
) -> None:
    """Non-JSON inputs raise EventDataError; the run id stays free, even for another owner."""
    with pytest.raises(phalanx.EventDataError):
        await runtime.run(wf.pipeline, {"n": object()}, run_id="r")
    assert await runtime.runs() == []
    async with open_rt() as other:
        outcome = await other.run(wf.pipeline, {"n": 1}, run_id="r")
    assert outcome.ok
