"""Lenient tool calls: a small model's call written as JSON text, against a real HTTP server.

The fake OpenAI-compatible server answers the way llama.cpp serving a small model does:
the call is in `content` (bare, or in a ```json fence) and `tool_calls` is empty.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import phalanx
from phalanx.agents import (
    Agent,
    LenientToolCalls,
    Message,
    Model,
    ModelRequest,
    model_from_spec,
)
from phalanx.agents._openai import OpenAICompatibleModel
from phalanx.tools import tool

from .fake_openai_server import FakeModelServer

LOOKUPS: list[str] = []


@tool
def lookup(city: str, days: int = 1) -> dict[str, Any]:
    """The weather forecast for a city."""
    LOOKUPS.append(city)
    return {"city": city, "forecast": ["sun"] * days}


def _model(base_url: str, lenient: bool) -> Model:
    model = OpenAICompatibleModel("qwen2.5-coder-0.5b", base_url=base_url, timeout=10.0)
    return LenientToolCalls(model) if lenient else model


@phalanx.workflow
async def forecast(ctx: phalanx.WorkflowContext, base_url: str, lenient: bool) -> dict[str, Any]:
    agent = Agent("forecaster", model=_model(base_url, lenient), tools=[lookup], max_turns=3)
    return (await agent.run(ctx, "Weather in Oslo?")).to_json()


@pytest.fixture(autouse=True)
def _reset() -> None:
    LOOKUPS.clear()


async def _run(
    tmp_path: Path, server: FakeModelServer, *, lenient: bool
) -> tuple[phalanx.RunOutcome, list[phalanx.Event]]:
    inputs = {"base_url": server.base_url, "lenient": lenient}
    async with phalanx.open_runtime(f"sqlite:///{tmp_path / 'j.db'}") as runtime:
        outcome = await runtime.run(forecast, inputs, run_id="r")
        return outcome, (await runtime.history("r")).events


CALL = {"name": "lookup", "arguments": {"city": "Oslo", "days": 2}}


@pytest.mark.parametrize(
    "written",
    [
        json.dumps(CALL),
        f"```json\n{json.dumps(CALL)}\n```",
        f"Sure, here is the call:\n```\n{json.dumps(CALL, indent=2)}\n```\n",
        json.dumps({"name": "lookup", "parameters": {"city": "Oslo", "days": 2}}),
        json.dumps(
            [{"type": "function", "function": {**CALL, "arguments": json.dumps(CALL["arguments"])}}]
        ),
    ],
    ids=["bare", "json-fence", "prose-and-fence", "parameters", "openai-shaped-list"],
)
async def test_a_call_written_as_text_is_called_and_journaled_as_recovered(
    tmp_path: Path, fake_server: FakeModelServer, written: str
) -> None:
    """Lenient: the text names a declared tool with valid arguments, so the tool runs."""
    fake_server.queue({"kind": "text", "text": written}, {"kind": "text", "text": "Sunny, twice."})
    outcome, events = await _run(tmp_path, fake_server, lenient=True)
    assert outcome.ok, outcome.error
    assert LOOKUPS == ["Oslo"]
    assert outcome.result["output"] == "Sunny, twice."
    assert [c["outcome"] for c in outcome.result["tool_calls"]] == ["ok"]
    first_model_step = next(
        e for e in events if e.type == "StepCompleted" and e.data["name"] == "forecaster/model/1"
    )
    [call] = first_model_step.data["result"]["tool_calls"]
    assert call["name"] == "lookup" and call["recovered_from_text"] is True
    assert json.loads(call["arguments"]) == {"city": "Oslo", "days": 2}
    second = fake_server.stats()["bodies"][1]["messages"]
    assert [m["role"] for m in second][-2:] == ["assistant", "tool"]
    assert "sun" in second[-1]["content"]


async def test_without_lenience_the_text_is_the_answer(
    tmp_path: Path, fake_server: FakeModelServer
) -> None:
    """Not opted in: the call written as text is taken for the final answer (no tool runs)."""
    fake_server.queue({"kind": "text", "text": json.dumps(CALL)})
    outcome, _ = await _run(tmp_path, fake_server, lenient=False)
    assert outcome.ok and LOOKUPS == []
    assert json.loads(outcome.result["output"]) == CALL


@pytest.mark.parametrize(
    "written",
    [
        json.dumps({"name": "teleport", "arguments": {"city": "Oslo"}}),
        json.dumps({"name": "lookup", "arguments": {"town": "Oslo"}}),
        json.dumps({"name": "lookup", "arguments": {"city": "Oslo", "days": "many"}}),
        json.dumps({"city": "Oslo"}),
        "I would call lookup for Oslo.",
    ],
    ids=["unknown-tool", "missing-argument", "wrong-type", "no-name", "prose"],
)
async def test_text_that_is_not_a_valid_call_stays_text(
    tmp_path: Path, fake_server: FakeModelServer, written: str
) -> None:
    """Lenience never invents a call: unknown tools and invalid arguments stay text."""
    fake_server.queue({"kind": "text", "text": written})
    outcome, _ = await _run(tmp_path, fake_server, lenient=True)
    assert outcome.ok, outcome.error
    assert LOOKUPS == [] and outcome.result["output"] == written


def test_phalanx_model_opts_in_with_an_environment_variable() -> None:
    """`PHALANX_LENIENT_TOOL_CALLS=1` wraps an openai-compatible model; unset, it does not."""
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    plain = model_from_spec("openai-compatible:qwen", env=env)
    lenient = model_from_spec(
        "openai-compatible:qwen", env={**env, "PHALANX_LENIENT_TOOL_CALLS": "1"}
    )
    assert isinstance(plain, OpenAICompatibleModel)
    assert isinstance(lenient, LenientToolCalls) and isinstance(
        lenient.model, OpenAICompatibleModel
    )
    assert (lenient.provider, lenient.name) == ("openai-compatible", "qwen")


async def test_streaming_ends_with_the_recovered_call(fake_server: FakeModelServer) -> None:
    """`stream` relays the model's chunks; its final response carries the recovered call."""
    fake_server.queue({"kind": "text", "text": json.dumps(CALL)})
    model = LenientToolCalls(_model(fake_server.base_url, lenient=False))
    request = ModelRequest(messages=(Message.user("Oslo?"),), tools=(lookup.spec(),))
    chunks = [chunk async for chunk in model.stream(request)]
    final = chunks[-1].response
    assert final is not None and final.text is None and final.finish_reason == "tool_calls"
    [call] = final.tool_calls
    assert call.name == "lookup" and call.recovered_from_text
