"""Fan-out (`phalanx.gather`): explicit per-branch outcomes under a completion policy.

Each branch is a child run; the tests drive real runs on a SQLite journal with a
hanging, a failing and a slow branch, and read what happened back from the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import phalanx
from tests.patterns import workflows as wf

TERMINAL = ("completed", "failed", "cancelled")
#: How far a measured duration may stray from the deadline on an idle machine.
SLACK = 0.3

HANG = {"kind": "hang", "label": "hang"}
FAIL = {"kind": "fail", "label": "fail", "message": "boom"}
SLOW = {"kind": "answer", "label": "slow", "value": "from slow", "delay": 0.3}
TRIO = {"hang": HANG, "fail": FAIL, "slow": SLOW}


# -- helpers --------------------------------------------------------------------------


async def events(runtime: phalanx.Runtime, run_id: str) -> list[phalanx.Event]:
    """Every event of the run's journal."""
    return (await runtime.history(run_id)).events


def of_type(journal: list[phalanx.Event], event_type: str) -> list[phalanx.Event]:
    """The events of one type."""
    return [e for e in journal if e.type == event_type]


async def statuses(runtime: phalanx.Runtime) -> dict[str, str]:
    """Every run's status, by run id, as `runtime.runs()` reports it."""
    return {r.run_id: r.status for r in await runtime.runs()}


async def assert_all_terminal(runtime: phalanx.Runtime) -> None:
    """No run (parent, branch or grandchild) is left running or waiting."""
    left = {r: s for r, s in (await statuses(runtime)).items() if s not in TERMINAL}
    assert left == {}, f"runs left unfinished: {left}"


async def first_event(runtime: phalanx.Runtime, run_id: str, event_type: str) -> None:
    """Wait, by tailing the store, until the run journals an event of `event_type`."""
    stream = f"run:{run_id}"
    async with contextlib.aclosing(runtime.store.subscribe()) as tail:
        async for event in tail:
            if event.stream_id == stream and event.type == event_type:
                return


async def steps_started(runtime: phalanx.Runtime, run_id: str, branches: int) -> None:
    """Wait until `branches` child runs of `run_id` have journaled a `StepStarted`."""
    prefix, started = f"run:{run_id}.", set()
    async with contextlib.aclosing(runtime.store.subscribe()) as tail:
        async for event in tail:
            if event.stream_id.startswith(prefix) and event.type == "StepStarted":
                started.add(event.stream_id)
                if len(started) == branches:
                    return


def holds(error: BaseException, cls: type[BaseException]) -> bool:
    """Whether `error` is `cls` or an exception group holding one, at any depth."""
    if isinstance(error, cls):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(holds(inner, cls) for inner in error.exceptions)
    return False


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A fan-out's JSON result without what differs between two runs (times, run ids)."""
    return {
        **result,
        "branches": {
            name: {k: v for k, v in branch.items() if k not in ("duration_s", "run_id", "stalled")}
            for name, branch in result["branches"].items()
        },
    }


async def fan_out(runtime: phalanx.Runtime, run_id: str = "p", **inputs: Any) -> phalanx.RunOutcome:
    """Run the `fan_out` parent workflow to its outcome."""
    return await runtime.run(wf.fan_out, inputs, run_id=run_id)


@pytest.fixture
async def slack(runtime: phalanx.Runtime) -> float:
    """How far a measured duration may stray from the deadline on this machine, now.

    A fan-out's durations include starting and journaling its branches' runs, which
    takes far longer on a loaded machine (CI runs the suite on xdist workers on two
    cores, against both backends). A fan-out of three instant branches on the same
    runtime measures that overhead just before the test; the slack grows with it, so
    the bounds stay tight on an idle machine and still tell a deadline from a delay.
    """
    instant = {"kind": "answer", "value": None}
    branches = {name: {**instant, "label": name} for name in ("b1", "b2", "b3")}
    outcome = await fan_out(runtime, "slack-baseline", branches=branches, deadline=30.0)
    assert outcome.ok, outcome.error
    overhead = max(b["duration_s"] for b in outcome.result["branches"].values())
    wf.reset()  # the baseline's branches are no part of the test
    return SLACK + 3 * overhead


