"""The Agent: a model, instructions and tools, run in a durable tool loop.

Every model call and every tool call is a workflow step, so a run killed in the middle
of the loop resumes without asking the model again for turns it already answered and
without re-running finished tools. What the model gets wrong is fed back to it, not
raised: unknown tools, arguments that are not JSON or break the schema, failed tools,
structured output that does not validate (the last within a bounded number of
retries). What cannot be fixed by talking to the model is a typed error: the turn
limit, the timeout, model errors that retries did not cure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pydantic

from .._errors import (
    AgentTimeoutError,
    MaxTurnsExceededError,
    ModelError,
    OutputValidationError,
    ToolArgumentsError,
)
from ..durable import RetryPolicy, WorkflowContext
from ..tools import Tool
from ..tools._tool import encode_result
from ._messages import Message, ModelRequest, ModelResponse, ToolCall, Usage
from ._model import Model
from ._registry import model_from_env

OutputT = TypeVar("OutputT")

#: Model calls retry what the provider says is transient (429 honours Retry-After).
DEFAULT_MODEL_RETRY = RetryPolicy(
    max_attempts=4, initial_interval=1.0, max_interval=30.0, retry_on=(ModelError,)
)


@dataclass(frozen=True)
class ToolCallRecord:
    """What happened to one tool call the model asked for."""

    turn: int
    tool: str
    call_id: str
    outcome: str  # "ok", "invalid_arguments", "unknown_tool", "failed"
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form, for results and journals."""
        return {
            "turn": self.turn,
            "tool": self.tool,
            "call_id": self.call_id,
            "outcome": self.outcome,
            "error": self.error,
        }


