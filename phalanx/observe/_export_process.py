"""The exporter process: spans recorded by a traced process, exported from here.

`OffloadedTracerProvider` starts it as `python -m phalanx.observe._export_process` and
writes frames (`_frames`) to its stdin. It builds each span record into an SDK
`ReadableSpan` (same ids, times, parent, attributes, events, links and status; the
span limits of `OTEL_SPAN_*` applied here) and exports in batches, as the SDK's batch
processor would: when `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans wait, or the oldest has
waited `OTEL_BSP_SCHEDULE_DELAY`. At the end of its stdin (the traced process shut
down, or died) it exports what it holds and exits, which is how a crashed process's
shipped spans still arrive. It runs at a lower CPU priority (`NICENESS`), and ignores
SIGINT and SIGTERM: a Ctrl-C or a stop sent to the process group is the traced
process's to handle, and its shutdown ends this one.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.metrics import Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from . import _frames as frames
from ._config import otlp_metric_exporter, otlp_span_exporter
from ._offload import bsp_setting

log = logging.getLogger("phalanx")

#: How much lower than the traced process's this process's CPU priority is.
NICENESS = 10


#: Attribute values the OTLP encoder takes as they are.
_PLAIN = frozenset((str, bool, int, float))


class _Resource(Resource):
    """A resource hashed once: the encoder hashes every span's, as JSON, to group them."""

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        super().__init__(attributes)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return other is self or super().__eq__(other)


class _Builder:
    """Turns span records into SDK spans under one resource and the span limits."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.limits = SpanLimits()
        self.scopes: dict[int, InstrumentationScope] = {}

    def _attributes(self, values: Mapping[str, Any], limit: int | None) -> Mapping[str, Any]:
        """`values` within the limits, the SDK's way, unless they are plainly within them."""
        if (
            self.limits.max_span_attribute_length is None
            and (limit is None or len(values) <= limit)
            and all(type(v) in _PLAIN for v in values.values())
        ):
            return values  # nothing the SDK would clean, truncate or drop
        return BoundedAttributes(
            limit, values, immutable=True, max_value_len=self.limits.max_span_attribute_length
        )

    def _context(self, trace_id: int, span_id: int, remote: bool, flags: int) -> SpanContext:
        return SpanContext(trace_id, span_id, remote, TraceFlags(flags))

    def span(self, record: Sequence[Any]) -> ReadableSpan:
        """The SDK span of one record (see `_lightspan.Span.record` for its fields)."""
        (scope, name, kind, trace_id, span_id, state, parent, start, end, attributes,
         events, links, status_code, status_description) = record  # fmt: skip
        limits = self.limits
        context = SpanContext(
            trace_id, span_id, False, TraceFlags(TraceFlags.SAMPLED), TraceState(state or ())
        )
        return ReadableSpan(
            name=name,
            context=context,
            parent=self._context(*parent) if parent is not None else None,
            resource=self.resource,
            attributes=self._attributes(attributes, limits.max_span_attributes),
            events=[
                Event(n, self._attributes(a, limits.max_event_attributes), t)
                for n, a, t in (events or ())[: limits.max_events]
            ],
            links=[
                Link(
                    self._context(*link[:4]), self._attributes(link[4], limits.max_link_attributes)
                )
                for link in (links or ())[: limits.max_links]
            ],
            kind=SpanKind(kind),
            status=Status(StatusCode(status_code), status_description),
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scopes.get(scope),
        )


def _export(exporter: SpanExporter, builder: _Builder, records: list[Any]) -> None:
    if not records:
        return
    try:
        exporter.export([builder.span(r) for r in records])
    except Exception:  # an exporter that raises must not end the process: keep exporting
        log.exception("exporting %d spans failed", len(records))