# -- policies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "described", "hang_status", "satisfied"),
    [
        ("any", "any", "cancelled", True),
        ("quorum:2", "quorum(2 of 3)", "timed_out", False),
        ("best_effort", "best_effort", "timed_out", True),
    ],
)
async def test_every_policy_reports_each_branch_of_a_hang_a_failure_and_a_slow_answer(
    runtime: phalanx.Runtime,
    slack: float,
    policy: str,
    described: str,
    hang_status: str,
    satisfied: bool,
) -> None:
    """Each policy ends with one explicit, journaled outcome per branch and a partial result.

    (`all` is out of reach at the failure and ends there: see the tests after this one.)
    """
    deadline = 1.0
    outcome = await fan_out(runtime, branches=TRIO, policy=policy, deadline=deadline)

    assert outcome.ok
    result = outcome.result
    branches = result["branches"]
    assert result["policy"] == described
    assert result["partial"] is True
    assert result["satisfied"] is satisfied
    assert result["missing"] == ["hang", "fail"]
    assert result["values"] is None  # nobody accepted the partial result

    assert branches["slow"]["status"] == "succeeded"
    assert branches["slow"]["value"] == "from slow"
    assert branches["slow"]["duration_s"] == pytest.approx(0.3, abs=slack)
    assert branches["fail"]["status"] == "failed"
    assert branches["fail"]["error"] == "ValueError: boom"
    assert branches["fail"]["value"] is None
    hang = branches["hang"]
    assert hang["status"] == hang_status
    assert hang["value"] is None
    if hang_status == "timed_out":
        assert hang["duration_s"] == pytest.approx(deadline, abs=slack)
        assert hang["duration_s"] >= deadline
        assert "deadline" in hang["error"]
    else:
        # `any` was complete once `slow` answered: `hang` was cancelled then, early.
        assert hang["duration_s"] < deadline
        assert hang["duration_s"] == pytest.approx(branches["slow"]["duration_s"], abs=slack)
        assert hang["error"] == f"Cancelled: fan-out 'fan' complete ({policy})"

    # Every outcome is in the journal, as it was returned.
    journal = await events(runtime, "p")
    [started] = of_type(journal, "GatherStarted")
    assert started.data["policy"] == described
    assert set(started.data["branches"]) == {"hang", "fail", "slow"}
    finished = {e.data["branch"]: e.data for e in of_type(journal, "BranchFinished")}
    assert set(finished) == {"hang", "fail", "slow"}
    for name, branch in branches.items():
        assert finished[name]["status"] == branch["status"]
        assert finished[name]["error"] == branch["error"]
    [completed] = of_type(journal, "GatherCompleted")
    assert completed.data["statuses"] == {n: b["status"] for n, b in branches.items()}
    assert completed.data["satisfied"] is satisfied and completed.data["partial"] is True

    # Each branch ran once as a child run of the parent, and none is left running.
    assert wf.LEDGER == {"hang": 1, "fail": 1, "slow": 1}
    runs = await statuses(runtime)
    assert runs[started.data["branches"]["hang"]] == "cancelled"
    assert runs[started.data["branches"]["fail"]] == "failed"
    assert runs[started.data["branches"]["slow"]] == "completed"
    parents = {r.run_id: r.parent_run_id for r in await runtime.runs()}
    assert all(parents[run_id] == "p" for run_id in started.data["branches"].values())
    await assert_all_terminal(runtime)


async def test_reading_the_values_of_a_partial_result_raises_partial_result_error(
    runtime: phalanx.Runtime,
) -> None:
    """`values` of a partial, unaccepted result raises PartialResultError naming what is missing."""
    await fan_out(runtime, branches=TRIO, policy="any", deadline=2.0)

    [caught] = wf.CAUGHT
    assert isinstance(caught, phalanx.PartialResultError)
    assert caught.fan_out == "fan" and caught.missing == ["hang", "fail"]
    assert "accept_partial" in str(caught)
    [result] = wf.RESULTS
    assert isinstance(result, phalanx.FanOutResult)
    assert result.partial and result.accepted_reason is None
    with pytest.raises(phalanx.PartialResultError):
        _ = result.values
    assert {n: o.status for n, o in result.outcomes.items()} == {
        "hang": "cancelled",
        "fail": "failed",
        "slow": "succeeded",
    }
    assert isinstance(result.outcomes["slow"], phalanx.BranchOutcome)
    assert not of_type(await events(runtime, "p"), "DecisionRecorded")


