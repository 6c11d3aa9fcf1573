"""Spans and metrics of tools: `execute_tool` spans, executions, the DLQ and the breaker.

A tool attempt that really runs here gets an `execute_tool {tool}` span (GenAI
conventions); one answered by the journal on replay gets none. Tool *executions* are
attempts run in this process, measured live; the journal-derived per-call figures
(`phalanx tools stats`, `_metrics.py`) count logical calls across every process, so
the metric names differ on purpose.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span

from .. import _telemetry as telemetry
from .._telemetry import Redactor
from .._telemetry import semconv as sc

if TYPE_CHECKING:
    from ._tool import Tool

tool_calls = telemetry.meter.create_counter(
    sc.METRIC_TOOL_EXECUTIONS,
    unit="{execution}",
    description="Tool executions (attempts run in this process), by gen_ai.tool.name.",
)
tool_errors = telemetry.meter.create_counter(
    sc.METRIC_TOOL_EXECUTION_ERRORS,
    unit="{execution}",
    description="Tool executions that raised, by gen_ai.tool.name and error.type.",
)
tool_duration = telemetry.meter.create_histogram(
    sc.METRIC_TOOL_EXECUTION_DURATION,
    unit="s",
    description="Duration of tool executions, by gen_ai.tool.name.",
    explicit_bucket_boundaries_advisory=telemetry.DURATION_BUCKETS,
)
dlq_depth = telemetry.meter.create_up_down_counter(
    sc.METRIC_DLQ_DEPTH,
    unit="{entry}",
    description="Open dead-letter entries: +1 when this process dead-letters a call, -1 "
    "when it closes an entry (summed over processes, the queue's depth), by tool.",
)
breaker_transitions = telemetry.meter.create_counter(
    sc.METRIC_BREAKER_TRANSITIONS,
    unit="{transition}",
    description="Circuit-breaker state changes this process wrote, by tool and transition.",
)


def dead_lettered(tool: str, change: int) -> None:
    """Count a dead-letter entry opened (+1) or closed (-1) by this process."""
    dlq_depth.add(change, {sc.GEN_AI_TOOL_NAME: tool})


def breaker_changed(tool: str, transition: str) -> None:
    """Count a circuit-breaker state change this process wrote."""
    breaker_transitions.add(1, {sc.GEN_AI_TOOL_NAME: tool, sc.ATTR_BREAKER_TRANSITION: transition})


class ToolTrace:
    """A tool call's span, completed with its result when content is captured."""

    def __init__(self, span: Span, redactor: Redactor | None) -> None:
        self.span = span
        self.redactor = redactor

    def result(self, value: Any) -> None:
        """Record the result (content capture only; secrets scrubbed)."""
        if self.redactor is None or not self.span.is_recording():
            return
        text = value if isinstance(value, str) else telemetry.dumps(value)
        self.span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, self.redactor.scrub(text))


@contextlib.contextmanager
def tool_span(tool: Tool, call_id: str, arguments: Mapping[str, Any]) -> Iterator[ToolTrace]:
    """The `execute_tool {tool}` span of a tool invocation that really runs."""
    telemetry.mark_executed()
    attributes = {sc.GEN_AI_TOOL_NAME: tool.name}
    span = telemetry.tracer.start_span(
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
        if telemetry.capture_content():
            redactor = Redactor({tool.name: tool.secrets})
            redacted = redactor.arguments(tool.name, arguments)
            span.set_attribute(
                sc.GEN_AI_TOOL_CALL_ARGUMENTS, redactor.scrub(telemetry.dumps(redacted))
            )
    tool_calls.add(1, attributes)
    started = time.perf_counter()
    try:
        with telemetry.current(span):
            yield ToolTrace(span, redactor)
    except BaseException as exc:
        tool_errors.add(1, {**attributes, sc.ERROR_TYPE: telemetry.error_type(exc)})
        raise
    finally:
        tool_duration.record(time.perf_counter() - started, attributes)
        span.end()
