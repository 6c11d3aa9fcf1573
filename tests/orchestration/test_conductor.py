"""Conductor: a central durable plan whose assignments are journaled decisions.

The tests drive real runs on a SQLite journal, crash the conductor mid-plan (in process,
and with a real SIGKILL in a subprocess) and count with a ledger that finished
assignments are not redone on resume.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import phalanx
from tests.chaos.harness import wait_exit, workspace
from tests.orchestration import workflows as wf
from tests.orchestration.helpers import assert_none_open, holds, journal, of_type, statuses

PLAN_ORDER = ["web", "vector", "draft", "review"]


async def test_a_plan_runs_each_task_after_its_dependencies_with_inputs_from_their_values(
    runtime: phalanx.Runtime,
) -> None:
    """Every task is assigned once, in dependency order, fed by its dependencies' values."""
    outcome = await runtime.run(wf.research_conductor, run_id="c")

    assert outcome.ok, outcome
    assert outcome.result["values"] == {
        "web": "w",
        "vector": "v",
        "draft": "w+v",
        "review": "ok(w+v)",
    }
    assert outcome.result["partial"] is False
    events = await journal(runtime, "c")
    [plan] = of_type(events, "PlanRecorded")
    assert [t["name"] for t in plan.data["tasks"]] == PLAN_ORDER
    made = of_type(events, "AssignmentMade")
    assert sorted(e.data["task"] for e in made) == sorted(PLAN_ORDER)
    order = [e.data["task"] for e in made]
    assert order.index("draft") > max(order.index("web"), order.index("vector"))
    assert order[-1] == "review"
    draft = next(e for e in made if e.data["task"] == "draft")
    assert draft.data["inputs"] == {"label": "draft", "value": "w+v"}, "inputs are journaled"
    assert len(of_type(events, "PlanCompleted")) == 1
    assert dict.fromkeys(PLAN_ORDER, 1) == wf.LEDGER
    await assert_none_open(runtime)


async def test_a_crashed_conductor_resumes_without_redoing_finished_assignments(
    runtime: phalanx.Runtime,
) -> None:
    """After a crash inside `draft`, resume re-runs only `draft`'s in-flight step and goes on."""
    wf.CRASH_AT["draft"] = 1  # the process dies inside the draft agent's step
    with pytest.raises(BaseException) as info:
        await runtime.run(wf.research_conductor, run_id="c")
    assert holds(info.value, wf.Crash)
    assert (await statuses(runtime))["c"] == "running"
    before = await journal(runtime, "c")
    completed = {e.data["task"] for e in of_type(before, "AssignmentCompleted")}
    assert completed == {"web", "vector"}
    assert wf.LEDGER == {"web": 1, "vector": 1, "draft": 1}

    outcome = await runtime.resume("c", force=True)

    assert outcome.ok, outcome
    assert outcome.result["values"]["review"] == "ok(w+v)"
    # web and vector finished before the crash: not assigned, not run again. draft was
    # in flight: its child run resumed and re-ran its step once. review is new.
    assert wf.LEDGER == {"web": 1, "vector": 1, "draft": 2, "review": 1}
    events = await journal(runtime, "c")
    assert events[: len(before)] == before, "the journal only grows"
    made = Counter(e.data["task"] for e in of_type(events, "AssignmentMade"))
    assert made == dict.fromkeys(PLAN_ORDER, 1), "no decision is made twice"
    done = Counter(e.data["task"] for e in of_type(events, "AssignmentCompleted"))
    assert done == dict.fromkeys(PLAN_ORDER, 1)
    await assert_none_open(runtime)


async def test_a_finished_plan_is_replayed_from_the_journal(runtime: phalanx.Runtime) -> None:
    """A crash after the plan completed: replay rebuilds its result, no task is assigned again."""
    wf.CRASH_AT["after"] = 1
    with pytest.raises(BaseException) as info:
        await runtime.run(wf.research_conductor, {"after": True}, run_id="c")
    assert holds(info.value, wf.Crash)
    before = await journal(runtime, "c")
    assert len(of_type(before, "PlanCompleted")) == 1

    outcome = await runtime.resume("c", force=True)

    assert outcome.ok, outcome
    assert outcome.result["values"]["review"] == "ok(w+v)"
    assert {**dict.fromkeys(PLAN_ORDER, 1), "after": 2} == wf.LEDGER
    events = await journal(runtime, "c")
    assert len(of_type(events, "AssignmentMade")) == len(PLAN_ORDER)
    assert len(of_type(events, "PlanCompleted")) == 1