async def test_accepting_a_partial_result_is_a_journaled_decision_then_values_work(
    runtime: phalanx.Runtime,
) -> None:
    """accept_partial journals DecisionRecorded (reason, missing, policy); then values work."""
    outcome = await fan_out(runtime, branches=TRIO, policy="any", deadline=2.0, accept=True)

    assert outcome.result["values"] == {"slow": "from slow"}
    assert outcome.result["accepted_reason"] == "good enough for the test"
    [result] = wf.RESULTS
    assert result.values == {"slow": "from slow"}
    journal = await events(runtime, "p")
    [decision] = of_type(journal, "DecisionRecorded")
    assert decision.data["name"] == "accept_partial:fan"
    assert decision.data["reason"] == "good enough for the test"
    assert decision.data["missing"] == ["hang", "fail"]
    assert decision.data["policy"] == "any"
    [completed] = of_type(journal, "GatherCompleted")
    assert completed.seq < decision.seq


async def test_a_fan_out_where_every_branch_answers_is_whole(runtime: phalanx.Runtime) -> None:
    """All branches succeed: not partial, satisfied, values readable without a decision."""
    branches = {
        "a": {"kind": "answer", "label": "a", "value": 1},
        "b": {"kind": "answer", "label": "b", "value": 2, "delay": 0.1},
    }
    outcome = await fan_out(runtime, branches=branches, deadline=2.0)

    assert outcome.result["partial"] is False and outcome.result["satisfied"] is True
    assert outcome.result["values"] == {"a": 1, "b": 2}
    assert outcome.result["missing"] == []
    assert wf.CAUGHT == []
    assert not of_type(await events(runtime, "p"), "DecisionRecorded")


async def test_a_quorum_completes_early_and_cancels_the_branches_still_running(
    runtime: phalanx.Runtime,
) -> None:
    """quorum(2 of 3) stops at the second success: the hanging branch is cancelled, early."""
    branches = {
        "a": {"kind": "answer", "label": "a", "value": 1},
        "b": SLOW,
        "hang": HANG,
    }
    outcome = await fan_out(runtime, branches=branches, policy="quorum:2", deadline=3.0)

    result = outcome.result
    assert result["satisfied"] is True and result["partial"] is True
    assert {n: b["status"] for n, b in result["branches"].items()} == {
        "a": "succeeded",
        "b": "succeeded",
        "hang": "cancelled",
    }
    assert result["branches"]["hang"]["duration_s"] < 1.0
    assert "complete (quorum)" in result["branches"]["hang"]["error"]
    [completed] = of_type(await events(runtime, "p"), "GatherCompleted")
    assert completed.data["elapsed_s"] < 1.0
    await assert_all_terminal(runtime)


async def test_a_quorum_gives_up_as_soon_as_it_is_out_of_reach(
    runtime: phalanx.Runtime, slack: float
) -> None:
    """Two failures put quorum(2 of 3) out of reach: it ends at the second, the rest cancelled."""
    second_at = 0.5
    branches = {
        "f1": {"kind": "fail", "label": "f1", "message": "first"},
        "f2": {"kind": "fail", "label": "f2", "message": "second", "delay": second_at},
        "hang": HANG,
    }
    outcome = await fan_out(runtime, branches=branches, policy="quorum:2", deadline=30.0)

    result = outcome.result
    assert result["satisfied"] is False
    assert {n: b["status"] for n, b in result["branches"].items()} == {
        "f1": "failed",
        "f2": "failed",
        "hang": "cancelled",
    }
    assert result["branches"]["f2"]["error"] == "ValueError: second"
    hang = result["branches"]["hang"]
    assert hang["error"] == (
        "Cancelled: fan-out 'fan' can no longer meet its policy (quorum(2 of 3))"
    )
    # Still waiting after the first failure (one more success would do), not after the second.
    [completed] = of_type(await events(runtime, "p"), "GatherCompleted")
    assert second_at <= completed.data["elapsed_s"] < second_at + slack
    assert second_at <= hang["duration_s"] < second_at + slack
    await assert_all_terminal(runtime)


