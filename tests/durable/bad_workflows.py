"""Workflows that meet data no journal can hold, for tests/durable/test_bad_data.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import phalanx
from phalanx.agents import Agent, ModelRequest, ModelResponse, StreamChunk
from phalanx.agents._scripted import Rule, Script, ScriptedModel, Turn

#: What `produce` returns, set by each test (module state: workflows run in-process).
VALUE: dict[str, Any] = {"value": None}
#: Set to make `produce` hang until the test cancels its runner (a simulated crash).
HANG = {"on": False}


async def produce() -> Any:
    """A step returning whatever the test chose, or hanging like a dead process."""
    if HANG["on"]:
        await asyncio.Event().wait()
    return VALUE["value"]


def poisoned_items() -> dict[str, Any]:
    """A tool-like result with a lone surrogate deep inside."""
    return {"items": [{"text": "ok"}] * 3 + [{"text": "caf\ud800"}]}


def raises_with_a_surrogate() -> None:
    """A step whose error message holds a lone surrogate."""
    raise ValueError("bad byte: \udcff")


@phalanx.workflow
async def step_result(ctx: phalanx.WorkflowContext) -> Any:
    """Journal whatever `produce` returns as a step result."""
    return await ctx.step("produce", produce)


@phalanx.workflow
async def poisoned(ctx: phalanx.WorkflowContext) -> Any:
    """The issue's poisoned step: a lone surrogate at result.items[3].text."""
    return await ctx.step("fetch", poisoned_items)


@phalanx.workflow
async def bad_error(ctx: phalanx.WorkflowContext) -> Any:
    """A step failing with a message the journal cannot hold as is."""
    await ctx.step("explode", raises_with_a_surrogate)


@phalanx.workflow
async def run_result(ctx: phalanx.WorkflowContext) -> Any:
    """Return `produce`'s value as the run's own result, outside any step."""
    return VALUE["value"]


@phalanx.workflow
async def echo(ctx: phalanx.WorkflowContext, topic: Any) -> Any:
    """Echo an input through a step."""
    return await ctx.step("echo", lambda: topic)


@phalanx.workflow
async def waiter(ctx: phalanx.WorkflowContext) -> Any:
    """Wait for the `approve` signal and return its data."""
    return await ctx.wait_for_signal("approve", timeout=30)


@phalanx.tool(timeout=5)
def lookup(query: str) -> dict[str, Any]:
    """A tool whose result holds what the test chose."""
    return {"query": query, "hit": VALUE["value"]}


@phalanx.workflow
async def tool_result(ctx: phalanx.WorkflowContext) -> Any:
    """Call `lookup` through the reliable tool layer."""
    return await phalanx.call_tool(ctx, lookup, query="q")


MODEL = ScriptedModel(
    Script(rules=(Rule("surrogate", (Turn(text="the answer is caf\udfff"),)),)),
    latency=0,
    seconds_per_token=0.0,
)
AGENT = Agent("writer", model=MODEL, instructions="answer with a surrogate")


@phalanx.workflow
async def model_response(ctx: phalanx.WorkflowContext) -> Any:
    """An agent whose model answers with a lone surrogate."""
    return (await AGENT.run(ctx, "go")).output


#: The text `echo_model`'s model answers with, set by each test.
ANSWER = {"text": ""}


class VerbatimModel:
    """A model that answers `text` exactly (a scripted `Turn` would expand `{prompt}`)."""

    provider = "test"
    name = "verbatim"

    def __init__(self, text: str) -> None:
        self.text = text

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(text=self.text, model=self.name, provider=self.provider)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(text=self.text, response=await self.complete(request))


@phalanx.workflow
async def echo_model(ctx: phalanx.WorkflowContext) -> Any:
    """An agent whose model answers with `ANSWER["text"]`, verbatim."""
    model = VerbatimModel(ANSWER["text"])
    return (await Agent("echoer", model=model).run(ctx, "go")).output