@dataclass(frozen=True)
class AgentResult(Generic[OutputT]):
    """An agent's final answer and how it got there."""

    agent: str
    output: OutputT
    text: str
    turns: int
    usage: Usage
    tool_calls: tuple[ToolCallRecord, ...] = ()
    messages: tuple[Message, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON form (the output as JSON), to return from a workflow."""
        output: Any = self.output
        if isinstance(output, pydantic.BaseModel):
            output = output.model_dump(mode="json")
        return {
            "agent": self.agent,
            "output": output,
            "turns": self.turns,
            "usage": self.usage.model_dump(),
            "tool_calls": [c.to_json() for c in self.tool_calls],
        }


class Agent(Generic[OutputT]):
    """An LLM agent with tools, run durably inside a workflow.

    Example::

        researcher = Agent("researcher", role="research", model=model,
                           instructions="Find facts; cite sources.", tools=[search])

        @phalanx.workflow
        async def research(ctx, question: str) -> dict:
            result = await researcher.run(ctx, question)
            return result.to_json()

    Raises (from `run`):
        MaxTurnsExceededError: no final answer within `max_turns` model calls.
        OutputValidationError: structured output invalid after `output_retries` tries.
        AgentTimeoutError: the whole loop took longer than `timeout`.
        ModelError: the model kept failing after its retry policy.
    """

    def __init__(
        self,
        name: str,
        *,
        model: Model | None = None,
        instructions: str = "",
        role: str = "",
        tools: Sequence[Tool] = (),
        max_turns: int = 8,
        timeout: float | None = None,
        output_type: type[OutputT] | None = None,
        output_retries: int = 2,
        model_retry: RetryPolicy = DEFAULT_MODEL_RETRY,
    ) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"agent {name!r}: duplicate tool names in {names}")
        self.name = name
        self.role = role
        self.instructions = instructions
        # No model given: the one PHALANX_MODEL names (the scripted model if unset).
        self.model = model if model is not None else model_from_env()
        self.tools = {t.name: t for t in tools}
        self.max_turns = max_turns
        self.timeout = timeout
        self.output_type = output_type
        self.output_retries = output_retries
        self.model_retry = model_retry
        self._output_adapter: pydantic.TypeAdapter[OutputT] | None = (
            pydantic.TypeAdapter(output_type) if output_type is not None else None
        )

    def _output_schema(self) -> dict[str, Any] | None:
        return None if self._output_adapter is None else self._output_adapter.json_schema()

    async def _call_model(self, request: ModelRequest) -> dict[str, Any]:
        response = await self.model.complete(request)
        return response.model_dump(mode="json")

    async def run(
        self, ctx: WorkflowContext, prompt: str, *, history: Sequence[Message] = ()
    ) -> AgentResult[OutputT]:
        """Run the tool loop for `prompt` until a final (valid) answer."""
        if self.timeout is None:
            return await self._loop(ctx, prompt, history)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._loop(ctx, prompt, history)
        except TimeoutError as exc:
            raise AgentTimeoutError(agent=self.name, timeout=self.timeout) from exc

    async def _loop(
        self, ctx: WorkflowContext, prompt: str, history: Sequence[Message]
    ) -> AgentResult[OutputT]:
        messages: list[Message] = []
        if self.instructions:
            messages.append(Message.system(self.instructions))
        messages.extend(history)
        messages.append(Message.user(prompt))
        specs = tuple(t.spec() for t in self.tools.values())
        records: list[ToolCallRecord] = []
        usage = Usage()
        invalid_outputs = 0
        for turn in range(1, self.max_turns + 1):
            request = ModelRequest(
                messages=tuple(messages), tools=specs, output_schema=self._output_schema()
            )
            raw = await ctx.step(
                f"{self.name}/model/{turn}", self._call_model, request, retry=self.model_retry
            )
            response = ModelResponse.model_validate(raw)
            usage = Usage(
                input_tokens=usage.input_tokens + response.usage.input_tokens,
                output_tokens=usage.output_tokens + response.usage.output_tokens,
            )
            messages.append(response.as_message())
            if response.tool_calls:
                for index, call in enumerate(response.tool_calls):
                    reply, record = await self._run_tool(ctx, turn, index, call)
                    messages.append(Message.tool_result(call, reply))
                    records.append(record)
                continue
            text = response.text or ""
            if self._output_adapter is None:
                # Without an output_type the output is the text: OutputT is str here.
                plain: Any = text
                return AgentResult(
                    self.name, plain, text, turn, usage, tuple(records), tuple(messages)
                )
            try:
                output = self._output_adapter.validate_json(text)
            except pydantic.ValidationError as exc:
                invalid_outputs += 1
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(output)'}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
                if invalid_outputs > self.output_retries:
                    raise OutputValidationError(
                        agent=self.name, attempts=invalid_outputs, last_output=text, errors=problems
                    ) from exc
                messages.append(
                    Message.user(
                        "Your answer does not match the required JSON schema: "
                        f"{problems}. Reply again with only a JSON value that matches it."
                    )
                )
                continue
            return AgentResult(
                self.name, output, text, turn, usage, tuple(records), tuple(messages)
            )
        raise MaxTurnsExceededError(agent=self.name, max_turns=self.max_turns)

    async def _run_tool(
        self, ctx: WorkflowContext, turn: int, index: int, call: ToolCall
    ) -> tuple[str, ToolCallRecord]:
        tool = self.tools.get(call.name)
        if tool is None:
            available = ", ".join(sorted(self.tools)) or "none"
            error = f"unknown tool {call.name!r}; available tools: {available}"
            return f"error: {error}", ToolCallRecord(
                turn, call.name, call.id, "unknown_tool", error
            )
        try:
            arguments = tool.validate(call.arguments)
        except ToolArgumentsError as exc:
            reply = f"error: {exc}. Call the tool again with arguments matching its schema."
            return reply, ToolCallRecord(turn, call.name, call.id, "invalid_arguments", exc.errors)
        try:
            result = await ctx.step(
                f"{self.name}/tool/{call.name}/{turn}.{index}",
                self._invoke_tool,
                ctx,
                tool,
                arguments,
                retry=tool.retry,
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            reply = f"error: tool {call.name!r} failed: {error}"
            return reply, ToolCallRecord(turn, call.name, call.id, "failed", error)
        return encode_result(result), ToolCallRecord(turn, call.name, call.id, "ok")

    @staticmethod
    async def _invoke_tool(ctx: WorkflowContext, tool: Tool, arguments: dict[str, Any]) -> Any:
        key = ctx.idempotency_key if tool.idempotent else None
        if tool.timeout is None:
            return await tool.invoke(arguments, key)
        async with asyncio.timeout(tool.timeout):
            return await tool.invoke(arguments, key)