async def test_policy_all_ends_right_after_the_first_failure_and_cancels_the_rest(
    runtime: phalanx.Runtime,
    slack: float,
) -> None:
    """`all` is out of reach once a branch fails: it ends then, not at a hung branch's deadline."""
    failed_at = 0.3
    branches = {
        "fail": {**FAIL, "delay": failed_at},
        "hang": HANG,
        "slow": {**SLOW, "delay": 5.0},
    }
    outcome = await fan_out(runtime, branches=branches, policy="all", deadline=30.0)

    result = outcome.result
    assert result["satisfied"] is False and result["partial"] is True
    assert {n: b["status"] for n, b in result["branches"].items()} == {
        "fail": "failed",
        "hang": "cancelled",
        "slow": "cancelled",
    }
    reason = "fan-out 'fan' can no longer meet its policy (all)"
    for name in ("hang", "slow"):
        branch = result["branches"][name]
        assert branch["error"] == f"Cancelled: {reason}"
        assert failed_at <= branch["duration_s"] < failed_at + slack
        # Each branch's own run journaled its cancel, with the reason.
        history = await runtime.history(branch["run_id"])
        assert history.status == "cancelled"
        assert of_type(history.events, "RunCancelled")[0].data["reason"] == reason
    journal = await events(runtime, "p")
    [completed] = of_type(journal, "GatherCompleted")
    assert failed_at <= completed.data["elapsed_s"] < failed_at + slack
    assert completed.data["statuses"] == {n: b["status"] for n, b in result["branches"].items()}
    assert wf.LEDGER == {"fail": 1, "hang": 1, "slow": 1}
    await assert_all_terminal(runtime)


async def test_policy_all_with_only_a_hung_branch_missing_waits_for_the_deadline(
    runtime: phalanx.Runtime,
    slack: float,
) -> None:
    """`all` can still be met while the hung branch runs: it is timed out at the deadline."""
    deadline = 0.8
    branches = {"a": {"kind": "answer", "label": "a", "value": 1}, "hang": HANG}
    outcome = await fan_out(runtime, branches=branches, policy="all", deadline=deadline)

    result = outcome.result
    assert result["branches"]["a"]["status"] == "succeeded"
    hang = result["branches"]["hang"]
    assert hang["status"] == "timed_out"
    assert hang["error"] == f"no answer within the deadline ({deadline:.1f}s)"
    assert hang["duration_s"] == pytest.approx(deadline, abs=slack)
    await assert_all_terminal(runtime)


def test_a_policy_states_how_many_successes_it_needs() -> None:
    """Policy.needed/describe/done follow the declared kind; a quorum needs k >= 1."""
    assert phalanx.Policy.all().needed(3) == 3
    assert phalanx.Policy.any().needed(3) == 1
    assert phalanx.Policy.best_effort().needed(3) == 1
    assert phalanx.Policy.quorum(2).describe(3) == "quorum(2 of 3)"
    assert phalanx.Policy.quorum(2).done(succeeded=2, finished=2, total=3)
    assert phalanx.Policy.quorum(2).done(succeeded=0, finished=2, total=3)
    assert not phalanx.Policy.quorum(2).done(succeeded=1, finished=2, total=3)
    assert not phalanx.Policy.best_effort().done(succeeded=2, finished=2, total=3)
    with pytest.raises(ValueError, match="k >= 1"):
        phalanx.Policy.quorum(0)


# -- stalls, deadlines, late answers --------------------------------------------------


