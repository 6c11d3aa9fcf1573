"""Spans and metrics of agents: `invoke_agent` and the `chat` spans of model calls.

Both follow the GenAI conventions (names pinned in `phalanx._telemetry.semconv`). A
model call answered by the journal on replay gets no chat span (the span is opened
inside the step), and an agent whose turns were all answered there gets no
`invoke_agent` span either (a deferred span, see `phalanx._telemetry.Deferred`).
Content (prompts, completions, tool arguments) is captured only on opt-in, in the
GenAI JSON message format, with every declared tool secret redacted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span, SpanKind

from .. import _telemetry as telemetry
from .._telemetry import Redactor
from .._telemetry import semconv as sc

if TYPE_CHECKING:
    from ..tools import Tool
    from ._agent import AgentResult
    from ._messages import Message, ModelRequest, ModelResponse, ToolCall
    from ._model import Model

# Advised by the GenAI conventions: powers of 4 up to 4^11 tokens.
_TOKEN_BUCKETS = [4.0**i for i in range(12)]

token_usage = telemetry.meter.create_histogram(
    sc.METRIC_TOKEN_USAGE,
    unit="{token}",
    description="Tokens used per model call, by gen_ai.token.type (input or output).",
    explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
)
operation_duration = telemetry.meter.create_histogram(
    sc.METRIC_OPERATION_DURATION,
    unit="s",
    description="Duration of model calls, failed ones included (with error.type).",
    explicit_bucket_boundaries_advisory=telemetry.DURATION_BUCKETS,
)
time_to_first_chunk = telemetry.meter.create_histogram(
    sc.METRIC_TIME_TO_FIRST_CHUNK,
    unit="s",
    description="Time from a model request to its first streamed chunk.",
    explicit_bucket_boundaries_advisory=telemetry.DURATION_BUCKETS,
)


# -- content ---------------------------------------------------------------------------


def input_hash(messages: Sequence[Message]) -> str:
    """A stable hash of an agent's input context, to compare inputs without content."""
    canonical = json.dumps(
        [m.model_dump(mode="json") for m in messages],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _redactor(tools: Mapping[str, Tool]) -> Redactor:
    return Redactor({name: tool.secrets for name, tool in tools.items()})


def _tool_call_part(redactor: Redactor, call: ToolCall) -> dict[str, Any]:
    return {
        "type": "tool_call",
        "id": call.id,
        "name": call.name,
        "arguments": redactor.arguments(call.name, call.arguments),
    }


def _input_messages(redactor: Redactor, messages: Iterable[Message]) -> tuple[str | None, str]:
    """System instructions and input messages as GenAI JSON strings, redacted."""
    system: list[dict[str, Any]] = []
    chat: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            system.append({"type": "text", "content": message.content or ""})
            continue
        parts: list[dict[str, Any]] = []
        if message.role == "tool":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": message.tool_call_id,
                    "response": message.content or "",
                }
            )
        elif message.content:
            parts.append({"type": "text", "content": message.content})
        parts.extend(_tool_call_part(redactor, c) for c in message.tool_calls)
        chat.append({"role": message.role, "parts": parts})
    # Serialise first, scrub after: every secret of every call is known by then.
    encoded_chat = redactor.scrub(telemetry.dumps(chat))
    return (redactor.scrub(telemetry.dumps(system)) if system else None), encoded_chat


def _set_input(span: Span, redactor: Redactor, messages: Iterable[Message]) -> None:
    system, chat = _input_messages(redactor, messages)
    if system is not None:
        span.set_attribute(sc.GEN_AI_SYSTEM_INSTRUCTIONS, system)
    span.set_attribute(sc.GEN_AI_INPUT_MESSAGES, chat)


def _output_message(
    redactor: Redactor, text: str | None, calls: Iterable[ToolCall], finish_reason: str
) -> str:
    """One assistant message as GenAI output messages JSON (v1.41.0 schema), redacted."""
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"type": "text", "content": text})
    parts.extend(_tool_call_part(redactor, c) for c in calls)
    message = {"role": "assistant", "parts": parts, "finish_reason": finish_reason}
    return redactor.scrub(telemetry.dumps([message]))