async def test_failed_and_timed_out_assignments_go_to_fallbacks_and_dependents_are_skipped(
    runtime: phalanx.Runtime,
) -> None:
    """A failure and a timeout are reassigned (journaled), a lost dependency skips its task."""
    outcome = await runtime.run(wf.fallback_conductor, {"accept": True}, run_id="c")

    assert outcome.ok, outcome
    result = outcome.result
    got = {n: (a["agent"], a["status"], a["attempt"]) for n, a in result["assignments"].items()}
    assert got == {
        "a": ("steady", "completed", 2),
        "b": ("steady", "completed", 2),
        "c": ("flaky", "failed", 1),
        "d": ("steady", "skipped", 1),
    }
    assert result["partial"] is True and result["missing"] == ["c", "d"]
    assert "accept_partial" in result["refused"]
    assert result["values"] == {"a": None, "b": None}
    events = await journal(runtime, "c")
    attempts = [(e.data["task"], e.data["agent"]) for e in of_type(events, "AssignmentMade")]
    assert sorted(attempts) == [
        ("a", "flaky"),
        ("a", "steady"),
        ("b", "steady"),
        ("b", "stuck"),
        ("c", "flaky"),
    ]
    firsts = {
        e.data["task"]: e.data["status"]
        for e in of_type(events, "AssignmentCompleted")
        if e.data["attempt"] == 1
    }
    assert firsts == {"a": "failed", "b": "timed_out", "c": "failed"}
    [skipped] = of_type(events, "AssignmentSkipped")
    assert skipped.data["task"] == "d" and "'c'" in skipped.data["reason"]
    [accepted] = of_type(events, "DecisionRecorded")
    assert accepted.data["missing"] == ["c", "d"]
    await assert_none_open(runtime)


async def test_one_assignment_at_a_time_resumes_from_the_last_decision(
    runtime: phalanx.Runtime,
) -> None:
    """`assign` journals each decision; a crash in the third redoes neither of the first two."""
    wf.CRASH_AT["check"] = 1
    with pytest.raises(BaseException) as info:
        await runtime.run(wf.stepwise_conductor, run_id="s")
    assert holds(info.value, wf.Crash)

    outcome = await runtime.resume("s", force=True)

    assert outcome.ok, outcome
    assert [(a["task"], a["agent"], a["status"]) for a in outcome.result] == [
        ("triage", "fast", "completed"),
        ("solve", "careful", "completed"),
        ("check", "fast", "completed"),
    ]
    assert wf.LEDGER == {"triage": 1, "solve": 1, "check": 2}
    made = of_type(await journal(runtime, "s"), "AssignmentMade")
    assert [(e.data["task"], e.data["agent"]) for e in made] == [
        ("triage", "fast"),
        ("solve", "careful"),
        ("check", "fast"),
    ]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("unknown agent", "'nobody'"),
        ("twice", "appears twice"),
        ("missing dependency", "'ghost'"),
        ("cycle", "depend on each other"),
    ],
)
async def test_a_malformed_plan_is_refused_before_anything_is_journaled(
    runtime: phalanx.Runtime, case: str, words: str
) -> None:
    """Unknown agents, duplicate names, missing dependencies and cycles raise PlanError."""
    outcome = await runtime.run(wf.bad_plan, {"case": case}, run_id="b")
    assert outcome.ok
    assert words in outcome.result and "conductor 'bad'" in outcome.result
    types = [e.type for e in await journal(runtime, "b")]
    assert types == ["RunStarted", "RunCompleted"]


@pytest.mark.slow
def test_a_conductor_killed_with_sigkill_resumes_in_a_new_process(tmp_path: Path) -> None:
    """SIGKILL inside task `c`; `phalanx resume` finishes the plan, each other task done once."""
    ledger = str(tmp_path / "ledger.jsonl")
    with workspace(tmp_path) as ws:
        inputs = json.dumps({"ledger": ledger, "kill_at": "c"})
        first = ws.spawn_cli(
            "run",
            "tests.orchestration.workflows:ledger_conductor",
            "--input",
            inputs,
            "--run-id",
            "chain",
            label="conductor",
        )
        assert wait_exit(first, 30) == -9, first.describe()
        tasks = [line["task"] for line in wf.read_lines(ledger)]
        assert sorted(tasks[:2]) == ["a", "b"] and tasks[2:] == ["c"], tasks

        second = ws.spawn_cli("resume", "chain", "--force", "--json", label="resume")
        assert wait_exit(second, 30) == 0, second.describe()
        outcome = json.loads(second.stdout)
        assert outcome["status"] == "completed"
        assert outcome["result"] == {t: f"{t} done" for t in "abcde"}

        done = Counter(line["task"] for line in wf.read_lines(ledger))
        assert done == {"a": 1, "b": 1, "c": 2, "d": 1, "e": 1}
        events = ws.events("chain")
        made = Counter(e["data"]["task"] for e in events if e["type"] == "AssignmentMade")
        assert made == dict.fromkeys("abcde", 1)
        runs = json.loads(ws.cli("runs", "--json").stdout)
        assert {r["status"] for r in runs} == {"completed"}
