"""The orchestrated saga: order, failure at every position, recovery, the dead-letter queue."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import phalanx
from phalanx import DeadLetterQueue
from phalanx.patterns import saga_views
from tests.durable.helpers import of_type, until_status
from tests.saga import workflows
from tests.saga.workflows import NAMES, effects, run_saga


def inputs(tmp_path: Path, saga: str = "pipeline", **more: Any) -> dict[str, Any]:
    return {"saga": saga, "ledger": str(tmp_path / "ledger.jsonl"), **more}


async def test_all_steps_complete_in_order(runtime: phalanx.Runtime, tmp_path: Path) -> None:
    """Without a failure every step runs once, in order, and nothing is compensated."""
    outcome = await runtime.run(run_saga, inputs(tmp_path))
    assert outcome.status == "completed"
    assert outcome.result["status"] == "completed"
    assert outcome.result["steps"] == dict.fromkeys(NAMES, "completed")
    assert effects(tmp_path / "ledger.jsonl") == [f"do:{n}" for n in NAMES]
    history = await runtime.history(outcome.run_id)
    assert [e.data["name"] for e in of_type(history.events, "StepCompleted")] == list(NAMES)
    assert not of_type(history.events, "CompensationStarted")
    [view] = saga_views(history.events)
    assert view.status == "completed"


@pytest.mark.parametrize("position", range(len(NAMES)))
async def test_failure_at_every_position_compensates_in_reverse(
    runtime: phalanx.Runtime, tmp_path: Path, position: int
) -> None:
    """A step failing undoes exactly the steps before it, last completed first."""
    failing = NAMES[position]
    done = list(NAMES[:position])
    outcome = await runtime.run(run_saga, inputs(tmp_path, fail=failing))
    result = outcome.result
    assert outcome.status == "completed"  # the workflow returned: the saga rolled back
    assert result["status"] == "compensated"
    assert result["compensations"] == done[::-1]
    assert result["failed_step"] == failing
    expected = {n: "compensated" for n in done} | {failing: "failed"}
    expected |= {n: "not_run" for n in NAMES[position + 1 :]}
    assert result["steps"] == expected
    ledger = effects(tmp_path / "ledger.jsonl")
    assert ledger == [f"do:{n}" for n in done] + [f"undo:{n}" for n in done[::-1]]
    history = await runtime.history(outcome.run_id)
    started = [e.data["name"] for e in of_type(history.events, "CompensationStarted")]
    completed = [e.data["name"] for e in of_type(history.events, "CompensationCompleted")]
    assert started == completed == done[::-1]
    [view] = saga_views(history.events)
    assert (view.status, view.compensations, view.steps) == ("compensated", done[::-1], expected)


async def test_forward_recovery_reruns_an_earlier_step_then_succeeds(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A failed step re-runs the earlier one with the failure as input, and goes on."""
    outcome = await runtime.run(
        run_saga, inputs(tmp_path, saga="recovering", fail="c", fail_times=1)
    )
    assert outcome.result["status"] == "completed"
    lines = workflows.read(tmp_path / "ledger.jsonl")
    assert [e.get("do") or f"!{e['failed']}" for e in lines] == ["a", "b", "!c", "b", "c", "d"]
    assert [e.get("revised") for e in lines if e.get("do") in ("b", "c")] == [False, True, True]
    history = await runtime.history(outcome.run_id)
    [recovering] = of_type(history.events, "SagaRecovering")
    assert (recovering.data["step"], recovering.data["rerun"], recovering.data["round"]) == (
        "c",
        "b",
        1,
    )


