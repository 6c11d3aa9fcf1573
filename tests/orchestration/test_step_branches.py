"""Step branches (`Branch.step`): a fan-out's light branches, journaled in the parent only.

Same outcomes and policies as child-run branches, without a run per branch: the tests
check each outcome kind, that a burst of outcomes shares one append, that a resumed
fan-out does not re-run finished step branches, and that both kinds mix.
"""

from __future__ import annotations

import pytest

import phalanx
from phalanx.testing import FaultyStore
from tests.orchestration import workflows as wf
from tests.orchestration.helpers import assert_none_open, holds, journal, of_type, statuses


def statuses_of(result: dict[str, object]) -> dict[str, tuple[object, object]]:
    """Each branch's (status, value)."""
    branches = result["branches"]
    assert isinstance(branches, dict)
    return {name: (b["status"], b["value"]) for name, b in branches.items()}


async def test_step_branches_report_every_outcome_and_make_no_runs(
    runtime: phalanx.Runtime,
) -> None:
    """Succeeded, failed and timed out, journaled in the parent's stream; no child run exists."""
    branches = {
        "ok": {"kind": "answer", "label": "ok", "value": {"n": 1}},
        "bad": {"kind": "fail", "label": "bad"},
        "hang": {"kind": "hang", "label": "hang"},
    }
    inputs = {"branches": branches, "policy": "best_effort", "deadline": 0.3}
    outcome = await runtime.run(wf.step_fan_out, inputs, run_id="p")

    assert outcome.ok, outcome
    result = outcome.result
    assert statuses_of(result) == {
        "ok": ("succeeded", {"n": 1}),
        "bad": ("failed", None),
        "hang": ("timed_out", None),
    }
    assert result["branches"]["bad"]["error"] == "RuntimeError: bad failed"
    assert "deadline" in result["branches"]["hang"]["error"]
    assert result["partial"] is True
    assert set(await statuses(runtime)) == {"p"}, "step branches are not runs"
    finished = of_type(await journal(runtime, "p"), "BranchFinished")
    assert sorted(e.data["branch"] for e in finished) == ["bad", "hang", "ok"]
    assert all(e.data["run_id"] is None for e in finished)


async def test_a_quorum_of_step_branches_cancels_the_rest_and_a_late_answer_is_journaled(
    runtime: phalanx.Runtime,
) -> None:
    """Quorum 2 of 3 stops a hanging branch (cancelled); a stubborn one is timed out, late."""
    quorum = {
        "a": {"kind": "answer", "label": "a", "value": 1},
        "b": {"kind": "answer", "label": "b", "value": 2, "delay": 0.05},
        "hang": {"kind": "hang", "label": "hang"},
    }
    outcome = await runtime.run(wf.step_fan_out, {"branches": quorum, "policy": "quorum:2"})
    assert outcome.ok, outcome
    got = statuses_of(outcome.result)
    assert got == {"a": ("succeeded", 1), "b": ("succeeded", 2), "hang": ("cancelled", None)}
    assert "complete (quorum)" in outcome.result["branches"]["hang"]["error"]

    late = {"slow": {"kind": "stubborn", "label": "slow", "value": "too late"}}
    outcome = await runtime.run(wf.step_fan_out, {"branches": late, "deadline": 0.2}, run_id="late")
    assert statuses_of(outcome.result) == {"slow": ("timed_out", None)}
    [late_event] = of_type(await journal(runtime, "late"), "BranchLate")
    assert late_event.data["value"] == "too late"


async def test_policy_all_over_step_branches_stops_at_the_first_failure(
    runtime: phalanx.Runtime,
) -> None:
    """Under `all`, a failed step branch ends the fan-out at once: the hanging one is cancelled."""
    branches = {
        "bad": {"kind": "fail", "label": "bad"},
        "hang": {"kind": "hang", "label": "hang"},
    }
    outcome = await runtime.run(
        wf.step_fan_out, {"branches": branches, "deadline": 30.0}, run_id="p"
    )

    assert outcome.ok, outcome
    assert statuses_of(outcome.result) == {"bad": ("failed", None), "hang": ("cancelled", None)}
    assert outcome.result["satisfied"] is False
    assert outcome.result["branches"]["hang"]["error"] == (
        "Cancelled: fan-out 'fan' can no longer meet its policy (all)"
    )
    [completed] = of_type(await journal(runtime, "p"), "GatherCompleted")
    assert completed.data["elapsed_s"] < 1.0


