"""A tracer whose spans only record: the SDK work happens in the exporter process.

The SDK's `Span` validates and bounds every attribute under a lock, asks a sampler,
and hands each ended span to its processors; with the OTLP encoding after it, that
was +67 µs on a durable step that costs ~180 µs. These spans keep what the API is
told (name, kind, ids, parent, times, attributes, events, links, status) in plain
values, and an ended span becomes one tuple (`Span.record`) handed to a `sink`; the
exporter process (`_export_process`) turns the tuples into SDK spans with the same ids
and times, applies the span limits, and exports them. The API is the one every layer
already uses, so names, attributes and the parent/child structure are unchanged.

Sampling is the SDK default, parent-based always-on: a span is recorded unless its
parent was sampled out. `configure_tracing` uses the SDK itself when another sampler
is configured.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

from ._frames import Sink

if TYPE_CHECKING:
    from ._offload import Shipper


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_getrandbits = random.getrandbits


def _span_id() -> int:
    # As the SDK's RandomIdGenerator: 64 random bits, never the invalid 0.
    span_id = _getrandbits(64)
    while not span_id:
        span_id = _getrandbits(64)
    return span_id


def _trace_id() -> int:
    trace_id = _getrandbits(128)
    while not trace_id:
        trace_id = _getrandbits(128)
    return trace_id


class Span(trace.Span):
    """A recording span that becomes one plain tuple when it ends."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_record_exception",
        "_scope",
        "_set_status_on_exception",
        "_sink",
        "_span_id",
        "_start",
        "_state",
        "_status_code",
        "_status_description",
        "_trace_id",
    )  # fmt: skip

    def __init__(
        self,
        sink: Sink,
        scope: int,
        name: str,
        kind: SpanKind,
        trace_id: int,
        state: TraceState | None,
        parent: tuple[int, int, bool, int] | None,
        attributes: types.Attributes,
        links: list[tuple[int, int, int, bool, dict[str, Any]]] | None,
        start_time: int | None,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self._sink = sink
        self._scope = scope
        self._name = name
        self._kind: int = kind._value_  # the attribute: `.value` is a descriptor call
        self._trace_id = trace_id
        self._span_id = _getrandbits(64) or _span_id()
        self._state = state
        self._parent = parent
        self._start = start_time if start_time is not None else time.time_ns()
        self._end: int | None = None
        self._attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self._events: list[tuple[str, dict[str, Any], int]] | None = None
        self._links = links
        self._status_code = StatusCode.UNSET
        self._status_description: str | None = None
        self._context: SpanContext | None = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception

    def record(self) -> tuple[Any, ...]:
        """What the exporter process needs of this span, in plain values."""
        return (
            self._scope, self._name, self._kind, self._trace_id, self._span_id,
            list(self._state.items()) if self._state else None, self._parent,
            self._start, self._end, self._attributes,
            self._events, self._links, self._status_code.value, self._status_description,
        )  # fmt: skip

    def end(self, end_time: int | None = None) -> None:
        """End the span (once) and hand its record to the sink."""
        if self._end is not None:
            return
        self._end = end_time if end_time is not None else time.time_ns()
        self._sink(self.record())

    def get_span_context(self) -> SpanContext:
        """This span's ids, as a child or a link sees them."""
        context = self._context
        if context is None:
            context = self._context = SpanContext(
                self._trace_id, self._span_id, False, _SAMPLED, self._state
            )
        return context

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """Set several attributes (ignored once ended, as the SDK does)."""
        if self._end is None:
            self._attributes.update(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        """Set one attribute (ignored once ended, as the SDK does)."""
        if self._end is None:
            self._attributes[key] = value

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        """Add a timestamped event."""
        if self._end is not None:
            return
        if self._events is None:
            self._events = []
        self._events.append(
            (
                name,
                dict(attributes) if attributes else {},
                timestamp if timestamp is not None else time.time_ns(),
            )
        )

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        """Link to another span."""
        if self._end is not None or not context.is_valid:
            return
        if self._links is None:
            self._links = []
        self._links.append(_link(context, attributes))

    def update_name(self, name: str) -> None:
        """Rename the span."""
        if self._end is None:
            self._name = name

    def is_recording(self) -> bool:
        """True until the span ends."""
        return self._end is None

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status as the SDK does: OK is final, UNSET changes nothing."""
        if self._end is not None or self._status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        if code is StatusCode.UNSET:
            return
        self._status_code = code
        self._status_description = description if code is StatusCode.ERROR else None

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Record an exception as the SDK does: an `exception` event with its stack."""
        kind = type(exception)
        module = kind.__module__
        event: dict[str, Any] = {
            "exception.type": (
                f"{module}.{kind.__qualname__}"
                if module and module != "builtins"
                else kind.__qualname__
            ),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """End the span; an exception ending the block is recorded, as the SDK does."""
        if exc_val is not None and self._end is None:
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


def _link(context: SpanContext, attributes: types.Attributes) -> tuple[Any, ...]:
    return (
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        context.is_remote,
        dict(attributes) if attributes else {},
    )


class Tracer(trace.Tracer):
    """Starts `Span`s for one instrumentation scope (`scope` numbers it on the wire)."""

    def __init__(self, sink: Sink, scope: int) -> None:
        self._sink = sink
        self._scope = scope

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: trace._Links = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        """A span under the current (or `context`'s) span; a new trace if there is none."""
        parent_span = trace.get_current_span(context)
        state: TraceState | None
        if type(parent_span) is Span:  # the common case, without building its context
            trace_id = parent_span._trace_id
            state = parent_span._state
            parent: tuple[int, int, bool, int] | None = (trace_id, parent_span._span_id, False, 1)
        else:
            recorded = parent_span.get_span_context()
            if recorded.is_valid:
                if not recorded.trace_flags.sampled:
                    # Sampled out upstream: keep the trace going, record nothing.
                    return NonRecordingSpan(
                        SpanContext(
                            recorded.trace_id,
                            _span_id(),
                            False,
                            recorded.trace_flags,
                            recorded.trace_state,
                        )
                    )
                trace_id = recorded.trace_id
                state = recorded.trace_state
                parent = (trace_id, recorded.span_id, recorded.is_remote, int(recorded.trace_flags))
            else:
                trace_id, state, parent = _trace_id(), None, None
        return Span(
            self._sink,
            self._scope,
            name,
            kind,
            trace_id,
            state,
            parent,
            attributes,
            [_link(link.context, link.attributes) for link in links] if links else None,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    @_agnosticcontextmanager  # the API's own decorator: usable as a decorator too
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: trace._Links = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        """Start a span and make it current for the block (as the SDK's tracer does)."""
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception,
        )  # fmt: skip
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class TracerProvider(trace.TracerProvider):
    """Hands out `Tracer`s whose spans `shipper` takes to the exporter process."""

    def __init__(self, shipper: Shipper) -> None:
        self._shipper = shipper
        self._tracers: dict[tuple[str, str | None, str | None], Tracer] = {}
        self._lock = threading.Lock()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace.Tracer:
        """The tracer of one instrumentation scope."""
        key = (instrumenting_module_name, instrumenting_library_version, schema_url)
        with self._lock:
            tracer = self._tracers.get(key)
            if tracer is None:
                number = self._shipper.define("scope", *key)
                tracer = self._tracers[key] = Tracer(self._shipper.span, number)
        return tracer

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what was recorded so far (see `Shipper.force_flush`)."""
        return self._shipper.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Export the rest and stop (idempotent)."""
        self._shipper.shutdown()
