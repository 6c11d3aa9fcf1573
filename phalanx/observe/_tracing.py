"""Spans for the work phalanx executes: runs, steps, agents, model calls, tools, fan-outs.

Durability decides what is traced: a span is emitted for work that actually ran in this
process. Replay answers recorded operations from the journal without running them, so
they produce no step, chat or tool span a second time. A run resumed after a crash
opens a new run span in the *original* trace, parented to and linked with the run span
its journal recorded, so one trace covers every process the run lived in.

The trace context in the journal: `RunStarted` carries the context the run was started
from (the parent run's fan-out or step span, or the caller's own span); every later
event carries the trace id and the id of the run span of the runner that wrote it.

Only the OpenTelemetry API is used here. With no SDK configured the API hands out
non-recording spans, and every helper checks `is_recording()` before computing an
attribute that costs anything, so tracing disabled costs next to nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    format_span_id,
    format_trace_id,
)

from .._errors import FencedError
from ..journal import Event, Lease, Metadata
from . import _metrics as metrics
from . import _semconv as sc
from ._content import Redactor, capture_content, input_hash
from ._version import VERSION

if TYPE_CHECKING:
    from ..agents._agent import AgentResult
    from ..agents._messages import Message, ModelRequest, ModelResponse
    from ..agents._model import Model
    from ..durable._history import RunHistory
    from ..durable._runner import RunOutcome
    from ..tools import Tool

_tracer = trace.get_tracer(sc.INSTRUMENTATION, VERSION, schema_url=sc.SCHEMA_URL)


# -- trace context in the journal ------------------------------------------------------


def stamp(metadata: Metadata, span: Span | None = None) -> Metadata:
    """`metadata` carrying the context of `span` (default: the current span), if valid."""
    context = (span if span is not None else trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return metadata
    return dataclasses.replace(
        metadata,
        trace_id=format_trace_id(context.trace_id),
        span_id=format_span_id(context.span_id),
    )


def recorded_context(metadata: Metadata) -> SpanContext | None:
    """The span context an event's metadata recorded, as a remote parent; None if none."""
    if not metadata.trace_id or not metadata.span_id:
        return None
    try:
        context = SpanContext(
            int(metadata.trace_id, 16),
            int(metadata.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    except ValueError:
        return None
    return context if context.is_valid else None


@dataclasses.dataclass(frozen=True)
class RecordedTrace:
    """The trace contexts a run's journal holds: who started it, its first and last runner."""

    starter: SpanContext | None = None
    first: SpanContext | None = None
    last: SpanContext | None = None

    @classmethod
    def of(cls, events: Sequence[Event]) -> RecordedTrace:
        """Read them from a run's events."""
        starter = first = last = None
        for event in events:
            context = recorded_context(event.metadata)
            if context is None:
                continue
            if event.type == "RunStarted":
                starter = context
            else:
                first = first or context
                last = context
        return cls(starter, first, last)


# -- helpers ---------------------------------------------------------------------------


def _error_type(exc: BaseException) -> str:
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _fail(span: Span, exc: BaseException) -> None:
    """Mark `span` as ended by `exc` (a cancellation is an outcome, not an error)."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt):
        span.set_attribute(sc.ERROR_TYPE, "cancelled")
        return
    span.set_attribute(sc.ERROR_TYPE, _error_type(exc))
    if isinstance(exc, Exception):
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def _current(span: Span) -> Iterator[Span]:
    """Make `span` current for the block; on an exception mark it failed and re-raise."""
    try:
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            yield span
    except BaseException as exc:
        _fail(span, exc)
        raise


# -- runs ------------------------------------------------------------------------------


@contextlib.contextmanager
def run_span(history: RunHistory, lease: Lease, *, force: bool) -> Iterator[Span]:
    """The span of one runner executing a run, current while it runs.

    A fresh run's span is a child of the current span (a parent run's fan-out or step,
    or the caller's); a run whose journal has recorded a trace continues it: its new
    span is parented to the recorded run span (unless the current span is already in
    that trace, as when a resumed parent resumes its children) and linked to it.
    """
    recorded = RecordedTrace.of(history.events)
    ambient = trace.get_current_span().get_span_context()
    resumed = len(history.events) > 1
    parent: Context | None = None
    links: list[Link] = []
    if recorded.first is not None:
        if not (ambient.is_valid and ambient.trace_id == recorded.first.trace_id):
            parent = trace.set_span_in_context(NonRecordingSpan(recorded.first))
        links.append(Link(recorded.first, {"phalanx.link": "first_runner"}))
        if recorded.last is not None and recorded.last != recorded.first:
            links.append(Link(recorded.last, {"phalanx.link": "previous_runner"}))
    elif not ambient.is_valid and recorded.starter is not None:
        parent = trace.set_span_in_context(NonRecordingSpan(recorded.starter))
    attributes: dict[str, Any] = {
        sc.PHALANX_RUN_ID: history.run_id,
        sc.PHALANX_RUN_WORKFLOW: history.workflow,
        sc.PHALANX_RUN_RESUMED: resumed,
        sc.PHALANX_LEASE_EPOCH: lease.epoch,
    }
    if history.parent_run_id is not None:
        attributes[sc.PHALANX_RUN_PARENT_ID] = history.parent_run_id
    if resumed:
        attributes[sc.PHALANX_RUN_REPLAYED_OPS] = len(history.operations)
    span = _tracer.start_span(
        f"{sc.SPAN_RUN} {history.workflow}", context=parent, attributes=attributes, links=links
    )
    previous = next((e.epoch for e in reversed(history.events) if e.epoch is not None), None)
    lease_event: dict[str, Any] = {
        sc.PHALANX_LEASE_EPOCH: lease.epoch,
        sc.PHALANX_LEASE_OWNER: lease.owner,
    }
    if resumed and force:
        metrics.lease_takeovers.add(1, {sc.PHALANX_RUN_WORKFLOW: history.workflow})
        if previous is not None:
            lease_event["phalanx.lease.previous_epoch"] = previous
        span.add_event(sc.EVENT_LEASE_TAKEN_OVER, lease_event)
    else:
        span.add_event(sc.EVENT_LEASE_ACQUIRED, lease_event)
    try:
        with _current(span):
            yield span
    except FencedError as exc:
        span.add_event(
            sc.EVENT_FENCED,
            {
                sc.PHALANX_LEASE_EPOCH: lease.epoch,
                "phalanx.lease.current_epoch": exc.current_epoch or -1,
            },
        )
        raise
    finally:
        span.end()


def ended(span: Span, outcome: RunOutcome) -> RunOutcome:
    """Record a run's outcome on its span, and hand the outcome back."""
    span.set_attribute(sc.PHALANX_RUN_STATUS, outcome.status)
    if outcome.status == "failed":
        error = outcome.error or {}
        # The journal names builtins with their module; spans never do (see _error_type).
        span.set_attribute(sc.ERROR_TYPE, str(error.get("type", "Error")).removeprefix("builtins."))
        span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))))
    return outcome