async def test_a_silent_branch_is_journaled_as_stalled_before_the_deadline(
    runtime: phalanx.Runtime,
) -> None:
    """With heartbeat_timeout < deadline, a branch silent that long gets BranchStalled, early."""
    branches = {"hang": HANG, "quick": {"kind": "answer", "label": "quick", "value": 1}}
    outcome = await fan_out(runtime, branches=branches, deadline=1.5, heartbeat=0.3)

    journal = await events(runtime, "p")
    [started] = of_type(journal, "GatherStarted")
    [stall] = of_type(journal, "BranchStalled")
    assert stall.data["branch"] == "hang"
    assert stall.data["silent_for"] > 0.3
    assert stall.recorded_at < started.data["deadline_at"] - 0.5
    [finished] = [e for e in of_type(journal, "BranchFinished") if e.data["branch"] == "hang"]
    assert stall.seq < finished.seq
    assert finished.data["status"] == "timed_out" and finished.data["stalled"] is True
    assert outcome.result["branches"]["hang"]["stalled"] is True
    assert outcome.result["branches"]["quick"]["stalled"] is False


async def test_the_fan_out_deadline_reaches_a_grandchild(
    runtime: phalanx.Runtime, slack: float
) -> None:
    """A branch's own child run gets the fan-out's deadline and is cancelled when it passes."""
    branches = {"nested": {"kind": "nested", "label": "n"}}
    run_deadline_at = runtime.clock.now() + 30.0
    outcome = await runtime.run(
        wf.fan_out,
        {"branches": branches, "deadline": 0.8},
        run_id="p",
        deadline_at=run_deadline_at,
    )

    branch = outcome.result["branches"]["nested"]
    assert branch["status"] == "timed_out"
    assert branch["duration_s"] == pytest.approx(0.8, abs=slack)
    [started] = of_type(await events(runtime, "p"), "GatherStarted")
    deadline_at = started.data["deadline_at"]
    assert deadline_at < run_deadline_at  # the earlier of the two
    branch_id = started.data["branches"]["nested"]
    [grandchild_id] = [r.run_id for r in await runtime.runs() if r.parent_run_id == branch_id]
    for run_id in (branch_id, grandchild_id):
        history = await runtime.history(run_id)
        assert history.deadline_at == deadline_at
        assert of_type(history.events, "RunStarted")[0].data["deadline_at"] == deadline_at
        assert history.status == "cancelled"
        assert "deadline exceeded" in of_type(history.events, "RunCancelled")[0].data["reason"]
    assert wf.LEDGER == {"n": 1, "n/grandchild": 1}
    await assert_all_terminal(runtime)


async def test_an_earlier_run_deadline_caps_the_fan_out_and_cancels_every_descendant(
    runtime: phalanx.Runtime,
) -> None:
    """The run's own deadline, earlier than the fan-out's, is the one every level inherits."""
    branches = {
        "nested": {"kind": "nested", "label": "n"},
        "quick": {"kind": "answer", "label": "q", "value": 1},
    }
    run_deadline_at = runtime.clock.now() + 0.8
    outcome = await runtime.run(
        wf.fan_out,
        {"branches": branches, "deadline": 30.0},
        run_id="p",
        deadline_at=run_deadline_at,
    )

    assert outcome.status == "cancelled"
    assert outcome.error is not None and outcome.error["message"] == "deadline exceeded"
    [started] = of_type(await events(runtime, "p"), "GatherStarted")
    assert started.data["deadline_at"] == run_deadline_at
    branch_id = started.data["branches"]["nested"]
    [grandchild_id] = [r.run_id for r in await runtime.runs() if r.parent_run_id == branch_id]
    runs = await statuses(runtime)
    assert runs[branch_id] == "cancelled" and runs[grandchild_id] == "cancelled"
    assert runs[started.data["branches"]["quick"]] == "completed"
    for run_id in (branch_id, grandchild_id):
        assert (await runtime.history(run_id)).deadline_at == run_deadline_at
    await assert_all_terminal(runtime)


