"""A real OTLP receiver for the tests: HTTP (protobuf) and gRPC, built on opentelemetry-proto.

Tests assert on what *arrived* here, decoded from the wire, never on what an exporter
reports (the SDK's force_flush can say success when every export failed).

- HTTP: ``POST /v1/traces`` and ``POST /v1/metrics`` with protobuf bodies (gzip or not),
  answering the protobuf ``Export*ServiceResponse``, as an OTLP/HTTP collector does.
- gRPC: the ``TraceService`` and ``MetricsService`` ``Export`` methods.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


def decode_value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: decode_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


def decode_attributes(attributes: Any) -> dict[str, Any]:
    return {kv.key: decode_value(kv.value) for kv in attributes}


@dataclass
class ReceivedSpan:
    """One span as it arrived, ids as lowercase hex (W3C form)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str, dict[str, Any]]]
    status_code: int
    status_message: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any]
    scope: str

    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]


@dataclass
class Receiver:
    """Everything received so far, thread-safe; one instance serves both transports."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    http_endpoint: str = ""
    grpc_endpoint: str = ""

    def take_traces(self, request: trace_service_pb2.ExportTraceServiceRequest, via: str) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = decode_attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=decode_attributes(span.attributes),
                            events=[(e.name, decode_attributes(e.attributes)) for e in span.events],
                            links=[
                                (
                                    link.trace_id.hex(),
                                    link.span_id.hex(),
                                    decode_attributes(link.attributes),
                                )
                                for link in span.links
                            ],
                            status_code=span.status.code,
                            status_message=span.status.message,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            resource=resource,
                            scope=scope_spans.scope.name,
                        )
                    )
        with self._lock:
            self.spans.extend(received)
            self.requests[via] = self.requests.get(via, 0) + 1

    def take_metrics(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, via: str
    ) -> None:
        received = []
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    which = metric.WhichOneof("data")
                    points = getattr(metric, which).data_points if which else []
                    for point in points:
                        value: Any = None
                        if which == "histogram":
                            value = {"count": point.count, "sum": point.sum}
                        elif which == "sum":
                            value = point.as_int if point.HasField("as_int") else point.as_double
                        received.append(
                            {
                                "name": metric.name,
                                "unit": metric.unit,
                                "type": which,
                                "attributes": decode_attributes(point.attributes),
                                "value": value,
                            }
                        )
        with self._lock:
            self.metrics.extend(received)
            self.requests[via + ":metrics"] = self.requests.get(via + ":metrics", 0) + 1

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """Poll until `predicate(spans)` holds; return the spans (fail the test if never)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({s.name for s in spans})
                raise AssertionError(f"the receiver never got the spans expected; got {names}")
            time.sleep(0.02)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                traces = trace_service_pb2.ExportTraceServiceRequest()
                traces.ParseFromString(body)
                receiver.take_traces(traces, "http")
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/metrics":
                metrics = metrics_service_pb2.ExportMetricsServiceRequest()
                metrics.ParseFromString(body)
                receiver.take_metrics(metrics, "http")
                reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    return Handler


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.take_traces(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.take_metrics(request, "grpc")
        return metrics_service_pb2.ExportMetricsServiceResponse()


@contextlib.contextmanager
def start_receiver(*, grpc: bool = False) -> Iterator[Receiver]:
    """An OTLP receiver on 127.0.0.1 (HTTP always, gRPC too if asked), for one test."""
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.http_endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    grpc_server = None
    if grpc:
        import grpc as grpc_lib

        grpc_server = grpc_lib.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceService(receiver), grpc_server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsService(receiver), grpc_server
        )
        port = grpc_server.add_insecure_port("127.0.0.1:0")
        grpc_server.start()
        receiver.grpc_endpoint = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=None)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