# -- steps -----------------------------------------------------------------------------


@contextlib.contextmanager
def step_span(run_id: str, op: int, name: str, attempt: int) -> Iterator[Span]:
    """The span of a step executing here (its attempts, and retries as events)."""
    _mark_agent_executed()
    span = _tracer.start_span(
        f"{sc.SPAN_STEP} {name}",
        attributes={
            sc.PHALANX_RUN_ID: run_id,
            sc.PHALANX_STEP_NAME: name,
            sc.PHALANX_STEP_OP: op,
            sc.PHALANX_STEP_ATTEMPT: attempt,
        },
    )
    started = time.perf_counter()
    status = "completed"
    recording = span.is_recording()
    try:
        if recording:
            with _current(span):
                yield span
        else:
            # No SDK, or sampled out: nothing to record, and making it current would
            # change no child's trace. Steps are the hot path; skip the context switch.
            yield span
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
        raise
    finally:
        if recording:
            span.set_attribute(sc.PHALANX_STEP_STATUS, status)
            span.end()
        metrics.step_duration.record(time.perf_counter() - started, _STEP_STATUS[status])


# One attributes dict per status, not one per step: steps are the hot path.
_STEP_STATUS = {s: {sc.PHALANX_STEP_STATUS: s} for s in ("completed", "failed", "cancelled")}


def record_retry(span: Span, attempt: int, exc: BaseException, delay: float) -> None:
    """A failed attempt that will be retried: an event on the step's span."""
    span.add_event(
        sc.EVENT_RETRY,
        {
            sc.PHALANX_STEP_ATTEMPT: attempt,
            sc.ERROR_TYPE: _error_type(exc),
            "exception.message": str(exc),
            sc.PHALANX_RETRY_DELAY: delay,
        },
    )
    span.set_attribute(sc.PHALANX_STEP_ATTEMPTS, attempt + 1)


