"""`phalanx trace RUN`: the span tree of a recorded run, from its journal alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import phalanx
from phalanx.cli import app
from phalanx.demo import research
from phalanx.observe import TraceNode, trace_run

from . import workflows


def kinds(node: TraceNode) -> list[str]:
    return [c.kind for c in node.children]


async def test_trace_of_the_research_demo_nests_fanout_branches_agents_and_tool_calls(
    tmp_path: Path,
) -> None:
    """The tree holds the fan-out, each branch's child run, agent turns and token counts."""
    url = f"sqlite:///{tmp_path / 'j.db'}"
    async with phalanx.open_runtime(url) as runtime:
        outcome = await runtime.run(research, {"faults": {}}, run_id="demo-1")
        assert outcome.status == "completed"
        root = await trace_run(runtime, "demo-1")
        events = (await runtime.history("demo-1.1.vector_db")).events

    assert root.kind == "run"
    assert root.name == "phalanx.run phalanx.demo._scenario:research"
    assert root.status == "completed"
    assert root.duration_s is not None and root.duration_s > 0
    assert kinds(root) == ["fanout", "invoke_agent"]
    fanout, orchestrator = root.children
    assert fanout.attributes["phalanx.fanout.policy"] == "all"
    assert fanout.attributes["phalanx.fanout.partial"] is False
    assert [b.name for b in fanout.children] == [
        "branch vector_db",
        "branch web_search",
        "branch synthesis",
    ]
    for branch in fanout.children:
        assert branch.status == "succeeded"
        (run,) = branch.children
        assert run.kind == "run" and run.status == "completed"
        (agent,) = run.children
        assert agent.kind == "invoke_agent"
        assert agent.name == f"invoke_agent {branch.attributes['phalanx.branch.name']}"
        assert [c.kind for c in agent.children] == ["chat", "execute_tool", "chat"]
        assert agent.attributes["phalanx.agent.turns"] == 2
        assert agent.attributes["phalanx.agent.tool_calls"] == 1
        assert agent.status == "completed"

    # Tokens are the journaled responses' usage, summed up the tree.
    journaled = [
        e.data["result"]["usage"]
        for e in events
        if e.type == "StepCompleted" and "/model/" in e.data["name"]
    ]
    vector_agent = fanout.children[0].children[0].children[0]
    first_chat = vector_agent.children[0]
    assert first_chat.name == "chat scripted-1"
    assert first_chat.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert first_chat.attributes["gen_ai.usage.input_tokens"] == journaled[0]["input_tokens"]
    assert vector_agent.tokens() == (
        sum(u["input_tokens"] for u in journaled),
        sum(u["output_tokens"] for u in journaled),
    )
    assert vector_agent.children[1].name == "execute_tool search_vectors"
    assert orchestrator.name == "invoke_agent orchestrator"
    total_in = sum(n.tokens()[0] for n in (fanout, orchestrator))
    assert root.attributes["gen_ai.usage.input_tokens"] == total_in > 0
    assert root.tokens()[0] == total_in


def test_trace_command_prints_the_tree_and_its_json(tmp_path: Path) -> None:
    """`phalanx trace` shows the tree with outcomes and tokens; --json is the same tree."""
    store = f"sqlite:///{tmp_path / 'j.db'}"
    cli = CliRunner()
    ran = cli.invoke(
        app,
        ["run", "phalanx.demo:research", "--run-id", "demo-2", "--store", store,
         "--input", json.dumps({"faults": {"synthesis": "error"}})],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output

    shown = cli.invoke(app, ["trace", "demo-2", "--store", store, "--json"])
    assert shown.exit_code == 0, shown.output
    tree: dict[str, Any] = json.loads(shown.stdout)
    assert tree["run_id"] == "demo-2"
    root = tree["root"]
    assert set(root) == {
        "kind", "name", "status", "start", "end", "duration_s", "tokens", "attributes", "children"
    }  # fmt: skip
    fanout = root["children"][0]
    assert fanout["attributes"]["phalanx.fanout.partial"] is True
    synthesis = next(b for b in fanout["children"] if b["name"] == "branch synthesis")
    assert synthesis["status"] == "failed"
    assert "ModelError" in synthesis["attributes"]["phalanx.branch.error"]
    (run,) = synthesis["children"]
    chat = run["children"][0]["children"][0]
    assert chat["kind"] == "chat"
    assert chat["status"] == "failed"
    assert chat["attributes"]["phalanx.step.attempts"] == 2  # the agent's model retry
    assert root["tokens"]["input"] > 0
    decision = next(c for c in root["children"] if c["kind"] == "decision")
    assert decision["name"] == "accept_partial:research"

    text = cli.invoke(app, ["trace", "demo-2", "--store", store])
    assert text.exit_code == 0, text.output
    assert "invoke_agent vector_db" in text.stdout
    assert "execute_tool web_search" in text.stdout
    assert "PARTIAL" in text.stdout
    assert "2 attempts" in text.stdout

    missing = cli.invoke(app, ["trace", "nope", "--store", store])
    assert missing.exit_code == 2


async def test_agent_steps_carry_agent_and_turn_as_event_data(tmp_path: Path) -> None:
    """An agent's model and tool steps journal `agent`, `turn` and the tool as tags."""
    async with phalanx.open_runtime(f"sqlite:///{tmp_path / 'j.db'}") as runtime:
        outcome = await runtime.run(research, {"faults": {}}, run_id="demo-1")
        assert outcome.status == "completed"
        events = (await runtime.history("demo-1.1.vector_db")).events
    tags = [e.data.get("tags") for e in events if e.type in ("StepStarted", "StepCompleted")]
    chat_1 = {"agent": "vector_db", "turn": 1, "operation": "chat"}
    tool = {
        "agent": "vector_db",
        "turn": 1,
        "operation": "execute_tool",
        "tool": "search_vectors",
        "index": 0,
    }
    chat_2 = {"agent": "vector_db", "turn": 2, "operation": "chat"}
    # Started and Completed of each step, in order.
    assert tags == [chat_1, chat_1, tool, tool, chat_2, chat_2]


async def test_the_tree_groups_agents_by_step_tags_not_step_names(tmp_path: Path) -> None:
    """A tagged step is an agent's chat whatever its name; an untagged one is a plain step."""
    async with phalanx.open_runtime(f"sqlite:///{tmp_path / 'j.db'}") as runtime:
        outcome = await runtime.run(workflows.tagged_steps, run_id="tags")
        assert outcome.status == "completed"
        root = await trace_run(runtime, "tags")
    assert kinds(root) == ["invoke_agent", "step"]
    agent, plain = root.children
    assert agent.name == "invoke_agent solo"
    assert [(c.kind, c.attributes["phalanx.agent.turn"]) for c in agent.children] == [("chat", 1)]
    assert agent.children[0].name == "chat m"
    assert plain.name == "phalanx.step impostor/model/1"
