"""Tracing off the hot path: spans recorded here, built and exported by another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from phalanx.observe import _export_process, _frames, _lightmeter, _lightspan, _offload
from tests.observe.helpers import ROOT, named, one, otel_env
from tests.observe.receiver import Receiver, start_receiver


def light_tracer() -> tuple[_lightspan.Tracer, list[tuple[Any, ...]]]:
    records: list[tuple[Any, ...]] = []
    return _lightspan.Tracer(records.append, 0), records


def built(record: tuple[Any, ...]) -> Any:
    """`record` through the wire and the exporter process's builder, as an SDK span."""
    read, write = os.pipe()
    with open(write, "wb") as out:
        out.write(_frames.encode(("spans", [record])))
    with open(read, "rb") as source:
        frame = _frames.read(source.fileno())
    assert frame is not None
    return _export_process._Builder(Resource({"service.name": "t"})).span(frame[1][0])


def test_a_recorded_span_is_built_with_its_ids_parent_times_and_everything_said() -> None:
    """Ids, parent, kind, times, attributes, events, links and status survive the trip."""
    tracer, records = light_tracer()
    linked = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("parent") as parent:
        child = tracer.start_span(
            "child",
            kind=SpanKind.CLIENT,
            attributes={"a": 1, "b": ["x", "y"]},
            links=[Link(linked, {"why": "first_runner"})],
        )
        child.set_attribute("c", True)
        child.add_event("retry", {"attempt": 2})
        child.record_exception(ValueError("boom"))
        child.set_status(Status(StatusCode.ERROR, "ValueError: boom"))
        child.end()
    span = built(records[0])
    assert span.name == "child"
    assert span.kind is SpanKind.CLIENT
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.context.span_id == child.get_span_context().span_id
    assert span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes) == {"a": 1, "b": ("x", "y"), "c": True}
    assert [e.name for e in span.events] == ["retry", "exception"]
    assert span.events[1].attributes["exception.type"] == "ValueError"
    assert "boom" in span.events[1].attributes["exception.stacktrace"]
    assert [(link.context.span_id, dict(link.attributes)) for link in span.links] == [
        (0xDEF, {"why": "first_runner"})
    ]
    assert (span.status.status_code, span.status.description) == (
        StatusCode.ERROR,
        "ValueError: boom",
    )
    assert 0 < span.start_time <= span.end_time


def test_an_ended_span_changes_no_more_and_is_recorded_once() -> None:
    """As the SDK: after end, nothing is set; a second end records nothing; OK is final."""
    tracer, records = light_tracer()
    span = tracer.start_span("once")
    span.set_status(Status(StatusCode.OK))
    span.set_status(Status(StatusCode.ERROR, "too late"))
    span.end()
    span.set_attribute("late", 1)
    span.end()
    assert len(records) == 1
    built_span = built(records[0])
    assert "late" not in built_span.attributes
    assert built_span.status.status_code is StatusCode.OK


def test_an_exception_ending_a_with_block_marks_the_span_failed() -> None:
    """`with span:` records the exception and the error status, as the SDK's span does."""
    tracer, records = light_tracer()
    with pytest.raises(KeyError), tracer.start_span("failing"):
        raise KeyError("k")
    span = built(records[0])
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_a_span_under_a_sampled_out_parent_is_not_recorded() -> None:
    """Parent-based sampling: the trace goes on (same trace id) but nothing is recorded."""
    tracer, records = light_tracer()
    parent = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0))
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    span = tracer.start_span("dropped", context=context)
    assert not span.is_recording()
    assert span.get_span_context().trace_id == 0x1234
    span.end()
    assert records == []


def offloaded(tmp_path: Path, receiver: Receiver, mode: str, **extra: str) -> subprocess.Popen[str]:
    env = otel_env(tmp_path, receiver, **extra)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.observe.offloaded", mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_spans_arrived(receiver: Receiver, timeout: float = 20.0) -> list[Any]:
    return receiver.wait_for(
        lambda spans: (
            len(named(spans, "phalanx.step a") + named(spans, "phalanx.step c")) == 2
            and bool(named(spans, "caller"))
        ),
        timeout=timeout,
    )


@pytest.mark.slow
def test_spans_and_metrics_arrive_when_a_process_exits_without_shutting_down(
    tmp_path: Path,
) -> None:
    """No shutdown call: exit still exports every span, and the metrics, from one trace."""
    with start_receiver() as receiver:
        process = offloaded(tmp_path, receiver, "exit", OTEL_BSP_SCHEDULE_DELAY="60000")
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == 0, stderr
        spans = run_spans_arrived(receiver)
        metric_names = {m["name"] for m in receiver.metrics}
        probes = [m for m in receiver.metrics if m["name"] == "tests.probe"]
    caller = one(spans, "caller")
    run = one(spans, "phalanx.run tests.durable.workflows:pipeline")
    assert run.parent_span_id == caller.span_id
    assert {s.trace_id for s in spans} == {caller.trace_id}
    assert one(spans, "phalanx.step b").parent_span_id == run.span_id
    # The value the API does not allow is dropped, the span and its other attributes kept.
    assert "tests.path" not in caller.attributes
    assert caller.attributes["tests.mode"] == "exit"
    assert caller.resource["service.name"] == "phalanx-tests"
    assert "phalanx.step.duration" in metric_names
    assert probes and probes[-1]["attributes"] == {"probe": "queue"}