def reported_confidence(output: Any) -> float | None:
    """The confidence an agent's structured output reports, if it has a numeric one.

    Agents report confidence by having a `confidence` field in their output type (a
    pydantic model or a mapping); it is recorded, never inferred.
    """
    value = output.get("confidence") if isinstance(output, Mapping) else None
    if value is None:
        value = getattr(output, "confidence", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# -- agents ----------------------------------------------------------------------------


class AgentTrace(telemetry.Deferred):
    """An agent invocation's span and what it learns while the loop runs."""

    def __init__(self, span: Span, tools: Mapping[str, Tool]) -> None:
        super().__init__(span)
        self.tools = tools
        #: Time to first token of the first model call made here.
        self.first_token_s: float | None = None
        #: Why the last model call made here stopped: the final answer's, whenever the
        #: span is exported (replayed calls come first, so the last call ran here).
        self.finish_reason: str | None = None

    def finish(self, result: AgentResult[Any]) -> None:
        """Record the turns, tool calls and token totals of the final result."""
        span = self.span
        if not span.is_recording():
            return
        span.set_attribute(sc.PHALANX_AGENT_TURNS, result.turns)
        span.set_attribute(sc.PHALANX_AGENT_TOOL_CALLS, len(result.tool_calls))
        span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, result.usage.input_tokens)
        span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, result.usage.output_tokens)
        if self.first_token_s is not None:
            span.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, self.first_token_s)
        confidence = reported_confidence(result.output)
        if confidence is not None:
            span.set_attribute(sc.PHALANX_AGENT_CONFIDENCE, confidence)
        for call in result.tool_calls:
            event: dict[str, Any] = {
                sc.GEN_AI_TOOL_NAME: call.tool,
                sc.GEN_AI_TOOL_CALL_ID: call.call_id,
                sc.PHALANX_TOOL_OUTCOME: call.outcome,
                "phalanx.agent.turn": call.turn,
            }
            if call.error is not None:
                event[sc.ERROR_TYPE] = call.error.split(":", 1)[0]
            span.add_event(sc.EVENT_TOOL_CALL, event)
        if telemetry.capture_content():
            redactor = _redactor(self.tools)
            _input_messages(redactor, result.messages)  # learns every secret the loop passed
            # The loop returns only on an answer without tool calls: "stop", unless the
            # model said otherwise (a truncated "length" answer that still validated).
            finish_reason = self.finish_reason or "stop"
            span.set_attribute(
                sc.GEN_AI_OUTPUT_MESSAGES,
                _output_message(redactor, result.text, (), finish_reason),
            )


def _current_agent() -> AgentTrace | None:
    agent = telemetry.innermost_deferred()
    return agent if isinstance(agent, AgentTrace) else None


@contextlib.contextmanager
def agent_span(
    *,
    run_id: str,
    name: str,
    role: str,
    model: Model,
    messages: Sequence[Message],
    tools: Mapping[str, Tool],
    replaying: bool,
) -> Iterator[AgentTrace]:
    """The `invoke_agent` span of one agent run, emitted only if a step of it executes.

    A resumed run replays an agent's finished turns from the journal; if every one of
    them was answered there, the agent did no work in this process, and its span is
    never ended, which keeps it from being exported (the process that did the work
    traced it).
    """
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
        sc.GEN_AI_AGENT_NAME: name,
        sc.GEN_AI_AGENT_ID: f"{run_id}/{name}",
        sc.GEN_AI_PROVIDER_NAME: model.provider,
        sc.GEN_AI_REQUEST_MODEL: model.name,
        sc.GEN_AI_CONVERSATION_ID: run_id,
        sc.PHALANX_RUN_ID: run_id,
        sc.PHALANX_AGENT_ROLE: role,
        sc.PHALANX_AGENT_RESUMED: replaying,
    }
    span = telemetry.tracer.start_span(f"{sc.OP_INVOKE_AGENT} {name}", attributes=attributes)
    if span.is_recording():
        span.set_attribute(sc.PHALANX_AGENT_INPUT_HASH, input_hash(messages))
        if telemetry.capture_content():
            _set_input(span, _redactor(tools), messages)
    with telemetry.deferred_span(AgentTrace(span, tools)) as agent:
        yield agent


