"""The Agent: a model, instructions and tools, run in a durable tool loop.

Every model call and every tool call is a workflow step, so a run killed in the middle
of the loop resumes without asking the model again for turns it already answered and
without re-running finished tools. What the model gets wrong is fed back to it, not
raised: unknown tools, arguments that are not JSON or break the schema, failed tools,
structured output that does not validate (the last within a bounded number of
retries). What cannot be fixed by talking to the model is a typed error: the turn
limit, the timeout, model errors that retries did not cure.

Tool calls go through the reliability layer (`phalanx.tools.reliable_call`): retries,
the circuit breaker and the dead-letter queue. A call that fails for good does what
its tool's dead-letter policy says: `continue` feeds the model a typed "unavailable"
result, `wait` waits for a person, `fail` fails the agent with
`ToolDeadLetteredError`. Every call that failed, was retried or was dead-lettered is
listed in the result (`AgentResult.tool_failures`), so an answer produced after a tool
failure is never presented as if every tool had worked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pydantic

from .._clock import Clock
from .._errors import (
    AgentTimeoutError,
    CircuitOpenError,
    MaxTurnsExceededError,
    ModelError,
    OutputValidationError,
    StoreError,
    ToolArgumentsError,
    ToolDeadLetteredError,
)
from ..durable import RetryPolicy, WorkflowContext, lowlevel
from ..journal import EventStore, take_token
from ..tools import Tool, ToolUnavailable, encode_result, reliable_call
from . import _spans as spans
from ._backpressure import Fitter
from ._budget import UNLIMITED, Budget, BudgetLedger, run_ledger
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
    #: "ok", "invalid_arguments", "unknown_tool", "unavailable" (the model got a typed
    #: unavailable result), "resolved" (a person supplied the result from the
    #: dead-letter queue) or "failed" (the tool broke its contract, e.g. a result
    #: that is not JSON).
    outcome: str
    error: str | None = None
    attempts: int = 0
    dead_letter_id: str | None = None

    @property
    def troubled(self) -> bool:
        """Whether the tool failed, was retried or was dead-lettered on this call."""
        return self.outcome in ("unavailable", "resolved", "failed") or self.attempts > 1

    def to_json(self) -> dict[str, Any]:
        """JSON form, for results and journals."""
        return {
            "turn": self.turn,
            "tool": self.tool,
            "call_id": self.call_id,
            "outcome": self.outcome,
            "error": self.error,
            "attempts": self.attempts,
            "dead_letter_id": self.dead_letter_id,
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

    @property
    def tool_failures(self) -> tuple[ToolCallRecord, ...]:
        """The tool calls that failed, were retried or went to the dead-letter queue."""
        return tuple(c for c in self.tool_calls if c.troubled)

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
            "tool_failures": [c.to_json() for c in self.tool_failures],
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
        budget: Budget | None = None,
        summarizer: Model | None = None,
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
        self.budget = budget
        #: Condenses old turns when the budget's `summarize` action runs (default: `model`).
        self.summarizer = summarizer if summarizer is not None else self.model
        self._output_adapter: pydantic.TypeAdapter[OutputT] | None = (
            pydantic.TypeAdapter(output_type) if output_type is not None else None
        )
        # What every request carries, made once: a JSON schema takes ~1 ms to generate.
        self._specs = tuple(t.spec() for t in tools)
        self._output_schema: dict[str, Any] | None = (
            None if self._output_adapter is None else self._output_adapter.json_schema()
        )

    async def _call_model(
        self, request: ModelRequest, store: EventStore, clock: Clock
    ) -> dict[str, Any]:
        # Each attempt takes a token of `model:NAME` first, when a limit is declared;
        # the wait counts against the agent's timeout, which bounds the whole loop.
        await take_token(store, f"model:{self.model.name}", clock)
        # Inside the step: a model call answered by the journal gets no chat span.
        with spans.chat_span(self.model, request, self.tools) as chat:
            response = await self.model.complete(request)
            chat.response(response)
        return response.model_dump(mode="json")

    async def _call_summarizer(self, request: ModelRequest) -> dict[str, Any]:
        with spans.chat_span(self.summarizer, request, {}) as chat:
            response = await self.summarizer.complete(request)
            chat.response(response)
        return response.model_dump(mode="json")

    async def run(
        self,
        ctx: WorkflowContext,
        prompt: str,
        *,
        history: Sequence[Message] = (),
        budget: Budget | None = None,
    ) -> AgentResult[OutputT]:
        """Run the tool loop for `prompt` until a final (valid) answer.

        `budget` (default: the agent's) bounds this run of the loop, inside the run's
        own (`open_budget`), if it has one.
        """
        messages: list[Message] = []
        if self.instructions:
            messages.append(Message.system(self.instructions))
        messages.extend(history)
        messages.append(Message.user(prompt))
        with spans.agent_span(
            run_id=ctx.run_id,
            name=self.name,
            role=self.role,
            model=self.model,
            messages=messages,
            tools=self.tools,
            replaying=ctx.is_replaying,
        ) as invocation:
            ledger = BudgetLedger(
                budget=budget or self.budget or UNLIMITED,
                scope=f"agent {self.name!r}",
                parent=run_ledger(ctx),
            )
            fitter = Fitter(
                ctx=ctx, agent=self.name, ledger=ledger, summarize=self._call_summarizer
            )
            result = await self._run(ctx, messages, fitter)
            invocation.finish(result)
            return result

    async def _run(
        self, ctx: WorkflowContext, messages: list[Message], fitter: Fitter
    ) -> AgentResult[OutputT]:
        if self.timeout is None:
            return await self._loop(ctx, messages, fitter)
        try:
            async with ctx.clock.timeout(self.timeout):
                return await self._loop(ctx, messages, fitter)
        except TimeoutError as exc:
            raise AgentTimeoutError(agent=self.name, timeout=self.timeout) from exc

    async def _loop(
        self, ctx: WorkflowContext, messages: list[Message], fitter: Fitter
    ) -> AgentResult[OutputT]:
        messages = list(messages)
        records: list[ToolCallRecord] = []
        usage = Usage()
        invalid_outputs = 0
        for turn in range(1, self.max_turns + 1):
            # Over budget, the declared actions run first; the call is sent only if it fits.
            messages, request = await fitter.fit(turn, messages, self._specs, self._output_schema)
            raw = await lowlevel.step(
                ctx,
                f"{self.name}/model/{turn}",
                self._call_model,
                request,
                lowlevel.store(ctx),
                ctx.clock,
                retry=self.model_retry,
                tags={"agent": self.name, "turn": turn, "operation": "chat"},
            )
            response = ModelResponse.model_validate(raw)
            fitter.ledger.charge(response.usage)
            usage = Usage(
                input_tokens=usage.input_tokens + response.usage.input_tokens,
                output_tokens=usage.output_tokens + response.usage.output_tokens,
            )
            messages.append(response.as_message())
            # After `final_answer` the tools are gone: a call asked for anyway is ignored.
            if response.tool_calls and request.tools:
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
            # Retries, breaker, dead-letter queue; each attempt runs in a tool span.
            report = await reliable_call(
                ctx,
                tool,
                arguments,
                step=f"{self.name}/tool/{call.name}/{turn}.{index}",
                agent=self.name,
                call_id=call.id,
                tags={
                    "agent": self.name,
                    "turn": turn,
                    "operation": "execute_tool",
                    "tool": call.name,
                    "index": index,
                },
            )
        except (ToolDeadLetteredError, CircuitOpenError, StoreError):
            raise  # the tool's policy says fail; or the journal itself is in trouble
        except Exception as exc:  # a tool that broke its contract (a result not JSON...)
            error = f"{type(exc).__name__}: {exc}"
            reply = f"error: tool {call.name!r} failed: {error}"
            return reply, ToolCallRecord(turn, call.name, call.id, "failed", error, 1)
        value = report.value
        reply = encode_result(value.to_json() if isinstance(value, ToolUnavailable) else value)
        return reply, ToolCallRecord(
            turn,
            call.name,
            call.id,
            report.outcome,
            report.error,
            report.attempts,
            report.dead_letter_id,
        )