@pytest.mark.slow
def test_force_flush_returns_once_the_spans_were_exported(tmp_path: Path) -> None:
    """With a minute's batching delay, force_flush alone makes the spans arrive."""
    with start_receiver() as receiver:
        process = offloaded(tmp_path, receiver, "flush", OTEL_BSP_SCHEDULE_DELAY="60000")
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "flushed"
            spans = receiver.snapshot()  # no waiting: the flush said they were exported
        finally:
            process.kill()
            process.communicate(timeout=30)
    assert named(spans, "phalanx.step c") and named(spans, "caller")


@pytest.mark.slow
def test_spans_shipped_before_a_sigkill_still_arrive(tmp_path: Path) -> None:
    """The exporter process outlives a SIGKILL of the traced one and exports what it got."""
    with start_receiver() as receiver:
        process = offloaded(tmp_path, receiver, "kill", OTEL_BSP_SCHEDULE_DELAY="60000")
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            assert receiver.snapshot() == []  # held for the minute's batching delay...
            process.send_signal(signal.SIGKILL)
        finally:
            process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        spans = run_spans_arrived(receiver)  # ...and exported when the pipe closed
    assert len(named(spans, "phalanx.step b")) == 1


@pytest.mark.slow
def test_a_forked_child_exports_its_spans_through_an_exporter_of_its_own(tmp_path: Path) -> None:
    """The child's span arrives though it never shut down; the parent's pipe is intact."""
    with start_receiver() as receiver:
        process = offloaded(tmp_path, receiver, "fork")
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == 0, stderr
        spans = receiver.wait_for(
            lambda spans: bool(named(spans, "forked child") and named(spans, "forked parent"))
        )
    assert len(named(spans, "forked child")) == 1
    assert len(named(spans, "phalanx.step c")) == 1  # the parent's, once: not twice


@pytest.mark.slow
def test_another_sampler_keeps_the_sdk_in_process(tmp_path: Path) -> None:
    """OTEL_TRACES_SAMPLER=always_off is honoured: the run completes, no span is exported."""
    with start_receiver() as receiver:
        process = offloaded(tmp_path, receiver, "exit", OTEL_TRACES_SAMPLER="always_off")
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == 0, stderr
        assert receiver.snapshot() == []


def test_the_span_limits_apply_where_the_spans_are_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT bounds the built span, as the SDK's own spans."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    tracer, records = light_tracer()
    tracer.start_span("many", attributes={"a": 1, "b": 2, "c": 3}).end()
    span = built(records[0])
    assert dict(span.attributes) == {"b": 2, "c": 3}  # the oldest dropped, as the SDK does
    assert span.dropped_attributes == 1


def children() -> set[int]:
    """This process's child processes, as Linux lists them per thread."""
    found: set[int] = set()
    for listing in Path("/proc/self/task").glob("*/children"):
        found.update(int(pid) for pid in listing.read_text().split())
    return found


def test_the_exporter_process_starts_with_the_first_span_to_export() -> None:
    """Tracers and instruments defined, nothing recorded: no process; a span: one, exported."""
    with start_receiver() as receiver:
        before = children()
        shipper = _offload.Shipper(
            {
                "protocol": "http/protobuf",
                "endpoint": receiver.http_endpoint,
                "headers": None,
                "resource": {"service.name": "lazy"},
                "metrics": True,
                "metric_interval_ms": None,
            }
        )
        try:
            tracer = _lightspan.TracerProvider(shipper).get_tracer("tests")
            _lightmeter.MeterProvider(shipper).get_meter("tests").create_counter("tests.count")
            assert shipper.force_flush(5000)
            assert children() == before
            tracer.start_span("first").end()
            assert shipper.force_flush(30000)
            assert len(children() - before) == 1
            assert [s.name for s in receiver.snapshot()] == ["first"]
        finally:
            shipper.shutdown()
    assert children() == before


def test_an_exporter_process_that_cannot_start_is_reported_and_loses_nothing_else(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No interpreter to start: a warning, flush says False, the traced code goes on."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    shipper = _offload.Shipper(
        {
            "protocol": "http/protobuf",
            "endpoint": "http://127.0.0.1:9",
            "headers": None,
            "resource": {},
            "metrics": False,
            "metric_interval_ms": None,
        }
    )
    tracer = _lightspan.TracerProvider(shipper).get_tracer("tests")
    with tracer.start_as_current_span("unexported") as span:
        span.set_attribute("still", "works")
    assert shipper.force_flush(5000) is False
    shipper.shutdown()
    assert "could not start" in caplog.text
