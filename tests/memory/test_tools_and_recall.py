"""Memory as agent tools (a conflict reaches the model with the current value) and recall."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import phalanx
from phalanx.agents import Agent, Rule, Script, ScriptedModel, Turn
from phalanx.journal import EventStore
from phalanx.memory import (
    HashedVectors,
    Memory,
    PostgresFullText,
    Recall,
    RecallIndex,
    SqliteFullText,
    memory_tools,
    open_memory_manager,
)

SCRIPT = Script(
    rules=(
        Rule(
            "You are the planner",
            (
                Turn(tool_calls=(("memory_read", {"key": "plan"}),)),
                # Based on version 1, which the other writer has since replaced.
                Turn(
                    tool_calls=(
                        (
                            "memory_compare_and_set",
                            {"key": "plan", "value": ["mine"], "based_on": 1},
                        ),
                    )
                ),
                Turn(
                    tool_calls=(
                        (
                            "memory_compare_and_set",
                            {"key": "plan", "value": ["theirs", "mine"], "based_on": 2},
                        ),
                    )
                ),
                Turn(
                    tool_calls=(
                        (
                            "memory_compare_and_set",
                            {"key": "plan", "value": {"bad": 1}, "based_on": "x"},
                        ),
                    )
                ),
                Turn(text="merged"),
            ),
        ),
    )
)


@phalanx.workflow
async def planner(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    tools = memory_tools(ctx, "plan", agent="planner")
    agent = Agent(
        "planner",
        model=ScriptedModel(SCRIPT, latency=0.001),
        tools=tools,
        instructions="You are the planner.",
    )
    result = await agent.run(ctx, "add your finding")
    return {"text": result.text, "tools": [m.content for m in result.messages if m.role == "tool"]}


async def test_a_conflict_reaches_the_model_with_the_current_value(
    runtime: phalanx.Runtime,
) -> None:
    """The model's stale CAS comes back as a typed conflict result it can merge from."""
    store = runtime.store
    async with open_memory_manager(store, "plan") as manager:
        other = Memory(store, "plan", agent="other", manager=manager).linearizable()
        await other.cas("plan", [], based_on=0)
        await other.cas("plan", ["theirs"], based_on=1)
        outcome = await runtime.run(planner, {}, run_id="planner")
        final = await other.read("plan")
    assert outcome.ok, outcome.error
    read, conflict, written, invalid = outcome.result["tools"]
    assert json.loads(read)["version"] == 2 and json.loads(read)["value"] == ["theirs"]
    conflict = json.loads(conflict)
    assert conflict["status"] == "conflict"
    assert (conflict["current_version"], conflict["current_value"]) == (2, ["theirs"])
    assert "based_on=current_version" in conflict["advice"]
    assert json.loads(written) == {"status": "written", "key": "plan", "version": 3}
    assert "based_on" in invalid and "schema" in invalid  # validated like any tool
    assert (final.value, final.version) == (["theirs", "mine"], 3)


async def test_the_tools_have_schemas_and_typed_results(store: EventStore) -> None:
    """Read, write and compare-and-set declare JSON schemas; results say what happened."""
    async with open_memory_manager(store, "notes") as manager:
        tools = {t.name: t for t in memory_tools(store, "notes", agent="a", manager=manager)}
        assert set(tools) == {"memory_read", "memory_write", "memory_compare_and_set"}
        assert tools["memory_compare_and_set"].parameters["required"] == [
            "key",
            "value",
            "based_on",
        ]
        with pytest.raises(phalanx.ToolArgumentsError):
            tools["memory_read"].validate({"key": 3, "extra": True})
        assert await phalanx.call_tool(None, tools["memory_read"], key="n") == {
            "status": "unknown_key",
            "key": "n",
            "advice": "No such key: create it with memory_write.",
        }
        created = await phalanx.call_tool(None, tools["memory_write"], key="n", value={"a": 1})
        again = await phalanx.call_tool(None, tools["memory_write"], key="n", value={"a": 2})
        never = await phalanx.call_tool(
            None, tools["memory_compare_and_set"], key="n", value=1, based_on=9
        )
    assert created == {"status": "written", "key": "n", "version": 1}
    assert again["status"] == "conflict" and again["current_value"] == {"a": 1}
    assert never["status"] == "refused" and never["current_version"] == 1


def index_for(backend: str, url: str, tmp_path: Path) -> RecallIndex:
    if backend == "sqlite":
        return SqliteFullText(tmp_path / "recall.db")
    return PostgresFullText(url)


async def close(index: RecallIndex) -> None:
    if isinstance(index, SqliteFullText):
        index.close()
    elif isinstance(index, PostgresFullText):
        await index.close()


@pytest.mark.parametrize("kind", ["fulltext", "vectors"])
async def test_recall_finds_the_latest_documents_by_what_they_say(
    store: EventStore, backend: str, url: str, tmp_path: Path, kind: str
) -> None:
    """Full text (FTS5 / PostgreSQL) and the vector stand-in rank the latest versions."""
    index = index_for(backend, url, tmp_path) if kind == "fulltext" else HashedVectors()
    recall = Recall(index)
    try:
        async with open_memory_manager(store, "facts") as manager:
            facts = Memory(store, "facts", manager=manager).linearizable()
            await facts.cas("leases", {"text": "a lease holder is fenced by its epoch"}, based_on=0)
            await facts.cas("sagas", {"text": "compensations run in reverse order"}, based_on=0)
            await facts.cas("votes", "replicas vote; disagreement is surfaced", based_on=0)
            assert await recall.sync(store, "facts") == 3
            hits = await recall.search("facts", "which epoch fences a lease?")
            assert hits[0].key == "leases" and hits[0].version == 1
            assert "fenced" in hits[0].snippet
            await facts.cas("leases", {"text": "leases expire; renew them"}, based_on=1)
            await facts.cas("sagas", {"text": "a fenced saga stops"}, based_on=1)
            assert await recall.sync(store, "facts") == 5
            hits = await recall.search("facts", "fenced")
            assert [h.key for h in hits] == ["sagas"] and hits[0].version == 2
            assert await recall.search("facts", "  ?! ") == []
            assert await recall.search("other memory", "fenced") == []
            tools = {
                t.name: t for t in memory_tools(store, "facts", manager=manager, recall=recall)
            }
            found = await phalanx.call_tool(None, tools["memory_search"], query="renew leases")
        assert found["hits"][0]["key"] == "leases"
    finally:
        await close(index)