async def test_forward_recovery_is_bounded_in_rounds(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """After max_rounds re-runs the saga compensates, undoing each step once."""
    outcome = await runtime.run(run_saga, inputs(tmp_path, saga="recovering", fail="c"))
    result = outcome.result
    assert result["status"] == "compensated"
    assert result["compensations"] == ["b", "a"]
    history = await runtime.history(outcome.run_id)
    assert [e.data["round"] for e in of_type(history.events, "SagaRecovering")] == [1, 2]
    ledger = effects(tmp_path / "ledger.jsonl")
    assert ledger == ["do:a", "do:b", "do:b", "do:b", "undo:b", "undo:a"]


async def test_a_compensation_retried_by_its_policy_then_succeeding(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A compensation failing twice is retried (each attempt journaled) and completes."""
    outcome = await runtime.run(run_saga, inputs(tmp_path, fail="c", undo={"b": 2}))
    assert outcome.result["status"] == "compensated"
    history = await runtime.history(outcome.run_id)
    failed = of_type(history.events, "StepFailed", "compensate/b")
    assert [e.data["attempt"] for e in failed] == [1, 2]
    assert not of_type(history.events, "CompensationFailed")


@pytest.mark.parametrize("mode", ["always", "non_retryable"])
async def test_a_failing_compensation_goes_to_the_dlq_and_resumes_after_resolve(
    runtime: phalanx.Runtime, tmp_path: Path, mode: str
) -> None:
    """A compensation failing for good is dead-lettered; the saga waits, then resumes."""
    given = inputs(tmp_path, fail="c", undo={"b": mode})
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(run_saga, given, run_id="s1"))
        await until_status(runtime, "s1", "waiting")
        history = await runtime.history("s1")
        [failed] = of_type(history.events, "CompensationFailed")
        assert failed.data["name"] == "b"
        [view] = saga_views(history.events)
        assert view.status == "waiting"
        assert view.waiting_on == {"b": failed.data["dead_letter_id"]}
        queue = DeadLetterQueue(runtime)
        [entry] = await queue.entries(run_id="s1")
        assert entry.id == failed.data["dead_letter_id"]
        reason = "non_retryable" if mode == "non_retryable" else "exhausted"
        assert entry.data["reason"] == reason
        assert effects(tmp_path / "ledger.jsonl")[-1] == "do:b"  # a waits until b is undone
        await queue.resolve(entry.id, "undone by hand", reason="test")
    outcome = task.result()
    assert outcome.result["status"] == "compensated"
    assert outcome.result["compensations"] == ["b", "a"]
    history = await runtime.history("s1")
    [resolved] = of_type(history.events, "CompensationCompleted", "b")
    assert resolved.data["dead_letter_id"] == entry.id
    assert effects(tmp_path / "ledger.jsonl")[-1] == "undo:a"


async def test_a_hanging_compensation_times_out_per_attempt_and_waits_in_the_dlq(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """compensation_timeout bounds each attempt: a hung undo is retried, then dead-lettered."""
    given = inputs(tmp_path, saga="timed", fail="c", undo={"b": "hang"})
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(run_saga, given, run_id="s7"))
        await until_status(runtime, "s7", "waiting")
        history = await runtime.history("s7")
        [failed] = of_type(history.events, "CompensationFailed")
        assert failed.data["name"] == "b"
        attempts = of_type(history.events, "StepFailed", "compensate/b")
        assert attempts and all("TimeoutError" in str(e.data["error"]) for e in attempts)
        hung = [e for e in workflows.read(tmp_path / "ledger.jsonl") if e.get("undo_hung")]
        assert len(hung) == len(attempts)
        queue = DeadLetterQueue(runtime)
        [entry] = await queue.entries(run_id="s7")
        await queue.resolve(entry.id, "undone by hand", reason="test")
    outcome = task.result()
    assert outcome.result["status"] == "compensated"
    assert outcome.result["compensations"] == ["b", "a"]


async def test_continue_policy_undoes_the_rest_before_waiting(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """on_compensation_failure=continue compensates a before waiting on b's entry."""
    given = inputs(tmp_path, saga="continuing", fail="c", undo={"b": "always"})
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(run_saga, given, run_id="s2"))
        await until_status(runtime, "s2", "waiting")
        assert effects(tmp_path / "ledger.jsonl")[-1] == "undo:a"
        queue = DeadLetterQueue(runtime)
        [entry] = await queue.entries(run_id="s2")
        await queue.discard(entry.id, reason="nothing left to undo")
    outcome = task.result()
    assert outcome.result["status"] == "failed"
    assert outcome.result["abandoned"] == ["b"]
    assert outcome.result["compensations"] == ["a"]
    history = await runtime.history("s2")
    assert [e.data["name"] for e in of_type(history.events, "CompensationAbandoned")] == ["b"]
    [view] = saga_views(history.events)
    assert view.status == "failed"


async def test_parallel_compensation_undoes_every_step(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """compensation_order=parallel undoes every completed step, each once."""
    given = inputs(tmp_path, saga="parallel", fail="d", undo={"a": 1})
    outcome = await runtime.run(run_saga, given)
    result = outcome.result
    assert result["status"] == "compensated"
    assert sorted(result["compensations"]) == ["a", "b", "c"]
    assert result["compensations"][-1] == "a"  # failed at once, then retried on its own
    undone = [e for e in effects(tmp_path / "ledger.jsonl") if e.startswith("undo")]
    assert sorted(undone) == ["undo:a", "undo:b", "undo:c"]


async def until_ledger(ledger: Path, entry: dict[str, Any]) -> None:
    """Poll the ledger file until it holds `entry`."""
    async with asyncio.timeout(20):
        while entry not in workflows.read(ledger):  # noqa: ASYNC110 - another thread writes the file
            await asyncio.sleep(0.01)


async def test_cancel_while_compensating_does_not_cut_it_short(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A cancel arriving mid-compensation waits for it; the run then ends cancelled."""
    given = inputs(tmp_path, fail="c", undo={"b": "slow", "a": "slow"})
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(run_saga, given, run_id="s3"))
        await until_ledger(tmp_path / "ledger.jsonl", {"undo_started": "b"})
        assert await runtime.cancel("s3", reason="operator")
    outcome = task.result()
    assert outcome.status == "cancelled"
    assert effects(tmp_path / "ledger.jsonl") == ["do:a", "do:b", "undo:b", "undo:a"]
    [view] = saga_views((await runtime.history("s3")).events)
    assert (view.status, view.compensations) == ("compensated", ["b", "a"])


async def test_a_deadline_passing_while_compensating_does_not_cut_it_short(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """The run's deadline expiring mid-compensation waits for it to finish."""
    # How long this machine takes to reach the compensation, measured now: the deadline
    # then falls a quarter second into b's half-second undo.
    (tmp_path / "probe").mkdir()
    probe = await runtime.run(run_saga, inputs(tmp_path / "probe", fail="c"), run_id="probe")
    assert probe.result["compensations"] == ["b", "a"]
    events = (await runtime.history(probe.run_id)).events
    reach = of_type(events, "SagaCompensating")[0].recorded_at - events[0].recorded_at
    given = inputs(tmp_path, fail="c", undo={"b": "slow", "a": "slow"})
    deadline_at = runtime.clock.now() + reach + 0.25
    outcome = await runtime.run(run_saga, given, run_id="s4", deadline_at=deadline_at)
    assert outcome.status == "cancelled"
    assert "deadline" in str(outcome.error)
    # Wherever the deadline fell (a loaded machine may be slower this time), every step
    # that was done is undone, once, in reverse.
    ledger = effects(tmp_path / "ledger.jsonl")
    done = [e.removeprefix("do:") for e in ledger if e.startswith("do:")]
    assert ledger == [f"do:{n}" for n in done] + [f"undo:{n}" for n in reversed(done)]
    views = saga_views((await runtime.history("s4")).events)
    if not views:  # the deadline passed before the saga even began: nothing to undo
        assert ledger == []
        return
    [view] = views
    assert (view.status, view.compensations) == ("compensated", done[::-1])


async def test_a_cancel_during_the_steps_compensates_what_completed(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """Cancelling while a step runs undoes the completed steps, then ends cancelled."""
    given = inputs(tmp_path, slow="c")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(run_saga, given, run_id="s5"))
        await until_ledger(tmp_path / "ledger.jsonl", {"started": "c"})
        assert await runtime.cancel("s5")
    outcome = task.result()
    assert outcome.status == "cancelled"
    history = await runtime.history("s5")
    [view] = saga_views(history.events)
    assert (view.status, view.compensations) == ("compensated", ["b", "a"])
    assert view.steps["d"] == "not_run"
    assert of_type(history.events, "SagaCompensating")[0].data["error"]["type"] == "Cancelled"


async def test_stopping_the_runner_while_a_saga_waits_leaves_it_resumable(
    open_rt: Any, tmp_path: Path
) -> None:
    """Ctrl-C (a cancel from outside) is not held back by the shield: the run stays
    resumable, waiting, and finishes once resumed and resolved."""
    given = inputs(tmp_path, fail="c", undo={"b": "always"})
    async with open_rt() as runtime:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(runtime.run(run_saga, given, run_id="s6"))
            await until_status(runtime, "s6", "waiting")
            task.cancel()  # the runner stops from outside; the saga must let go
        assert task.cancelled()
        history = await runtime.history("s6")
        assert history.status == "waiting"
        assert of_type(history.events, "RunInterrupted")
        [entry] = await DeadLetterQueue(runtime).entries(run_id="s6")
        await DeadLetterQueue(runtime).resolve(entry.id, "by hand", reason="test")
        outcome = await runtime.resume("s6")
    assert outcome.result["status"] == "compensated"
    assert outcome.result["compensations"] == ["b", "a"]
    assert effects(tmp_path / "ledger.jsonl")[-1] == "undo:a"
