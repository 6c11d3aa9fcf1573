"""The tracer, the meter, and the mechanics every layer's span helpers share.

Only the OpenTelemetry API is used here (the SDK is `phalanx.observe`'s business).
With no SDK configured the API hands out non-recording spans and no-op instruments,
and every helper checks `is_recording()` before computing an attribute that costs
anything, so tracing disabled costs next to nothing. The tracer and the meter are
acquired once, at import, from the global providers: the API's proxies start recording
as soon as an application (or `configure_tracing`) installs real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator
from importlib import metadata
from types import TracebackType
from typing import TypeVar

from opentelemetry import metrics, trace
from opentelemetry.context import attach, detach
from opentelemetry.trace import (
    Span,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
    format_span_id,
    format_trace_id,
)

from . import semconv as sc

try:
    #: The installed phalanx version, reported as the instrumentation scope's version.
    VERSION = metadata.version("phalanx")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0.0.0"

#: The one tracer every phalanx span comes from (scope "phalanx", pinned schema URL).
tracer = trace.get_tracer(sc.INSTRUMENTATION, VERSION, schema_url=sc.SCHEMA_URL)
#: The one meter every phalanx instrument is created on.
meter = metrics.get_meter(sc.INSTRUMENTATION, VERSION, schema_url=sc.SCHEMA_URL)

#: Seconds; the bucket boundaries the GenAI conventions advise for durations.
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92]  # fmt: skip


# -- a span's ids, as the journal stores them ---------------------------------------


def span_ids(span: Span | None = None) -> tuple[str, str] | None:
    """The hex trace and span ids of `span` (default: the current span); None if invalid."""
    context = (span if span is not None else trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return None
    return format_trace_id(context.trace_id), format_span_id(context.span_id)


def remote_context(trace_id: str | None, span_id: str | None) -> SpanContext | None:
    """The span context recorded as hex `trace_id`/`span_id`, as a remote parent, or None."""
    if not trace_id or not span_id:
        return None
    try:
        context = SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    except ValueError:
        return None
    return context if context.is_valid else None


# -- outcomes --------------------------------------------------------------------------


def error_type(exc: BaseException) -> str:
    """The `error.type` of `exc`: its qualified class name (builtins without a module)."""
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def fail(span: Span, exc: BaseException) -> None:
    """Mark `span` as ended by `exc` (a cancellation is an outcome, not an error)."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt):
        span.set_attribute(sc.ERROR_TYPE, "cancelled")
        return
    span.set_attribute(sc.ERROR_TYPE, error_type(exc))
    if isinstance(exc, Exception):
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class current:
    """Make `span` current for the block; on an exception mark it failed and re-raise.

    A class, not `trace.use_span` under a generator: every step enters one, and two
    generator frames cost more than the context switch itself.
    """

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        self._token = attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        detach(self._token)
        if exc is not None:
            fail(self._span, exc)


# -- spans exported only when work ran under them ----------------------------------------


class Deferred:
    """A span that is ended, hence exported, only if traced work executes beneath it.

    Replay answers recorded operations from the journal without running them, so a
    span over work that was all replayed (an agent whose turns all finished before a
    crash) would describe nothing this process did; the process that did the work
    traced it. Helpers of work that really runs (a step, a model call, a tool call)
    call `mark_executed`, which flags the innermost deferred span. Subclass it to carry
    what the span learns while its block runs.
    """

    def __init__(self, span: Span) -> None:
        self.span = span
        #: Whether any traced work ran here (not answered by the journal).
        self.executed = False


_DeferredT = TypeVar("_DeferredT", bound=Deferred)

_innermost: contextvars.ContextVar[Deferred | None] = contextvars.ContextVar(
    "phalanx_deferred_span", default=None
)


def innermost_deferred() -> Deferred | None:
    """The deferred span whose block is running, if any."""
    return _innermost.get()


def mark_executed() -> None:
    """Say that traced work really runs here: the innermost deferred span is exported."""
    deferred = _innermost.get()
    if deferred is not None:
        deferred.executed = True


@contextlib.contextmanager
def deferred_span(deferred: _DeferredT) -> Iterator[_DeferredT]:
    """Make `deferred`'s span current for the block; end it after, if work ran in it."""
    token = _innermost.set(deferred)
    try:
        with current(deferred.span):
            yield deferred
    finally:
        _innermost.reset(token)
        if deferred.executed:
            deferred.span.end()
