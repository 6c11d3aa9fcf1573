"""Scripted scenarios that provoke each failure mode (and clean twins that do not).

Module level, so runs (and replays) re-import them. Every model is the offline
scripted one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import phalanx
from phalanx.agents import Agent, Rule, Script, ScriptedModel, Turn
from phalanx.demo import sub_agent
from phalanx.durable import RetryPolicy, lowlevel
from phalanx.patterns import Branch, Peer, Policy, converse, gather, messages, send
from phalanx.tools import tool


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"notes on {query}"


@tool(retry=RetryPolicy(max_attempts=1))
def weather(city: str) -> str:
    """The weather service, which is down."""
    raise phalanx.ToolFailed(f"weather service for {city} is down", retryable=False)


def _agent(
    name: str, turns: tuple[Turn, ...], *, max_turns: int = 6, latency: float = 0.01
) -> Agent[str]:
    model = ScriptedModel(Script(rules=(Rule(name, turns),)), latency=latency)
    return Agent(
        name,
        model=model,
        instructions=f"You are {name}.",
        tools=[lookup, weather],
        max_turns=max_turns,
        model_retry=RetryPolicy(max_attempts=1),
    )


def _call(tool_name: str, **arguments: Any) -> Turn:
    return Turn(tool_calls=((tool_name, arguments),))


@phalanx.workflow
async def looping(ctx: phalanx.WorkflowContext, loop: bool) -> dict[str, Any]:
    """An agent that repeats one tool call (loop=True) or varies its queries."""
    calls = (
        [_call("lookup", query="leases")] * 3
        if loop
        else [_call("lookup", query=q) for q in ("leases", "fencing", "epochs")]
    )
    result = await _agent("looper", (*calls, Turn(text="Done: {tool_results}"))).run(ctx, "go")
    return {"answer": result.text}


@phalanx.workflow
async def unbounded(ctx: phalanx.WorkflowContext, answers: bool) -> dict[str, Any]:
    """An agent that never answers and runs into its turn bound (or answers in time)."""
    calls = tuple(_call("lookup", query=f"q{i}") for i in range(5))
    turns = (*calls[:2], Turn(text="Found it.")) if answers else calls
    result = await _agent("wanderer", turns, max_turns=4).run(ctx, "go")
    return {"answer": result.text}


@phalanx.workflow
async def premature(ctx: phalanx.WorkflowContext, wait: bool) -> dict[str, Any]:
    """Answer while the sources are still being gathered (or after they arrived)."""
    branches = {
        name: Branch(sub_agent, {"agent": name, "question": "q", "faults": {}})
        for name in ("vector_db", "synthesis")
    }
    writer = _agent("writer", (Turn(text="The answer, from what the sources said."),))

    async def collect() -> Any:
        return await gather(ctx, "sources", branches, policy=Policy.all(), deadline=30)

    if wait:
        result = await collect()
        answer = await writer.run(ctx, f"sources: {sorted(result.values)}")
    else:
        async with asyncio.TaskGroup() as group:
            sources = group.create_task(collect())
            answering = group.create_task(writer.run(ctx, "answer now"))
        result, answer = sources.result(), answering.result()
    return {"answer": answer.text, "partial": result.partial}


@phalanx.workflow
async def unacknowledged(ctx: phalanx.WorkflowContext, deadline_s: float = 1.5) -> dict[str, Any]:
    """Synthesise from a partial fan-out without `accept_partial` and without naming the gap."""
    branches = {
        name: Branch(sub_agent, {"agent": name, "question": "q", "faults": {"web_search": "hang"}})
        for name in ("vector_db", "web_search", "synthesis")
    }
    result = await gather(ctx, "research", branches, policy=Policy.all(), deadline=deadline_s)
    # The mistake: the values read straight from the outcomes, skipping accept_partial.
    values = {n: o.value for n, o in result.outcomes.items() if o.status == "succeeded"}
    writer = _agent("orchestrator", (Turn(text="Confident answer from every source."),))
    final = await writer.run(ctx, "\n".join(v["text"] for v in values.values()))
    return {
        "answer": final.text,
        "partial": result.partial,
        "missing": result.missing,
        "branches": {n: o.to_json() for n, o in result.outcomes.items()},
    }


@phalanx.workflow
async def tool_error(ctx: phalanx.WorkflowContext, admit: bool) -> dict[str, Any]:
    """An agent whose tool fails: it glosses over it (admit=False) or says so."""
    text = "The weather tool failed, so I cannot say." if admit else "It will be sunny in Oslo."
    result = await _agent("forecaster", (_call("weather", city="Oslo"), Turn(text=text))).run(
        ctx, "weather in Oslo?"
    )
    return {"answer": result.text}


@phalanx.workflow
async def disagreement(ctx: phalanx.WorkflowContext, decide: str | None) -> dict[str, Any]:
    """Replicas that disagree, journaled as `vote` does; decided (or not) afterwards.

    `decide`: None (nothing decided), `accepted` or `escalated` (never answered).
    """
    op, _ = lowlevel.claim(ctx, "vote", "capital")
    base = {"op": op, "name": "capital"}
    await lowlevel.record(
        ctx, "VoteStarted", {**base, "replicas": ["r1", "r2"], "rule": "majority"}
    )
    await lowlevel.record(
        ctx,
        "DisagreementDetected",
        {
            **base,
            "votes": {"r1": "Paris", "r2": "Lyon"},
            "statuses": {"r1": "succeeded", "r2": "succeeded"},
            "dissenters": ["r2"],
            "agreement": 0.5,
            "decision": decide or "none",
        },
    )
    if decide is not None:
        await lowlevel.record(ctx, "VoteDecided", {**base, "decision": decide, "answer": "Paris"})
    return {"answer": "Paris"}


def _note(index: int) -> str:
    return f"afterthought {index}"


@phalanx.workflow
async def chatty(ctx: phalanx.WorkflowContext, other: str, limit: int, linger: bool) -> int:
    """A peer volleying numbers; with `linger`, it goes on working after being told to stop."""
    count = 0
    async for message in messages(ctx):
        count += 1
        if message.body < limit:
            await send(ctx, other, message.body + 1)
    if linger:  # the conversation is over, and this peer has not noticed
        for index in range(2):
            await ctx.step(f"afterthought/{index}", _note, index)
    return count


@phalanx.workflow
async def lingering(ctx: phalanx.WorkflowContext, linger: bool) -> dict[str, Any]:
    """Two peers; one of them (if `linger`) keeps working after the conversation ended."""
    result = await converse(
        ctx,
        "volley",
        {
            "ping": Peer(chatty, {"other": "pong", "limit": 3, "linger": False}),
            "pong": Peer(chatty, {"other": "ping", "limit": 3, "linger": linger}),
        },
        start={"ping": 0},
    )
    return result.to_json()
