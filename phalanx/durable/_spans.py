"""Spans and metrics of durable execution: runs, steps and their retries.

Durability decides what is traced: a span is emitted for work that actually ran in this
process. Replay answers recorded operations from the journal without running them, so
they produce no step span a second time. A run resumed after a crash opens a new run
span in the *original* trace, parented to and linked with the run span its journal
recorded, so one trace covers every process the run lived in.

The trace context in the journal: `RunStarted` carries the context the run was started
from (the parent run's fan-out or step span, or the caller's own span); every later
event carries the trace id and the id of the run span of the runner that wrote it.
`stamp` writes it, `RecordedTrace` reads it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, Status, StatusCode

from .. import _telemetry as telemetry
from .._errors import FencedError
from .._telemetry import semconv as sc
from ..journal import Event, Lease, Metadata

if TYPE_CHECKING:
    from ._history import RunHistory
    from ._runner import RunOutcome

step_duration = telemetry.meter.create_histogram(
    sc.METRIC_STEP_DURATION,
    unit="s",
    description="Wall time of executed durable steps (retries included); replayed steps "
    "are not counted.",
    explicit_bucket_boundaries_advisory=telemetry.DURATION_BUCKETS,
)
lease_takeovers = telemetry.meter.create_counter(
    sc.METRIC_LEASE_TAKEOVERS,
    unit="{takeover}",
    description="Runs resumed by forcibly taking over a live lease (fencing the old runner).",
)


# -- trace context in the journal ------------------------------------------------------


def stamp(metadata: Metadata, span: Span | None = None) -> Metadata:
    """`metadata` carrying the context of `span` (default: the current span), if valid."""
    ids = telemetry.span_ids(span)
    if ids is None:
        return metadata
    return dataclasses.replace(metadata, trace_id=ids[0], span_id=ids[1])


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
        previous: Metadata | None = None
        for event in events:
            metadata = event.metadata
            if metadata is previous and event.type != "RunStarted":
                # The runner of the event before wrote it: no new context. A read shares
                # one Metadata among such events, so a resume parses each runner's once.
                continue
            context = telemetry.remote_context(metadata.trace_id, metadata.span_id)
            if event.type == "RunStarted":
                starter = context or starter
                continue
            previous = metadata
            if context is not None:
                first = first or context
                last = context
        return cls(starter, first, last)


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
    span = telemetry.tracer.start_span(
        f"{sc.SPAN_RUN} {history.workflow}", context=parent, attributes=attributes, links=links
    )
    previous = next((e.epoch for e in reversed(history.events) if e.epoch is not None), None)
    lease_event: dict[str, Any] = {
        sc.PHALANX_LEASE_EPOCH: lease.epoch,
        sc.PHALANX_LEASE_OWNER: lease.owner,
    }
    if resumed and force:
        lease_takeovers.add(1, {sc.PHALANX_RUN_WORKFLOW: history.workflow})
        if previous is not None:
            lease_event["phalanx.lease.previous_epoch"] = previous
        span.add_event(sc.EVENT_LEASE_TAKEN_OVER, lease_event)
    else:
        span.add_event(sc.EVENT_LEASE_ACQUIRED, lease_event)
    try:
        with telemetry.current(span):
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
        # The journal names builtins with their module; spans never do (see error_type).
        span.set_attribute(sc.ERROR_TYPE, str(error.get("type", "Error")).removeprefix("builtins."))
        span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))))
    return outcome


# -- steps -----------------------------------------------------------------------------


@contextlib.contextmanager
def step_span(run_id: str, op: int, name: str, attempt: int) -> Iterator[Span]:
    """The span of a step executing here (its attempts, and retries as events)."""
    telemetry.mark_executed()
    span = telemetry.tracer.start_span(
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
            with telemetry.current(span):
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
        step_duration.record(time.perf_counter() - started, _STEP_STATUS[status])


# One attributes dict per status, not one per step: steps are the hot path.
_STEP_STATUS = {s: {sc.PHALANX_STEP_STATUS: s} for s in ("completed", "failed", "cancelled")}


def record_retry(span: Span, attempt: int, exc: BaseException, delay: float) -> None:
    """A failed attempt that will be retried: an event on the step's span."""
    span.add_event(
        sc.EVENT_RETRY,
        {
            sc.PHALANX_STEP_ATTEMPT: attempt,
            sc.ERROR_TYPE: telemetry.error_type(exc),
            "exception.message": str(exc),
            sc.PHALANX_RETRY_DELAY: delay,
        },
    )
    span.set_attribute(sc.PHALANX_STEP_ATTEMPTS, attempt + 1)
