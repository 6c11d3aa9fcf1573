"""Chaos: a paused orchestrator that wakes after a takeover is refused by its agent.

Three real processes: an agent (`fenced_agent`) waiting for instructions, orchestrator
A (`instructing_orchestrator`) deciding and delivering one instruction per step, and,
once A is frozen with SIGSTOP in the middle of a step, orchestrator B taking the run
over with `phalanx resume --force`. B re-runs the step A was in and goes on. Then A is
thawed with SIGCONT: it finishes its step, which delivers its instruction stamped with
the old epoch *before* A's next write is refused by the store. The store cannot stop
that delivery (the agent's inbox is not A's stream); the agent must, and does: it
journals `InstructionRejected` and acts on nothing A sends after the takeover.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.harness import poll_until, wait_exit, workspace
from tests.chaos.test_split_brain import freeze_outside_a_write
from tests.orchestration.workflows import read_lines

pytestmark = pytest.mark.slow

TASKS = 6
THINK = 0.5
#: The task whose step A is frozen in (its instruction id is "orch:{FROZEN + 1}").
FROZEN = 2


def test_instructions_from_a_paused_orchestrator_are_refused_after_a_takeover(
    tmp_path: Path,
) -> None:
    """SIGSTOP A mid-step, `resume --force` as B, SIGCONT A: A's late instruction is refused."""
    acted_log = str(tmp_path / "acted.jsonl")
    thinking_log = str(tmp_path / "thinking.jsonl")
    with workspace(tmp_path) as ws:
        agent = ws.spawn_cli(
            "run",
            "tests.orchestration.workflows:fenced_agent",
            "--input",
            json.dumps({"ledger": acted_log}),
            "--run-id",
            "agent",
            "--json",
            label="agent",
        )
        poll_until(
            lambda: any(e["type"] == "SignalWaiting" for e in ws.peek("agent")),
            30,
            "the agent to wait for instructions",
        )
        inputs = {"agent": "agent", "tasks": TASKS, "think": THINK, "ledger": thinking_log}
        # A long lease: A's keeper must not notice the takeover before A's own next
        # write does, as it could not while frozen in a real pause.
        runner_a = ws.spawn_cli(
            "run",
            "tests.orchestration.workflows:instructing_orchestrator",
            "--input",
            json.dumps(inputs),
            "--run-id",
            "orch",
            "--lease-ttl",
            "60",
            label="orchestrator-a",
        )
        poll_until(
            lambda: any(line.get("thinking") == FROZEN for line in read_lines(thinking_log)),
            30,
            f"orchestrator A to start deciding task {FROZEN}",
        )
        freeze_outside_a_write(ws, runner_a)
        try:
            frozen = ws.peek("orch")
            epoch_a = frozen[-1]["epoch"]
            runner_b = ws.spawn_cli(
                "resume", "orch", "--force", "--lease-ttl", "60", "--json", label="orchestrator-b"
            )
            stale_id = f"orch:{FROZEN + 1}"
            poll_until(
                lambda: any(
                    line.get("id") == stale_id and line["epoch"] > epoch_a
                    for line in read_lines(acted_log)
                ),
                30,
                f"the agent to act on B's instruction {stale_id}",
            )
        finally:
            os.kill(runner_a.popen.pid, signal.SIGCONT)

        assert wait_exit(runner_a, 30) == 1, runner_a.describe()
        assert "fenced" in runner_a.stderr, runner_a.describe()
        assert wait_exit(runner_b, 30) == 0, runner_b.describe()
        assert json.loads(runner_b.stdout)["result"] == TASKS
        assert wait_exit(agent, 30) == 0, agent.describe()
        assert json.loads(agent.stdout)["result"] == TASKS

        # The agent acted on every task exactly once; everything after the takeover
        # came from B.
        acted = read_lines(acted_log)
        assert Counter(line["id"] for line in acted) == {
            f"orch:{n}": 1 for n in range(1, TASKS + 1)
        }
        epochs = [line["epoch"] for line in acted]
        assert epochs == sorted(epochs), "no instruction of the old epoch after one of the new"
        assert {line["id"] for line in acted if line["epoch"] == epoch_a} == {
            f"orch:{n}" for n in range(1, FROZEN + 1)
        }, "A's instructions were acted on only before it was taken over"

        # ... and refused A's late one, visibly.
        agent_events = ws.events("agent")
        rejected = [e for e in agent_events if e["type"] == "InstructionRejected"]
        assert [(e["data"]["id"], e["data"]["epoch"]) for e in rejected] == [(stale_id, epoch_a)]
        assert rejected[0]["data"]["highest"] > epoch_a

        # The store fenced A's own stream: nothing from A after the freeze.
        events = ws.events("orch")
        assert events[: len(frozen)] == frozen, "the journal only grows"
        assert all(e["epoch"] > epoch_a for e in events[len(frozen) :])
        runs = json.loads(ws.cli("runs", "--json").stdout)
        assert {r["run_id"]: r["status"] for r in runs} == {
            "agent": "completed",
            "orch": "completed",
        }