# -- agents ----------------------------------------------------------------------------


class AgentTrace:
    """An agent invocation's span and what it learns while the loop runs."""

    def __init__(self, span: Span, tools: Mapping[str, Tool]) -> None:
        self.span = span
        self.tools = tools
        #: Whether any step ran here (not answered by the journal).
        self.executed = False
        #: Time to first token of the first model call made here.
        self.first_token_s: float | None = None

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
        if capture_content():
            redactor = Redactor(self.tools)
            redactor.messages(result.messages)  # learns every secret the loop passed
            span.set_attribute(
                sc.GEN_AI_OUTPUT_MESSAGES,
                redactor.scrub(
                    json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": result.text}],
                            }
                        ],
                        ensure_ascii=False,
                    )
                ),
            )


_current_agent: contextvars.ContextVar[AgentTrace | None] = contextvars.ContextVar(
    "phalanx_current_agent", default=None
)


def _mark_agent_executed() -> None:
    agent = _current_agent.get()
    if agent is not None:
        agent.executed = True


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
    span = _tracer.start_span(f"{sc.OP_INVOKE_AGENT} {name}", attributes=attributes)
    if span.is_recording():
        span.set_attribute(sc.PHALANX_AGENT_INPUT_HASH, input_hash(messages))
        if capture_content():
            system, chat = Redactor(tools).messages(messages)
            if system is not None:
                span.set_attribute(sc.GEN_AI_SYSTEM_INSTRUCTIONS, system)
            span.set_attribute(sc.GEN_AI_INPUT_MESSAGES, chat)
    agent = AgentTrace(span, tools)
    token = _current_agent.set(agent)
    try:
        with _current(span):
            yield agent
    finally:
        _current_agent.reset(token)
        if agent.executed:
            span.end()


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
        metrics.token_usage.record(
            usage.input_tokens, {**self.attributes, sc.GEN_AI_TOKEN_TYPE: "input"}
        )
        metrics.token_usage.record(
            usage.output_tokens, {**self.attributes, sc.GEN_AI_TOKEN_TYPE: "output"}
        )
        if response.time_to_first_token_s is not None:
            metrics.time_to_first_chunk.record(response.time_to_first_token_s, self.attributes)
            agent = _current_agent.get()
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
            span.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, self.redactor.output(response))


@contextlib.contextmanager
def chat_span(
    model: Model, request: ModelRequest, tools: Mapping[str, Tool]
) -> Iterator[ChatTrace]:
    """The `chat {model}` span of a model call that is really made."""
    _mark_agent_executed()
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        sc.GEN_AI_PROVIDER_NAME: model.provider,
        sc.GEN_AI_REQUEST_MODEL: model.name,
    }
    # The scripted model answers in-process; the conventions call that INTERNAL.
    kind = SpanKind.INTERNAL if model.provider == "scripted" else SpanKind.CLIENT
    span = _tracer.start_span(f"{sc.OP_CHAT} {model.name}", kind=kind, attributes=attributes)
    redactor = None
    if span.is_recording():
        if request.temperature is not None:
            span.set_attribute(sc.GEN_AI_REQUEST_TEMPERATURE, request.temperature)
        if request.max_tokens is not None:
            span.set_attribute(sc.GEN_AI_REQUEST_MAX_TOKENS, request.max_tokens)
        span.set_attribute(
            sc.GEN_AI_OUTPUT_TYPE, "json" if request.output_schema is not None else "text"
        )
        if capture_content():
            redactor = Redactor(tools)
            system, chat = redactor.messages(request.messages)
            if system is not None:
                span.set_attribute(sc.GEN_AI_SYSTEM_INSTRUCTIONS, system)
            span.set_attribute(sc.GEN_AI_INPUT_MESSAGES, chat)
    started = time.perf_counter()
    chat_trace = ChatTrace(span, attributes, redactor)
    try:
        with _current(span):
            yield chat_trace
    except BaseException as exc:
        metrics.operation_duration.record(
            time.perf_counter() - started,
            {**chat_trace.attributes, sc.ERROR_TYPE: _error_type(exc)},
        )
        raise
    else:
        metrics.operation_duration.record(time.perf_counter() - started, chat_trace.attributes)
    finally:
        span.end()


