"""Agents and workflows the agent tests run (module level: runs re-import them)."""

from __future__ import annotations

from typing import Any

import pydantic

import phalanx
from phalanx.agents import (
    Agent,
    Model,
    ModelRequest,
    ModelResponse,
    Rule,
    Script,
    ScriptedModel,
    StreamChunk,
    Turn,
)
from phalanx.tools import tool

TOOL_CALLS: list[dict[str, Any]] = []


@tool
def lookup(city: str, days: int = 1) -> dict[str, Any]:
    """Weather for a city."""
    TOOL_CALLS.append({"city": city, "days": days})
    return {"city": city, "forecast": ["sun"] * days}


class Counting:
    """Wraps a model and counts the calls that reach it."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.name = inner.name
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return await self.inner.complete(request)

    def stream(self, request: ModelRequest) -> Any:
        self.requests.append(request)
        return self.inner.stream(request)


class Forecast(pydantic.BaseModel):
    city: str
    sunny: bool


WEATHER = Script(
    rules=(
        Rule(
            "weather",
            (
                Turn(tool_calls=(("lookup", {"city": "Oslo", "days": 2}),)),
                Turn(text="It will be sunny: {tool_results}"),
            ),
        ),
        Rule(
            "bad-json",
            (
                Turn(tool_calls=(("lookup", '{"city": "Oslo",'),)),
                Turn(text="gave up: {tool_results}"),
            ),
        ),
        Rule(
            "bad-schema",
            (Turn(tool_calls=(("lookup", {"town": 3}),)), Turn(text="gave up: {tool_results}")),
        ),
        Rule("unknown-tool", (Turn(tool_calls=(("teleport", {}),)), Turn(text="{tool_results}"))),
        Rule("loop-forever", (Turn(tool_calls=(("lookup", {"city": "Rome"}),)),)),
        Rule(
            "structured-fixed",
            (Turn(text='{"city": "Oslo"}'), Turn(text='{"city": "Oslo", "sunny": true}')),
        ),
        Rule("structured-never", (Turn(text="not json at all"),)),
    )
)

MODEL = Counting(ScriptedModel(WEATHER, latency=0.001, seconds_per_token=0.0))


def agent(instructions: str, **options: Any) -> Agent[Any]:
    return Agent("forecaster", model=MODEL, instructions=instructions, tools=[lookup], **options)


@phalanx.workflow
async def ask(ctx: phalanx.WorkflowContext, instructions: str, prompt: str) -> dict[str, Any]:
    result = await agent(instructions, max_turns=3).run(ctx, prompt)
    return result.to_json()


@phalanx.workflow
async def ask_structured(ctx: phalanx.WorkflowContext, instructions: str) -> dict[str, Any]:
    result = await agent(instructions, output_type=Forecast, output_retries=1).run(ctx, "go")
    return result.to_json()


__all__ = ["MODEL", "TOOL_CALLS", "StreamChunk"]


class Crash(BaseException):
    """Stands in for a process dying mid-step (not an Exception: nothing catches it)."""


CRASH_NEXT_TOOL = [False]


@tool
def fragile(city: str) -> str:
    """A tool during which the process 'dies' once."""
    TOOL_CALLS.append({"city": city})
    if CRASH_NEXT_TOOL[0]:
        CRASH_NEXT_TOOL[0] = False
        raise Crash
    return f"{city}: sunny"


FRAGILE = Script(
    rules=(
        Rule(
            "fragile",
            (
                Turn(tool_calls=(("fragile", {"city": "Oslo"}),)),
                Turn(tool_calls=(("fragile", {"city": "Rome"}),)),
                Turn(text="done: {tool_results}"),
            ),
        ),
    )
)
FRAGILE_MODEL = Counting(ScriptedModel(FRAGILE, latency=0.001, seconds_per_token=0.0))


@phalanx.workflow
async def ask_fragile(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    agent = Agent("fragile", model=FRAGILE_MODEL, instructions="fragile", tools=[fragile])
    return (await agent.run(ctx, "go")).to_json()