async def test_an_answer_after_the_deadline_is_journaled_late_and_not_used(
    runtime: phalanx.Runtime,
) -> None:
    """A branch that answers only once stopped at the deadline: BranchLate, timed_out, no value."""
    branches = {
        "late": {"kind": "stubborn", "label": "late", "value": "too late"},
        "quick": {"kind": "answer", "label": "quick", "value": 1},
    }
    outcome = await fan_out(runtime, branches=branches, deadline=0.8, accept=True)

    late = outcome.result["branches"]["late"]
    assert late["status"] == "timed_out" and late["value"] is None
    assert outcome.result["missing"] == ["late"]
    assert outcome.result["values"] == {"quick": 1}
    journal = await events(runtime, "p")
    [flagged] = of_type(journal, "BranchLate")
    assert flagged.data["branch"] == "late" and flagged.data["value"] == "too late"
    [finished] = [e for e in of_type(journal, "BranchFinished") if e.data["branch"] == "late"]
    assert flagged.seq < finished.seq
    # The child itself did answer (its run completed), after the fan-out's deadline.
    child = await runtime.history(late["run_id"])
    assert child.status == "completed" and child.result == "too late"
    [started] = of_type(journal, "GatherStarted")
    assert child.ended_at is not None and child.ended_at >= started.data["deadline_at"]


# -- crash and resume -----------------------------------------------------------------

RESUMABLE = {
    "a": {"kind": "answer", "label": "a", "value": 1},
    "b": {"kind": "answer", "label": "b", "value": 2, "delay": 0.3},
    "hang": HANG,
}


@pytest.mark.parametrize("how", ["crash", "cancelled from outside"])
async def test_a_fan_out_resumed_after_a_crash_does_not_rerun_finished_branches(
    runtime: phalanx.Runtime, how: str
) -> None:
    """Resuming keeps finished branches' journaled outcomes, finishes the rest, same result."""
    inputs = {"branches": RESUMABLE, "policy": "quorum:2", "deadline": 3.0, "accept": True}
    reference = await runtime.run(wf.fan_out, inputs, run_id="ref")
    wf.reset()

    if how == "crash":
        wf.CRASH_AT.add("b")  # `b` dies mid-step, after `a` finished: the process is gone
        with pytest.raises(BaseException) as info:
            await runtime.run(wf.fan_out, inputs, run_id="p")
        assert holds(info.value, wf.Crash)
    else:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(runtime.run(wf.fan_out, inputs, run_id="p"))
            await first_event(runtime, "p", "BranchFinished")
            # `a` has finished; the others' steps may not have begun yet (a child run
            # starts in a few store round trips): cancel once both are under way.
            await steps_started(runtime, "p", 3)
            task.cancel()
        assert task.cancelled()
    journal = await events(runtime, "p")
    assert [e.data["branch"] for e in of_type(journal, "BranchFinished")] == ["a"]
    assert (await statuses(runtime))["p"] == "running"
    assert wf.LEDGER == {"a": 1, "b": 1, "hang": 1}

    outcome = await runtime.resume("p", force=True)

    assert outcome.ok
    assert comparable(outcome.result) == comparable(reference.result)
    # `a` finished before the crash: not run again. `b` was in flight: its step re-ran;
    # `hang` was resumed too, its finished step replayed from its journal.
    assert wf.LEDGER == {"a": 1, "b": 2, "hang": 1}
    journal = await events(runtime, "p")
    assert len(of_type(journal, "GatherStarted")) == 1
    assert sorted(e.data["branch"] for e in of_type(journal, "BranchFinished")) == [
        "a",
        "b",
        "hang",
    ]
    [started] = of_type(journal, "GatherStarted")
    a_events = await events(runtime, started.data["branches"]["a"])
    assert [e.type for e in a_events] == [
        "RunStarted",
        "StepStarted",
        "StepCompleted",
        "RunCompleted",
    ]
    await assert_all_terminal(runtime)


async def test_a_completed_fan_out_is_replayed_from_the_journal(runtime: phalanx.Runtime) -> None:
    """Crashed after the fan-out completed: resume replays its result; no branch runs again."""
    wf.CRASH_AT.add("after")
    inputs = {
        "branches": RESUMABLE,
        "policy": "quorum:2",
        "deadline": 3.0,
        "accept": True,
        "after": "after",
    }
    with pytest.raises(BaseException) as info:
        await runtime.run(wf.fan_out, inputs, run_id="p")
    assert holds(info.value, wf.Crash)
    before = await events(runtime, "p")
    assert len(of_type(before, "GatherCompleted")) == 1

    outcome = await runtime.resume("p", force=True)

    assert outcome.ok and outcome.result["satisfied"] is True
    assert outcome.result["values"] == {"a": 1, "b": 2}
    assert wf.LEDGER == {"a": 1, "b": 1, "hang": 1, "after": 2}
    journal = await events(runtime, "p")
    for event_type in ("GatherStarted", "GatherCompleted", "DecisionRecorded"):
        assert len(of_type(journal, event_type)) == 1, event_type
    assert len(of_type(journal, "BranchFinished")) == 3
    first, replayed = wf.RESULTS  # the one the crashed run got, the one rebuilt on resume
    assert replayed.outcomes == first.outcomes
    assert {n: o.status for n, o in replayed.outcomes.items()} == {
        "a": "succeeded",
        "b": "succeeded",
        "hang": "cancelled",
    }
    assert replayed.accepted_reason == "good enough for the test"