async def test_a_step_branch_raising_cancelled_error_itself_has_failed(
    runtime: phalanx.Runtime,
) -> None:
    """A body whose own await raises CancelledError (nobody cancelled it) ends failed, no hang."""
    branches = {
        "ok": {"kind": "answer", "label": "ok", "value": 1},
        "odd": {"kind": "self_cancelled", "label": "odd"},
    }
    inputs = {"branches": branches, "policy": "best_effort", "deadline": 30.0}
    outcome = await runtime.run(wf.step_fan_out, inputs, run_id="p")

    assert outcome.ok, outcome
    assert statuses_of(outcome.result) == {"ok": ("succeeded", 1), "odd": ("failed", None)}
    assert outcome.result["branches"]["odd"]["error"] == (
        "CancelledError: the connection went away"
    )
    assert outcome.result["branches"]["odd"]["duration_s"] < 1.0


async def test_a_burst_of_step_branch_outcomes_shares_one_append(url: str) -> None:
    """200 branches that end together cost one journal write for all their outcomes."""
    counting = FaultyStore(phalanx.store_from_url(url))  # no fault armed: it only counts
    async with counting:
        runtime = phalanx.Runtime(counting, lease_ttl=1.0, inbox_poll=0.02)
        branches = {f"b{i}": {"kind": "answer", "label": f"b{i}", "value": i} for i in range(200)}
        outcome = await runtime.run(wf.step_fan_out, {"branches": branches}, run_id="p")
        assert outcome.ok and outcome.result["partial"] is False
        # RunStarted, GatherStarted, the 200 outcomes, GatherCompleted, RunCompleted.
        assert counting.appends == 5
        assert len(of_type(await journal(runtime, "p"), "BranchFinished")) == 200


async def test_a_resumed_fan_out_does_not_rerun_finished_step_branches(
    runtime: phalanx.Runtime,
) -> None:
    """A crash inside one branch: resume re-runs that one only, the journaled ones are kept."""
    wf.CRASH_AT["slow"] = 1
    branches = {
        "fast": {"kind": "answer", "label": "fast", "value": "f"},
        "slow": {"kind": "answer", "label": "slow", "value": "s", "delay": 0.1},
    }
    # `slow` crashes on its first run, after its delay: `fast` is journaled by then.
    with pytest.raises(BaseException) as info:
        await runtime.run(wf.step_fan_out, {"branches": branches}, run_id="p")
    assert holds(info.value, wf.Crash)
    assert [e.data["branch"] for e in of_type(await journal(runtime, "p"), "BranchFinished")] == [
        "fast"
    ]

    outcome = await runtime.resume("p", force=True)

    assert outcome.ok, outcome
    assert statuses_of(outcome.result) == {"fast": ("succeeded", "f"), "slow": ("succeeded", "s")}
    assert wf.LEDGER == {"fast": 1, "slow": 2}


async def test_step_and_child_run_branches_mix_in_one_fan_out(runtime: phalanx.Runtime) -> None:
    """A child-run branch and step branches side by side: each reports, only one is a run."""
    branches = {
        "run": {"kind": "run", "label": "run", "value": "r", "delay": 0.1},
        "step": {"kind": "answer", "label": "step", "value": "s"},
    }
    outcome = await runtime.run(wf.step_fan_out, {"branches": branches}, run_id="p")
    assert outcome.ok, outcome
    assert statuses_of(outcome.result) == {"run": ("succeeded", "r"), "step": ("succeeded", "s")}
    assert outcome.result["branches"]["run"]["run_id"] == "p.1.run"
    assert set(await statuses(runtime)) == {"p", "p.1.run"}
    await assert_none_open(runtime)
