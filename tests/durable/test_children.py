"""Child runs: linked journals, results and failures flowing back, resumed with the parent."""

from __future__ import annotations

import phalanx
from tests.durable import workflows as wf
from tests.durable.helpers import crashes, journal, of_type, status


async def test_a_child_result_flows_back_to_its_parent(runtime: phalanx.Runtime) -> None:
    """ctx.child runs the child to completion and returns its result to the parent."""
    outcome = await runtime.run(wf.parent, {"n": 5}, run_id="p")

    assert outcome.ok and outcome.result == 1007
    runs = {r.run_id: r for r in await runtime.runs()}
    assert runs["p"].parent_run_id is None
    assert runs["p.2"].parent_run_id == "p"
    assert runs["p.2"].status == "completed"
    assert runs["p.2"].workflow == "tests.durable.workflows:child_steps"
    child = await runtime.history("p.2")
    assert child.inputs == {"n": 5} and child.result == 7
    [done] = of_type(await journal(runtime, "p"), "ChildCompleted")
    assert done.data["child_run_id"] == "p.2" and done.data["result"] == 7


async def test_a_parent_crashed_during_its_child_resumes_without_rerunning_steps(
    runtime: phalanx.Runtime,
) -> None:
    """Resuming a parent that crashed mid-child resumes the child; completed steps stay done."""
    wf.CRASH_AT.add("c2")
    await crashes(runtime.run(wf.parent, {"n": 5}, run_id="p"))
    assert await status(runtime, "p") == "running"
    assert await status(runtime, "p.2") == "running"

    outcome = await runtime.resume("p", force=True)

    assert outcome.ok and outcome.result == 1007
    assert wf.CALLS == {"p1": 1, "c1": 1, "c2": 2, "p2": 1}
    assert await status(runtime, "p.2") == "completed"
    assert len(of_type(await journal(runtime, "p"), "ChildStarted")) == 1
    child_events = await journal(runtime, "p.2")
    assert len(of_type(child_events, "RunStarted")) == 1
    assert len(of_type(child_events, "StepCompleted", "c1")) == 1


async def test_a_child_lease_left_by_a_runner_that_died_before_run_started_is_taken_over(
    runtime: phalanx.Runtime,
) -> None:
    """A child lease held over an empty stream (its starter died) is taken over on resume."""
    wf.CRASH_AT.add("p1")
    await crashes(runtime.run(wf.parent, {"n": 5}, run_id="p"))
    # The dead runner's last act: the child's lease, taken before its RunStarted.
    await runtime.store.acquire_lease("run:p.2", "dead-runner", 60.0)

    outcome = await runtime.resume("p", force=True)

    assert outcome.ok and outcome.result == 1007, outcome.error
    child_events = await journal(runtime, "p.2")
    assert len(of_type(child_events, "RunStarted")) == 1
    assert (child_events[0].epoch or 0) >= 2  # the dead runner's epoch is fenced


async def test_without_force_a_childs_dead_lease_is_taken_over_too(
    runtime: phalanx.Runtime,
) -> None:
    """Without force too: holding the parent's lease proves the child's is a dead one."""
    wf.CRASH_AT.add("p1")
    await crashes(runtime.run(wf.parent, {"n": 5}, run_id="p"))
    await runtime.store.acquire_lease("run:p.2", "dead-runner", 60.0)

    outcome = await runtime.resume("p")

    assert outcome.ok and outcome.result == 1007, outcome.error
    assert await status(runtime, "p.2") == "completed"


async def test_a_completed_child_is_replayed_not_rerun(runtime: phalanx.Runtime) -> None:
    """A child that completed before the parent crashed returns its journaled result."""
    wf.CRASH_AT.add("p2")
    await crashes(runtime.run(wf.parent, {"n": 5}, run_id="p"))

    outcome = await runtime.resume("p", force=True)

    assert outcome.result == 1007
    assert wf.CALLS == {"p1": 1, "c1": 1, "c2": 1, "p2": 2}


async def test_a_failed_child_raises_run_failed_error_in_the_parent(
    runtime: phalanx.Runtime,
) -> None:
    """A child that fails raises RunFailedError in its parent, naming the child and error."""
    wf.FAILURES["bad"] = 1
    outcome = await runtime.run(wf.parent_of_broken, run_id="p")

    assert outcome.ok
    assert outcome.result == {
        "run_id": "p.1",
        "status": "failed",
        "error_type": "tests.durable.workflows.Permanent",
    }
    assert isinstance(wf.CAUGHT[0], phalanx.RunFailedError)
    assert "bad failed for good" in str(wf.CAUGHT[0])
    assert await status(runtime, "p.1") == "failed"
    assert of_type(await journal(runtime, "p"), "ChildFailed")
