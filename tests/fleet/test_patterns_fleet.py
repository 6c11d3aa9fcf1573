"""The patterns under a worker: their child runs go through the queue, same outcomes.

Peers, a conductor, a hierarchy and a supervisor each run once in-process
(`Runtime.run`) and once submitted to a worker; the results, and how every descendant
ended, must be the same but for the run ids.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import phalanx
from tests.actors import workflows as actors
from tests.fleet.harness import until_status, working
from tests.orchestration import workflows as orchestration
from tests.orchestration.helpers import assert_none_open
from tests.peers import workflows as peers

TERMINAL = ("completed", "failed", "cancelled")

QUICK_TEAM = {
    "quick": {"kind": "worker", "label": "quick", "value": "q"},
    "slow": {"kind": "worker", "label": "slow", "value": "s", "delay": 0.2},
}
#: A lead's team whose members hang (in a step, and in a grandchild's step).
HANGING_TEAM = {
    "quick": {"kind": "worker", "label": "quick", "value": "q"},
    "hang": {"kind": "hanging", "label": "hang"},
    "deep": {"kind": "lead_of_one", "label": "deep"},
}
CASES: dict[str, tuple[Callable[..., Awaitable[Any]], dict[str, Any]]] = {
    "peers": (peers.ping_pong, {"limit": 4}),
    "conductor": (orchestration.research_conductor, {}),
    "hierarchy": (orchestration.top_orchestrator, {"policy": "cancel", "members": QUICK_TEAM}),
    # A one-for-one restart, and a 2 s wait in which the worker hands the supervisor
    # back while its actors live on: none of them may be cancelled by that.
    "supervisor": (
        actors.team,
        {
            "strategy": "one_for_one",
            "children": ["a", "b"],
            "script": [["a", 1], ["b", "crash"], ["wait", 2.0], ["a", 2], ["b", 2]],
        },
    ),
}


def comparable(result: Any) -> str:
    """A result as JSON without the times in it (`duration_s`), which differ per run."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "duration_s"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(result), sort_keys=True)


@pytest.fixture(autouse=True)
def _fresh_pattern_state() -> None:
    orchestration.reset()
    peers.HANDLED.clear()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_pattern_under_a_worker_ends_as_it_does_in_process(
    runtime: phalanx.Runtime, case: str
) -> None:
    """Same result as in-process; every child run went through the queue."""
    workflow, inputs = CASES[case]
    alone = await runtime.run(workflow, inputs, run_id="alone")
    assert alone.status == "completed", alone.error
    await runtime.submit(workflow, inputs, run_id="fleet")
    # Slots for the supervisor's two actors, which hold theirs while they poll their
    # mailboxes (a stream the queue does not watch), and for the supervisor.
    async with working(runtime, concurrency=4):
        assert await until_status(runtime, "fleet", *TERMINAL) == "completed"
    result = (await runtime.history("fleet")).result
    assert comparable(result) == comparable(alone.result).replace("alone", "fleet")
    ended = {r.run_id: r.status for r in await runtime.runs()}
    descendants = sorted(r for r in ended if r.startswith("fleet."))
    assert descendants
    assert [ended[r] for r in descendants] == [
        ended[r.replace("fleet", "alone")] for r in descendants
    ]
    for run_id in descendants:
        assert (await runtime.history(run_id)).queue == "default", run_id
    await assert_none_open(runtime)


async def test_a_supervisor_handed_back_between_restarts_still_escalates(
    runtime: phalanx.Runtime,
) -> None:
    """A child failing every incarnation: the parked supervisor wakes at each end, escalates."""
    await runtime.submit(actors.crash_loop, {"max_restarts": 2}, run_id="loop")
    async with working(runtime, concurrency=2):
        assert await until_status(runtime, "loop", *TERMINAL) == "failed"
    history = await runtime.history("loop")
    assert str((history.error or {}).get("type")).endswith("SupervisorEscalationError")
    assert [e.type for e in history.events].count("ChildrenRestarted") == 2
    incarnations = [r for r in await runtime.runs() if r.parent_run_id == "loop"]
    assert [r.status for r in incarnations] == ["failed"] * 3


async def test_a_dead_middle_node_under_a_worker_leaves_no_descendant_running(
    runtime: phalanx.Runtime,
) -> None:
    """The team lead dies mid-fan-out on a worker: its queued subtree ends cancelled."""
    inputs = {"policy": "cancel", "members": HANGING_TEAM, "die_after": 0.8}
    await runtime.submit(orchestration.top_orchestrator, inputs, run_id="top")
    async with working(runtime, concurrency=5):
        assert await until_status(runtime, "top", *TERMINAL) == "completed"
        delegation = (await runtime.history("top")).result
        assert delegation["status"] == "failed" and delegation["died"] is True
        for hung in ("top.1.1.hang", "top.1.1.deep.2"):  # a member, and its grandchild
            assert await until_status(runtime, hung, *TERMINAL) == "cancelled"
    await assert_none_open(runtime)


async def test_a_dead_middle_nodes_members_are_adopted_under_a_worker(
    runtime: phalanx.Runtime,
) -> None:
    """Reparent: the lead dies on a worker; its queued slow members finish for the top."""
    team = {
        "quick": {"kind": "worker", "label": "quick", "value": "q"},
        "slow1": {"kind": "worker", "label": "slow1", "value": "s1", "delay": 1.5},
        "slow2": {"kind": "worker", "label": "slow2", "value": "s2", "delay": 1.5},
    }
    inputs = {"policy": "reparent", "members": team, "die_after": 0.8}
    await runtime.submit(orchestration.top_orchestrator, inputs, run_id="top")
    async with working(runtime, concurrency=5):
        assert await until_status(runtime, "top", *TERMINAL) == "completed"
    delegation = (await runtime.history("top")).result
    assert delegation["died"] is True and delegation["cancelled"] == []
    adopted = delegation["adopted"]
    assert set(adopted) == {"top.1.1.slow1", "top.1.1.slow2"}
    assert {a["result"] for a in adopted.values()} == {"s1", "s2"}
    assert {a["status"] for a in adopted.values()} == {"completed"}
    await assert_none_open(runtime)