# -- tool calls ------------------------------------------------------------------------


class ToolTrace:
    """A tool call's span, completed with its result when content is captured."""

    def __init__(self, span: Span, redactor: Redactor | None) -> None:
        self.span = span
        self.redactor = redactor

    def result(self, value: Any) -> None:
        """Record the result (content capture only; secrets scrubbed)."""
        if self.redactor is None or not self.span.is_recording():
            return
        text = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
        self.span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, self.redactor.scrub(text))


@contextlib.contextmanager
def tool_span(tool: Tool, call_id: str, arguments: Mapping[str, Any]) -> Iterator[ToolTrace]:
    """The `execute_tool {tool}` span of a tool invocation that really runs."""
    _mark_agent_executed()
    attributes = {sc.GEN_AI_TOOL_NAME: tool.name}
    span = _tracer.start_span(
        f"{sc.OP_EXECUTE_TOOL} {tool.name}",
        attributes={
            **attributes,
            sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.GEN_AI_TOOL_CALL_ID: call_id,
            sc.GEN_AI_TOOL_TYPE: "function",
        },
    )
    redactor = None
    if span.is_recording():
        if tool.description:
            span.set_attribute(sc.GEN_AI_TOOL_DESCRIPTION, tool.description)
        if capture_content():
            redactor = Redactor({tool.name: tool})
            redacted = redactor.arguments(tool.name, arguments)
            span.set_attribute(
                sc.GEN_AI_TOOL_CALL_ARGUMENTS,
                redactor.scrub(json.dumps(redacted, ensure_ascii=False, default=str)),
            )
    metrics.tool_calls.add(1, attributes)
    started = time.perf_counter()
    try:
        with _current(span):
            yield ToolTrace(span, redactor)
    except BaseException as exc:
        metrics.tool_errors.add(1, {**attributes, sc.ERROR_TYPE: _error_type(exc)})
        raise
    finally:
        metrics.tool_duration.record(time.perf_counter() - started, attributes)
        span.end()


# -- fan-outs --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fanout_span(
    *,
    run_id: str,
    op: int,
    name: str,
    policy: str,
    kind: str,
    needed: int,
    branches: Sequence[str],
    outcomes: Mapping[str, Any],
) -> AsyncIterator[Span]:
    """The span of a fan-out waiting on its branches (their child runs are its children).

    `outcomes` is the fan-out's live map of finished branches (`BranchOutcome`s); at
    the end each becomes an event, and the span says whether the result was partial.
    """
    span = _tracer.start_span(
        f"{sc.SPAN_FANOUT} {name}",
        attributes={
            sc.PHALANX_RUN_ID: run_id,
            sc.PHALANX_STEP_OP: op,
            sc.PHALANX_FANOUT_NAME: name,
            sc.PHALANX_FANOUT_POLICY: policy,
            sc.PHALANX_FANOUT_BRANCHES: list(branches),
        },
    )
    try:
        with _current(span):
            yield span
    finally:
        # A set: `missing` below is then linear, not quadratic, in the branches.
        succeeded = {b for b, o in outcomes.items() if o.status == "succeeded"}
        missing = [b for b in branches if b not in succeeded]
        partial = bool(missing)
        span.set_attribute(sc.PHALANX_FANOUT_SUCCEEDED, len(succeeded))
        span.set_attribute(sc.PHALANX_FANOUT_SATISFIED, len(succeeded) >= needed)
        span.set_attribute(sc.PHALANX_FANOUT_PARTIAL, partial)
        span.set_attribute(sc.PHALANX_FANOUT_MISSING, missing)
        for branch, outcome in outcomes.items():
            event: dict[str, Any] = {
                sc.PHALANX_BRANCH_NAME: branch,
                sc.PHALANX_BRANCH_STATUS: outcome.status,
                sc.PHALANX_BRANCH_DURATION: float(outcome.duration_s),
                sc.PHALANX_BRANCH_STALLED: bool(outcome.stalled),
            }
            if outcome.run_id:
                event[sc.PHALANX_RUN_ID] = outcome.run_id
            if outcome.error:
                event[sc.PHALANX_BRANCH_ERROR] = str(outcome.error)
            span.add_event(sc.EVENT_BRANCH_FINISHED, event)
        metrics.fanouts.add(1, {sc.PHALANX_FANOUT_POLICY: kind, sc.PHALANX_FANOUT_PARTIAL: partial})
        span.end()


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
