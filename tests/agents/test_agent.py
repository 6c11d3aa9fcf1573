"""The agent tool loop: tools, bad arguments, limits, structured output, durability."""

from __future__ import annotations

from typing import Any

import pytest

import phalanx
import phalanx.agents
from phalanx.agents import ModelRequest, Rule, Script, ScriptedModel, Turn
from tests.agents import workflows as wf


@pytest.fixture(autouse=True)
def _reset() -> None:
    wf.TOOL_CALLS.clear()
    wf.MODEL.requests.clear()


async def run(url: str, workflow: Any, inputs: dict[str, Any]) -> phalanx.RunOutcome:
    async with phalanx.open_runtime(url) as runtime:
        return await runtime.run(workflow, inputs)


async def test_tool_loop_calls_the_tool_and_feeds_the_result_back(url: str) -> None:
    """A tool call is validated, run once, and its result reaches the model's next turn."""
    outcome = await run(url, wf.ask, {"instructions": "weather agent", "prompt": "Oslo?"})
    assert outcome.ok, outcome.error
    assert wf.TOOL_CALLS == [{"city": "Oslo", "days": 2}]
    assert outcome.result["output"].startswith("It will be sunny")
    assert '"forecast": ["sun", "sun"]' in outcome.result["output"]
    assert outcome.result["turns"] == 2
    assert outcome.result["usage"]["input_tokens"] > 0
    second = wf.MODEL.requests[1]
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "tool"]
    assert second.messages[0].content == "weather agent"
    assert second.tools[0].name == "lookup"
    assert second.tools[0].parameters["required"] == ["city"]


@pytest.mark.parametrize("case", ["bad-json", "bad-schema"])
async def test_invalid_arguments_go_back_to_the_model(url: str, case: str) -> None:
    """Malformed JSON or a schema violation never reaches the tool; the model is told why."""
    outcome = await run(url, wf.ask, {"instructions": case, "prompt": "x"})
    assert outcome.ok, outcome.error
    assert wf.TOOL_CALLS == []
    [record] = outcome.result["tool_calls"]
    assert record["outcome"] == "invalid_arguments"
    tool_message = wf.MODEL.requests[1].messages[-1]
    assert tool_message.role == "tool" and "invalid arguments for tool 'lookup'" in (
        tool_message.content or ""
    )
    if case == "bad-schema":
        assert "city" in record["error"] and "town" in record["error"]


async def test_unknown_tool_is_reported_to_the_model(url: str) -> None:
    """A call to a tool the agent lacks is answered with the list of real tools."""
    outcome = await run(url, wf.ask, {"instructions": "unknown-tool", "prompt": "x"})
    assert outcome.ok
    assert "unknown tool 'teleport'; available tools: lookup" in outcome.result["output"]


async def test_turn_limit_is_a_typed_error(url: str) -> None:
    """A model that never stops calling tools ends in MaxTurnsExceededError, not truncation."""
    outcome = await run(url, wf.ask, {"instructions": "loop-forever", "prompt": "x"})
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["type"].endswith("MaxTurnsExceededError")
    assert len(wf.MODEL.requests) == 3


async def test_structured_output_is_validated_and_corrected(url: str) -> None:
    """Invalid structured output is fed back once; the corrected answer validates."""
    outcome = await run(url, wf.ask_structured, {"instructions": "structured-fixed"})
    assert outcome.ok, outcome.error
    assert outcome.result["output"] == {"city": "Oslo", "sunny": True}
    feedback = wf.MODEL.requests[1].messages[-1]
    assert feedback.role == "user" and "sunny" in (feedback.content or "")
    assert wf.MODEL.requests[0].output_schema is not None


async def test_structured_output_that_stays_invalid_fails_with_the_last_output(
    url: str,
) -> None:
    """After its retries the agent fails with OutputValidationError carrying the raw output."""
    outcome = await run(url, wf.ask_structured, {"instructions": "structured-never"})
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error["type"].endswith("OutputValidationError")
    assert outcome.error["fields"]["last_output"] == "not json at all"
    assert outcome.error["fields"]["attempts"] == 2


async def test_resume_mid_loop_does_not_ask_the_model_again(url: str) -> None:
    """A run that dies in its second tool call resumes without re-asking answered turns."""
    wf.FRAGILE_MODEL.requests.clear()
    async with phalanx.open_runtime(url) as runtime:
        wf.CRASH_NEXT_TOOL[0] = False
        run_id = "fragile-1"

        async def crash_on_second_tool() -> None:
            await runtime.run(wf.ask_fragile, {}, run_id=run_id)

        # First tool call succeeds; arm the crash for the second one.
        original = wf.fragile.fn

        def arm_after_first(city: str) -> str:
            result = original(city)
            wf.CRASH_NEXT_TOOL[0] = True
            return result

        object.__setattr__(wf.fragile, "fn", arm_after_first)
        try:
            with pytest.raises(BaseException) as info:
                await crash_on_second_tool()
        finally:
            object.__setattr__(wf.fragile, "fn", original)
        assert isinstance(info.value, wf.Crash) or "Crash" in repr(info.value)
        assert len(wf.FRAGILE_MODEL.requests) == 2
        outcome = await runtime.resume(run_id, force=True)
    assert outcome.ok, outcome.error
    assert outcome.result["output"] == "done: Oslo: sunny; Rome: sunny"
    # Turns 1 and 2 were answered before the crash: only turn 3 reaches the model.
    assert len(wf.FRAGILE_MODEL.requests) == 3
    # The first tool ran once; the second was in flight at the crash and ran again.
    assert [c["city"] for c in wf.TOOL_CALLS] == ["Oslo", "Rome", "Rome"]


async def test_scripted_model_is_deterministic_and_labelled() -> None:
    """Same request, same answer and token counts; provider says scripted."""
    model = ScriptedModel(Script(rules=(Rule("x", (Turn(text="hello {prompt}"),)),)), latency=0)
    request = ModelRequest(messages=(phalanx.agents.Message.user("x marks"),))
    a, b = await model.complete(request), await model.complete(request)
    assert a.text == b.text == "hello x marks"
    assert a.usage == b.usage and a.usage.output_tokens == 4
    assert a.provider == "scripted" and a.time_to_first_token_s is not None
    chunks = [c async for c in model.stream(request)]
    assert "".join(c.text for c in chunks) == "hello x marks"
    assert chunks[-1].response is not None
