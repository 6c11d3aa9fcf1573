"""Hierarchy: a dead middle node's subtree is cancelled or re-parented, never left running.

A top orchestrator delegates to a team lead (a child run) that fans out to its members
(grandchild runs, one with a child of its own). The lead dies mid-fan-out; without the
policy its members would stay `running` forever. Each test ends by checking that no
run in the store is left `running` or `waiting`.
"""

from __future__ import annotations

import pytest

import phalanx
from tests.orchestration import workflows as wf
from tests.orchestration.helpers import assert_none_open, holds, journal, of_type, statuses

TEAM = {
    "quick": {"kind": "worker", "label": "quick", "value": "q"},
    "hang": {"kind": "hanging", "label": "hang"},
    "deep": {"kind": "lead_of_one", "label": "deep"},
}
SLOW_TEAM = {
    "quick": {"kind": "worker", "label": "quick", "value": "q"},
    "slow1": {"kind": "worker", "label": "slow1", "value": "s1", "delay": 1.5},
    "slow2": {"kind": "worker", "label": "slow2", "value": "s2", "delay": 1.5},
}
#: When the lead dies: after its whole subtree started (a child run costs tens of
#: milliseconds on PostgreSQL under a loaded CI box), before the slow members finish.
DIES_AFTER = 0.8


def member_ids(top: str, member: str) -> str:
    """The run id `gather` gives a member of the team (delegation op 1, gather op 1)."""
    return f"{top}.1.1.{member}"


async def test_without_a_policy_a_dead_middle_node_leaves_its_children_running(
    runtime: phalanx.Runtime,
) -> None:
    """The problem: a failed lead's members stay `running`, with nobody to resume them."""
    outcome = await runtime.run(
        wf.team_lead, {"members": TEAM, "die_after": DIES_AFTER}, run_id="lead"
    )
    assert outcome.status == "failed"
    left = {r: s for r, s in (await statuses(runtime)).items() if s == "running"}
    assert set(left) == {"lead.1.hang", "lead.1.deep", "lead.1.deep.2"}


async def test_cancel_policy_cancels_every_open_descendant_of_a_dead_middle_node(
    runtime: phalanx.Runtime,
) -> None:
    """The lead dies: its hanging member and a grandchild three levels down end `cancelled`."""
    inputs = {"policy": "cancel", "members": TEAM, "die_after": DIES_AFTER}
    outcome = await runtime.run(wf.top_orchestrator, inputs, run_id="top")

    assert outcome.ok, outcome
    delegation = outcome.result
    assert delegation["status"] == "failed" and delegation["died"] is True
    assert "the team lead crashed" in delegation["error"]["message"]
    hang, deep = member_ids("top", "hang"), member_ids("top", "deep")
    # Deepest first: the grandchild before its parent (siblings in the order they started).
    cancelled = delegation["cancelled"]
    assert sorted(cancelled) == sorted([f"{deep}.2", hang, deep])
    assert cancelled.index(f"{deep}.2") < cancelled.index(deep)
    assert delegation["adopted"] == {}
    runs = await statuses(runtime)
    assert runs[member_ids("top", "quick")] == "completed"
    for run_id in delegation["cancelled"]:
        assert runs[run_id] == "cancelled"
        [cancelled] = of_type(await journal(runtime, run_id), "RunCancelled")
        assert "middle node 'top.1'" in cancelled.data["reason"]
    # The hanging steps were in flight when their runs were stopped: cancelled, not re-run.
    assert wf.LEDGER == {"quick": 1, "hang": 1, "deep": 1, "deep/child": 1, "lead": 1}
    events = await journal(runtime, "top")
    [ended] = of_type(events, "DelegationEnded")
    assert sorted(ended.data["orphans"]) == sorted([hang, deep])
    [swept] = of_type(events, "SubtreeCancelled")
    assert swept.data["runs"] == delegation["cancelled"]
    await assert_none_open(runtime)


async def test_reparent_policy_adopts_the_orphans_and_their_results_reach_the_top(
    runtime: phalanx.Runtime,
) -> None:
    """The lead dies: its two slow members are re-parented to the top and finish there."""
    inputs = {"policy": "reparent", "members": SLOW_TEAM, "die_after": DIES_AFTER}
    outcome = await runtime.run(wf.top_orchestrator, inputs, run_id="top")

    assert outcome.ok, outcome
    delegation = outcome.result
    assert delegation["died"] is True and delegation["cancelled"] == []
    slow1, slow2 = member_ids("top", "slow1"), member_ids("top", "slow2")
    adopted = delegation["adopted"]
    assert set(adopted) == {slow1, slow2}
    assert {adopted[slow1]["result"], adopted[slow2]["result"]} == {"s1", "s2"}
    assert {a["status"] for a in adopted.values()} == {"completed"}
    events = await journal(runtime, "top")
    moves = {
        (e.data["child_run_id"], e.data["from_parent"], e.data["to_parent"])
        for e in of_type(events, "Reparented")
    }
    assert moves == {(slow1, "top.1", "top"), (slow2, "top.1", "top")}
    # Each adopted member finished once, in its own journal; its step was in flight when
    # the lead died, so it ran again under the new parent.
    for run_id in (slow1, slow2):
        assert [e.type for e in of_type(await journal(runtime, run_id), "RunCompleted")] == [
            "RunCompleted"
        ]
    assert wf.LEDGER == {"quick": 1, "slow1": 2, "slow2": 2, "lead": 1}
    await assert_none_open(runtime)


async def test_a_cancelled_middle_node_is_not_a_death_its_subtree_is_cancelled_anyway(
    runtime: phalanx.Runtime,
) -> None:
    """Under `reparent`, a lead cancelled by its deadline still takes its members with it."""
    inputs = {"policy": "reparent", "members": TEAM, "deadline": DIES_AFTER}
    outcome = await runtime.run(wf.top_orchestrator, inputs, run_id="top")

    assert outcome.ok, outcome
    delegation = outcome.result
    assert delegation["status"] == "cancelled" and delegation["died"] is False
    assert delegation["adopted"] == {}
    runs = await statuses(runtime)
    assert runs["top.1"] == "cancelled"
    for member in ("hang", "deep"):
        assert runs[member_ids("top", member)] == "cancelled"
    assert runs[f"{member_ids('top', 'deep')}.2"] == "cancelled"
    await assert_none_open(runtime)


async def test_a_top_that_crashes_while_adopting_finishes_the_adoption_on_resume(
    runtime: phalanx.Runtime,
) -> None:
    """A crash during adoption: resume adopts each orphan once more, never re-parents twice."""
    wf.CRASH_AT["slow1"] = 2  # dies in slow1's re-run, under its new parent
    inputs = {"policy": "reparent", "members": SLOW_TEAM, "die_after": DIES_AFTER}
    with pytest.raises(BaseException) as info:
        await runtime.run(wf.top_orchestrator, inputs, run_id="top")
    assert holds(info.value, wf.Crash)
    assert len(of_type(await journal(runtime, "top"), "Reparented")) == 2

    outcome = await runtime.resume("top", force=True)

    assert outcome.ok, outcome
    adopted = outcome.result["adopted"]
    assert {a["result"] for a in adopted.values()} == {"s1", "s2"}
    events = await journal(runtime, "top")
    assert len(of_type(events, "Reparented")) == 2
    assert len(of_type(events, "DelegationEnded")) == 1
    assert len(of_type(events, "AdoptedRunFinished")) == 2
    await assert_none_open(runtime)