async def test_a_resumed_fan_out_keeps_its_deadline_and_durations_from_the_first_start(
    runtime: phalanx.Runtime,
    slack: float,
) -> None:
    """After a resume the deadline is the original one, and a timeout's duration is still ≈ it."""
    branches = {"a": {"kind": "answer", "label": "a", "value": 1}, "hang": HANG}
    inputs = {"branches": branches, "deadline": 1.2, "heartbeat": 0.3}
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.fan_out, inputs, run_id="p"))
        await first_event(runtime, "p", "BranchFinished")
        task.cancel()
    await asyncio.sleep(0.4)

    outcome = await runtime.resume("p", force=True)

    hang = outcome.result["branches"]["hang"]
    assert hang["status"] == "timed_out"
    assert hang["duration_s"] == pytest.approx(1.2, abs=slack)
    assert "(1.2s)" in hang["error"]
    journal = await events(runtime, "p")
    [started] = of_type(journal, "GatherStarted")
    [completed] = of_type(journal, "GatherCompleted")
    assert completed.recorded_at == pytest.approx(started.data["deadline_at"], abs=slack)
    assert completed.data["elapsed_s"] == pytest.approx(1.2, abs=slack)
    assert wf.LEDGER["a"] == 1
    await assert_all_terminal(runtime)


async def test_a_fan_out_resumed_after_its_deadline_stops_branches_without_rerunning_them(
    runtime: phalanx.Runtime,
) -> None:
    """Resumed once the deadline passed: in-flight branch work is not redone, all end timed out."""
    wf.CRASH_AT.add("b")
    inputs = {"branches": RESUMABLE, "deadline": 0.6, "accept": True}
    with pytest.raises(BaseException) as info:
        await runtime.run(wf.fan_out, inputs, run_id="p")
    assert holds(info.value, wf.Crash)
    await asyncio.sleep(0.7)  # the process is "down" past the deadline

    async with asyncio.timeout(10):
        outcome = await runtime.resume("p", force=True)

    assert {n: b["status"] for n, b in outcome.result["branches"].items()} == {
        "a": "succeeded",
        "b": "timed_out",
        "hang": "timed_out",
    }
    assert outcome.result["branches"]["b"]["error"] == "no answer within the deadline (0.6s)"
    assert outcome.result["values"] == {"a": 1}
    assert wf.LEDGER == {"a": 1, "b": 1, "hang": 1}  # nothing ran again after the deadline
    [started] = of_type(await events(runtime, "p"), "GatherStarted")
    b_events = await events(runtime, started.data["branches"]["b"])
    assert [e.type for e in b_events] == ["RunStarted", "StepStarted", "RunCancelled"]
    await assert_all_terminal(runtime)


async def test_a_cancel_requested_while_down_reaches_a_resumed_run_that_awaits_no_operation(
    runtime: phalanx.Runtime,
) -> None:
    """A crashed run cancelled meanwhile, that only hangs after replay, ends cancelled on resume."""
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.hang, {"label": "h"}, run_id="h"))
        await first_event(runtime, "h", "StepCompleted")
        task.cancel()
    assert await runtime.cancel("h", reason="stop it") is True

    async with asyncio.timeout(10):
        outcome = await runtime.resume("h", force=True)

    assert outcome.status == "cancelled"
    assert outcome.error is not None and outcome.error["message"] == "stop it"
    assert wf.LEDGER == {"h": 1}
    assert (await statuses(runtime))["h"] == "cancelled"