# -- model calls -----------------------------------------------------------------------


class ChatTrace:
    """A model call's span, completed with what the response says."""

    def __init__(self, span: Span, attributes: dict[str, Any], redactor: Redactor | None):
        self.span = span
        self.attributes = attributes
        self.redactor = redactor

    def response(self, response: ModelResponse) -> None:
        """Record the answering model, finish reason, token usage and timings."""
        span = self.span
        usage = response.usage
        self.attributes[sc.GEN_AI_RESPONSE_MODEL] = response.model
        token_usage.record(usage.input_tokens, {**self.attributes, sc.GEN_AI_TOKEN_TYPE: "input"})
        token_usage.record(usage.output_tokens, {**self.attributes, sc.GEN_AI_TOKEN_TYPE: "output"})
        agent = _current_agent()
        if agent is not None:
            agent.finish_reason = response.finish_reason
        if response.time_to_first_token_s is not None:
            time_to_first_chunk.record(response.time_to_first_token_s, self.attributes)
            if agent is not None and agent.first_token_s is None:
                agent.first_token_s = response.time_to_first_token_s
        if not span.is_recording():
            return
        span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, response.model)
        span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, [response.finish_reason])
        span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens)
        span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens)
        span.set_attribute(sc.PHALANX_MODEL_LATENCY, response.latency_s)
        if response.time_to_first_token_s is not None:
            span.set_attribute(
                sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, response.time_to_first_token_s
            )
        if self.redactor is not None:
            span.set_attribute(
                sc.GEN_AI_OUTPUT_MESSAGES,
                _output_message(
                    self.redactor, response.text, response.tool_calls, response.finish_reason
                ),
            )


@contextlib.contextmanager
def chat_span(
    model: Model, request: ModelRequest, tools: Mapping[str, Tool]
) -> Iterator[ChatTrace]:
    """The `chat {model}` span of a model call that is really made."""
    telemetry.mark_executed()
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        sc.GEN_AI_PROVIDER_NAME: model.provider,
        sc.GEN_AI_REQUEST_MODEL: model.name,
    }
    # The scripted model answers in-process; the conventions call that INTERNAL.
    kind = SpanKind.INTERNAL if model.provider == "scripted" else SpanKind.CLIENT
    span = telemetry.tracer.start_span(
        f"{sc.OP_CHAT} {model.name}", kind=kind, attributes=attributes
    )
    redactor = None
    if span.is_recording():
        if request.temperature is not None:
            span.set_attribute(sc.GEN_AI_REQUEST_TEMPERATURE, request.temperature)
        if request.max_tokens is not None:
            span.set_attribute(sc.GEN_AI_REQUEST_MAX_TOKENS, request.max_tokens)
        span.set_attribute(
            sc.GEN_AI_OUTPUT_TYPE, "json" if request.output_schema is not None else "text"
        )
        if telemetry.capture_content():
            redactor = _redactor(tools)
            _set_input(span, redactor, request.messages)
    started = time.perf_counter()
    chat_trace = ChatTrace(span, attributes, redactor)
    try:
        with telemetry.current(span):
            yield chat_trace
    except BaseException as exc:
        operation_duration.record(
            time.perf_counter() - started,
            {**chat_trace.attributes, sc.ERROR_TYPE: telemetry.error_type(exc)},
        )
        raise
    else:
        operation_duration.record(time.perf_counter() - started, chat_trace.attributes)
    finally:
        span.end()
