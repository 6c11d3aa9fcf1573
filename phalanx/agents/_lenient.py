"""Lenient tool calls: a call a model wrote as JSON text, recognised as the call it is.

Small local models (Qwen2.5-Coder-0.5B behind llama.cpp's OpenAI-compatible server,
for one) pick the right tool and arguments but write the call into the message text,
bare or in a code fence, so `tool_calls` comes back empty and the agent would take the
JSON for its final answer. `LenientToolCalls(model)` is the opt-in for such a model:
when a response has no tool calls and its text is a call (an object with `name` and
`arguments` or `parameters`, a list of them, or either in a ```json fence) that names
a tool of the request and whose arguments validate against that tool's schema, the
response becomes those tool calls, each marked `recovered_from_text` (journaled with
the model step, so the record says the call was not the model's own `tool_calls`).
Anything else, text naming an unknown tool or arguments that break the schema
included, stays the text it was: lenience never invents a call.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import pydantic

from ..tools import schema_model
from ._messages import ModelRequest, ModelResponse, StreamChunk, ToolCall, ToolSpec
from ._model import Model

_FENCE = re.compile(r"```[\w-]*\s*\n(.*?)```", re.DOTALL)


class LenientToolCalls:
    """`model`, with tool calls written as text recognised (see the module docstring).

    Example::

        local = OpenAICompatibleModel("qwen2.5-coder", base_url="http://127.0.0.1:8080/v1")
        agent = Agent("coder", model=LenientToolCalls(local), tools=[run_tests])
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.provider = model.provider
        self.name = model.name

    def __repr__(self) -> str:
        return f"LenientToolCalls({self.model!r})"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The model's answer, with a call written as text turned into a tool call."""
        return recover_tool_calls(await self.model.complete(request), request.tools)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """The model's stream; its final response as `complete` gives it."""
        async with aclosing(self.model.stream(request)) as chunks:  # type: ignore[type-var]  # an async generator in every adapter
            async for chunk in chunks:
                if chunk.response is not None:
                    chunk = chunk.model_copy(
                        update={"response": recover_tool_calls(chunk.response, request.tools)}
                    )
                yield chunk


def recover_tool_calls(response: ModelResponse, tools: Sequence[ToolSpec]) -> ModelResponse:
    """`response` with the tool calls its text spells out, if it spells out valid ones."""
    if response.tool_calls or not response.text or not tools:
        return response
    calls = _calls_in(response.text, {t.name: t for t in tools})
    if not calls:
        return response
    return response.model_copy(
        update={"text": None, "tool_calls": tuple(calls), "finish_reason": "tool_calls"}
    )


def _calls_in(text: str, tools: Mapping[str, ToolSpec]) -> list[ToolCall]:
    for candidate in [text.strip(), *_FENCE.findall(text)]:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        items = value if isinstance(value, list) else [value]
        calls = [_call(item, index, tools) for index, item in enumerate(items)]
        if items and all(call is not None for call in calls):
            return [call for call in calls if call is not None]
    return []


def _call(item: Any, index: int, tools: Mapping[str, ToolSpec]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):  # {"type": "function", "function": {...}}
        item = item["function"]
    name = item.get("name")
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    spec = tools.get(name) if isinstance(name, str) else None
    if spec is None or not isinstance(arguments, dict):
        return None
    try:
        schema_model(spec.name, spec.parameters).model_validate(arguments)
    except (pydantic.ValidationError, TypeError):
        return None
    return ToolCall(
        id=f"text_call_{index}",
        name=spec.name,
        arguments=json.dumps(arguments),
        recovered_from_text=True,
    )
