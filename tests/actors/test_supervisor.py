"""Durable supervision: failed child runs restart by OTP strategy, within an intensity limit."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

import phalanx
from phalanx.actors._supervision import SupervisionPolicy, over_intensity, victims
from tests.actors import workflows
from tests.actors.workflows import crash_loop, failing_body, survives_escalation, team
from tests.chaos.harness import Workspace, child_env, wait_exit


async def journal(rt: phalanx.Runtime, run_id: str) -> list[phalanx.Event]:
    return await rt.store.read_stream(f"run:{run_id}")


def decisions(events: list[phalanx.Event]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "ChildrenRestarted"]


async def handled(rt: phalanx.Runtime, run_id: str) -> list[Any]:
    return [e.data["result"] for e in await journal(rt, run_id) if e.type == "StepCompleted"]


async def statuses(rt: phalanx.Runtime, parent: str) -> dict[str, str]:
    return {r.run_id: r.status for r in await rt.runs() if r.run_id.startswith(parent + ".")}


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        ("one_for_one", {"b": 2}),
        ("one_for_all", {"a": 2, "b": 2, "c": 2}),
        ("rest_for_one", {"b": 2, "c": 2}),
    ],
)
async def test_a_failed_child_is_restarted_by_strategy(
    runtime: phalanx.Runtime, strategy: str, restarted: dict[str, int]
) -> None:
    """The failed child, and the siblings its strategy names, continue as new child runs."""
    # The waits let every child take its message before the crash and after it, so
    # what each incarnation handled is known.
    script = [["a", 1], ["b", 1], ["c", 1], ["wait", 0.5], ["b", "crash"], ["wait", 0.5],
              ["a", 2], ["b", 2], ["c", 2]]  # fmt: skip
    outcome = await runtime.run(
        team, {"strategy": strategy, "children": ["a", "b", "c"], "script": script}, run_id="t"
    )
    assert outcome.status == "completed", outcome
    events = await journal(runtime, "t")
    [decision] = decisions(events)
    assert decision["failed"] == "b" and decision["restart"] == restarted
    assert decision["error_type"] == "RuntimeError"
    runs = await statuses(runtime, "t")
    for child in "abc":
        address = outcome.result[child]
        if child in restarted:
            assert runs[f"{address}#1"] == ("failed" if child == "b" else "cancelled")
            assert runs[f"{address}#2"] == "completed"
            # The new incarnation takes what the old one had not: never the crash again.
            assert await handled(runtime, f"{address}#1") == [1]
            assert await handled(runtime, f"{address}#2") == [2]
        else:
            assert f"{address}#2" not in runs
            assert runs[f"{address}#1"] == "completed"
            assert await handled(runtime, f"{address}#1") == [1, 2]


async def test_intensity_limit_escalates(runtime: phalanx.Runtime) -> None:
    """More failures than `max_restarts` within the window: the supervisor fails."""
    outcome = await runtime.run(crash_loop, {"max_restarts": 2}, run_id="loop")
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["type"].endswith("SupervisorEscalationError")
    events = await journal(runtime, "loop")
    assert [d["restart"] for d in decisions(events)] == [{"doomed": 2}, {"doomed": 3}]
    [escalated] = [e.data for e in events if e.type == "SupervisorEscalated"]
    assert escalated["run_id"].endswith(".doomed#3")
    runs = await statuses(runtime, "loop")
    assert sorted(runs.values()) == ["failed"] * 3


async def test_zero_restarts_escalates_the_first_failure(runtime: phalanx.Runtime) -> None:
    """`max_restarts=0` makes no restart at all."""
    outcome = await runtime.run(crash_loop, {"max_restarts": 0}, run_id="loop")
    assert outcome.status == "failed"
    assert decisions(await journal(runtime, "loop")) == []


@pytest.mark.slow
async def test_sigkilled_supervisor_resumes_with_the_same_decisions(
    runtime: phalanx.Runtime, url: str, tmp_path: Path
) -> None:
    """Killed between restarts and resumed, the supervisor keeps its decisions and its count."""
    ws = Workspace(tmp_path, child_env(), url=url)
    try:
        inputs = json.dumps({"max_restarts": 3, "after": 0.4})
        first = ws.spawn_cli(
            "run", "tests.actors.workflows:crash_loop", "--input", inputs, "--run-id", "loop",
            "--lease-ttl", "2", label="first",
        )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + 30
        while not decisions(await journal(runtime, "loop")):
            assert asyncio.get_running_loop().time() < deadline, first.describe()
            await asyncio.sleep(0.02)
        first.popen.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(wait_exit, first, 10) == -signal.SIGKILL
        before = decisions(await journal(runtime, "loop"))
        assert 1 <= len(before) < 3, "escalated before the kill"
        resumed = await asyncio.to_thread(ws.cli, "resume", "loop", "--force", timeout=60)
        assert resumed.returncode == 1, resumed.stdout + resumed.stderr
        assert "SupervisorEscalationError" in resumed.stdout + resumed.stderr
    finally:
        ws.kill_all()
    events = await journal(runtime, "loop")
    after = decisions(events)
    assert after[: len(before)] == before
    assert [d["restart"] for d in after] == [{"doomed": 2}, {"doomed": 3}, {"doomed": 4}]
    assert len([e for e in events if e.type == "SupervisorEscalated"]) == 1
    runs = await statuses(runtime, "loop")
    assert sorted(runs) == [f"loop.1.doomed#{n}" for n in range(1, 5)]
    assert set(runs.values()) == {"failed"}


def test_strategy_picks_the_children_to_restart() -> None:
    """one_for_one restarts the failed child, one_for_all all, rest_for_one it and later ones."""
    kids = ["a", "b", "c"]
    assert victims("one_for_one", kids, "b") == ["b"]
    assert victims("one_for_all", kids, "b") == ["a", "b", "c"]
    assert victims("rest_for_one", kids, "b") == ["b", "c"]


def test_intensity_counts_only_restarts_inside_the_window() -> None:
    """Restarts older than `within` seconds no longer count toward the limit."""
    policy = SupervisionPolicy(max_restarts=2, within=10)
    assert not over_intensity([100.0], 105.0, policy)
    assert over_intensity([100.0, 104.0], 105.0, policy)
    assert not over_intensity([90.0, 104.0], 105.0, policy)
    with pytest.raises(phalanx.ConfigError, match="strategy"):
        SupervisionPolicy(strategy="all_for_none")  # type: ignore[arg-type]


async def test_a_failing_body_cancels_the_children_and_raises_its_own_error(
    runtime: phalanx.Runtime,
) -> None:
    """The body's error leaves the scope as raised (no exception group); children cancelled."""
    outcome = await runtime.run(failing_body, run_id="f")
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["type"] == "builtins.ValueError", outcome.error
    assert await statuses(runtime, "f") == {"f.1.w#1": "cancelled"}


async def test_a_resumed_supervisor_raises_its_journaled_escalation_again(
    runtime: phalanx.Runtime,
) -> None:
    """Crashed after escalating, a resumed run escalates at the same point, restarting nothing."""
    workflows.CRASH_AT.add("after")
    with pytest.raises(BaseException) as crashed:
        await runtime.run(survives_escalation, run_id="e")
    assert isinstance(crashed.value, workflows.Crash) or crashed.group_contains(workflows.Crash)
    outcome = await runtime.resume("e", force=True)
    assert outcome.status == "completed", outcome
    assert outcome.result == "after:doomed"
    events = await journal(runtime, "e")
    assert len(decisions(events)) == 1
    assert [e.type for e in events].count("SupervisorEscalated") == 1
    assert sorted(await statuses(runtime, "e")) == ["e.1.doomed#1", "e.1.doomed#2"]