class _Meters:
    """The SDK meter provider, and the instruments the traced process defined."""

    def __init__(self, config: Mapping[str, Any], resource: Resource) -> None:
        reader = PeriodicExportingMetricReader(
            otlp_metric_exporter(config["protocol"], config["endpoint"], config["headers"]),
            export_interval_millis=config["metric_interval_ms"],
        )
        self.provider = MeterProvider(resource=resource, metric_readers=[reader])
        self.meters: dict[int, Meter] = {}
        self.apply: dict[int, Callable[[float, Any], None]] = {}
        self.observed: dict[int, list[tuple[float, dict[str, Any]]]] = {}

    def define(self, number: int, meter: int, kind: str, name: str, unit: str,
               description: str, advisory: Any) -> None:  # fmt: skip
        """Create instrument `number` as the traced process did."""
        on = self.meters[meter]
        if kind.startswith("observable_"):
            self.observed[number] = []
            create = getattr(on, f"create_{kind}")
            create(name, [lambda _options: self._observations(number)], unit, description)
        elif kind == "histogram":
            histogram = on.create_histogram(
                name, unit, description, explicit_bucket_boundaries_advisory=advisory
            )
            self.apply[number] = histogram.record
        elif kind == "gauge":
            self.apply[number] = on.create_gauge(name, unit, description).set
        else:
            self.apply[number] = getattr(on, f"create_{kind}")(name, unit, description).add

    def _observations(self, number: int) -> list[Observation]:
        return [Observation(value, attributes) for value, attributes in self.observed[number]]


def serve(fd: int, acks: Any) -> None:
    """Read frames from `fd` until its end, exporting the spans; acknowledge flushes."""
    first = frames.read(fd)
    if first is None or first[0] != "config":
        return
    config = first[1]
    exporter = otlp_span_exporter(config["protocol"], config["endpoint"], config["headers"])
    resource = _Resource(config["resource"])
    builder = _Builder(resource)
    meters = _Meters(config, resource) if config["metrics"] else None
    batch = bsp_setting("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
    delay_s = bsp_setting("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
    pending: list[Any] = []
    oldest = 0.0
    try:
        while True:
            if pending:
                wait = max(0.0, oldest + delay_s - time.monotonic())
                if not select.select([fd], [], [], wait)[0]:
                    _export(exporter, builder, pending)
                    pending = []
                    continue
            frame = frames.read(fd)
            if frame is None:
                break
            if frame[0] == "spans":
                if not pending:
                    oldest = time.monotonic()
                pending.extend(frame[1])
                while len(pending) >= batch:
                    _export(exporter, builder, pending[:batch])
                    pending = pending[batch:]
                    oldest = time.monotonic()
            elif frame[0] == "scope":
                index, name, version, schema_url = frame[1:]
                builder.scopes[index] = InstrumentationScope(name, version, schema_url)
            elif frame[0] == "measures" and meters is not None:
                apply = meters.apply
                for number, amount, attributes in frame[1]:
                    apply[number](amount, attributes)
            elif frame[0] == "observed" and meters is not None:
                meters.observed[frame[1]] = frame[2]
            elif frame[0] == "meter" and meters is not None:
                index, name, version, schema_url = frame[1:]
                meters.meters[index] = meters.provider.get_meter(name, version, schema_url)
            elif frame[0] == "instrument" and meters is not None:
                meters.define(*frame[1:])
            elif frame[0] == "flush":
                _export(exporter, builder, pending)
                pending = []
                if meters is not None:
                    meters.provider.force_flush()
                acks.write(b"%d\n" % frame[1])
                acks.flush()
        _export(exporter, builder, pending)
    finally:
        exporter.shutdown()
        if meters is not None:
            meters.provider.shutdown()


def main() -> None:
    """Serve stdin, acknowledging flushes on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Exporting is background work: on a busy machine it takes the CPU the traced
    # process leaves, and catches up when that process waits (on a model, a tool).
    os.nice(NICENESS)
    serve(sys.stdin.fileno(), sys.stdout.buffer)


if __name__ == "__main__":
    main()
