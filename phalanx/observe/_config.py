"""Installing an OpenTelemetry SDK: by code, or from the standard `OTEL_*` variables.

The library itself only uses the OpenTelemetry API; the SDK and the OTLP exporters are
the `otel` extra (`pip install 'phalanx[otel]'`), imported here and only when asked
for. `configure_tracing` installs global tracer and meter providers, as OpenTelemetry
expects an application to do once at start; an application that configures
OpenTelemetry itself needs none of this: phalanx's spans go wherever its providers say.

With an OTLP exporter (the usual case, and what the `OTEL_*` variables configure) the
providers installed only record: spans and measurements are queued in this process
and an exporter process builds, aggregates and exports them (`_offload`), which keeps
the SDK's cost off the steps. A given `span_exporter` object, `batch=False` or an
`OTEL_TRACES_SAMPLER` keep the SDK itself in this process, as before.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from .._errors import ConfigError
from . import _lightmeter, _lightspan
from ._offload import Shipper

Protocol = Literal["grpc", "http/protobuf"]
_PROTOCOLS: tuple[str, ...] = ("grpc", "http/protobuf")
_EXTRA_HINT = "install the extra: pip install 'phalanx[otel]'"


@dataclass
class Telemetry:
    """The providers `configure_tracing` installed; flush or shut them down.

    Shut down before the process exits, or spans not yet exported may be lost: it is
    also done at interpreter exit, but not after `os._exit` or a SIGKILL. With the
    exporter process, what was shipped to it (everything older than 100 ms) is still
    exported after those; with the SDK in process, the batch is lost.
    """

    tracer_provider: Any
    meter_provider: Any | None = None

    def force_flush(self, timeout_s: float = 10.0) -> None:
        """Export what is buffered now (what arrived is for the receiver to say)."""
        millis = int(timeout_s * 1000)
        self.tracer_provider.force_flush(millis)
        if self.meter_provider is not None:
            self.meter_provider.force_flush(millis)

    def shutdown(self) -> None:
        """Flush and stop exporting (idempotent)."""
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _signal_endpoint(base: str, path: str) -> str:
    """The HTTP endpoint of one signal: `path` appended to a base endpoint."""
    return base.rstrip("/") + "/" + path


#: The module of the SDK's OTLP span exporter, by protocol.
_SPAN_EXPORTERS = {
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
}


def _span_exporter_class(protocol: str) -> Any:
    try:
        return importlib.import_module(_SPAN_EXPORTERS[protocol]).OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError(
            setting=f"OTLP over {protocol}", reason=f"{exc.name} is not installed; {_EXTRA_HINT}"
        ) from exc


def otlp_span_exporter(
    protocol: str, endpoint: str | None, headers: Mapping[str, str] | None
) -> Any:
    """The SDK's OTLP span exporter for `protocol` (here, or in the exporter process)."""
    exporter_class = _span_exporter_class(protocol)
    if protocol == "grpc":
        insecure = None if endpoint is None else urlsplit(endpoint).scheme == "http"
        return exporter_class(
            endpoint=endpoint, insecure=insecure, headers=dict(headers or {}) or None
        )
    url = None if endpoint is None else _signal_endpoint(endpoint, "v1/traces")
    return exporter_class(endpoint=url, headers=headers)


def otlp_metric_exporter(
    protocol: str, endpoint: str | None, headers: Mapping[str, str] | None
) -> Any:
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )

            insecure = None if endpoint is None else urlsplit(endpoint).scheme == "http"
            return GrpcMetricExporter(
                endpoint=endpoint, insecure=insecure, headers=dict(headers or {}) or None
            )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        url = None if endpoint is None else _signal_endpoint(endpoint, "v1/metrics")
        return HttpMetricExporter(endpoint=url, headers=headers)
    except ImportError as exc:
        raise ConfigError(
            setting=f"OTLP over {protocol}", reason=f"{exc.name} is not installed; {_EXTRA_HINT}"
        ) from exc


def configure_tracing(
    *,
    endpoint: str | None = None,
    protocol: Protocol | None = None,
    service_name: str | None = None,
    headers: Mapping[str, str] | None = None,
    span_exporter: Any = None,
    batch: bool = True,
    metrics: bool = True,
    metric_interval_s: float | None = None,
    resource_attributes: Mapping[str, str] | None = None,
) -> Telemetry:
    """Install a global tracer (and meter) provider exporting over OTLP.

    Example::

        telemetry = phalanx.observe.configure_tracing(
            endpoint="http://127.0.0.1:4318", service_name="research-bot"
        )
        ...
        telemetry.shutdown()

    Args:
        endpoint: The OTLP base endpoint (`http://host:4318` for HTTP, `http://host:4317`
            for gRPC); None lets the exporters read `OTEL_EXPORTER_OTLP_*`.
        protocol: `http/protobuf` (the OTLP default) or `grpc`; None reads
            `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`.
        service_name: `service.name` of the resource; None reads `OTEL_SERVICE_NAME`
            (then "phalanx").
        headers: Extra export headers (e.g. an API key).
        span_exporter: Any SDK `SpanExporter` instead of OTLP (console, in-memory...).
        batch: Export in batches, from an exporter process for OTLP or from a
            background thread for a given exporter (the default; tune with
            `OTEL_BSP_*`), or synchronously as each span ends (tests, short scripts).
        metrics: Also install a meter provider exporting metrics over OTLP.
        metric_interval_s: Seconds between metric exports (default
            `OTEL_METRIC_EXPORT_INTERVAL`, then 60).
        resource_attributes: More resource attributes (`OTEL_RESOURCE_ATTRIBUTES` too).

    Raises:
        ConfigError: the SDK or the exporter is not installed, or a setting is
            not supported.
    """
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            setting="the OpenTelemetry SDK", reason=f"{exc.name} is not installed; {_EXTRA_HINT}"
        ) from exc
    environ = os.environ
    chosen = protocol or _env(
        environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    chosen = chosen or "http/protobuf"
    if chosen not in _PROTOCOLS:
        raise ConfigError(
            setting="OTLP protocol", value=chosen, reason=f"use one of {', '.join(_PROTOCOLS)}"
        )
    attributes: dict[str, str] = dict(resource_attributes or {})
    name = service_name or _env(environ, "OTEL_SERVICE_NAME")
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself; an
    # explicit name wins, and without any the service is "phalanx", not "unknown_service".
    attributes["service.name"] = name or "phalanx"
    resource = Resource.create(attributes)
    if span_exporter is None and batch and not _env(environ, "OTEL_TRACES_SAMPLER"):
        # Tracing off the hot path (see _offload). A given exporter object,
        # synchronous export or another sampler need the SDK in this process.
        return _offloaded(
            chosen, endpoint, headers, resource.attributes, metrics, metric_interval_s
        )
    exporter = span_exporter or otlp_span_exporter(chosen, endpoint, headers)
    provider = TracerProvider(resource=resource)
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    meter_provider = None
    if metrics and span_exporter is None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        interval = None if metric_interval_s is None else metric_interval_s * 1000
        reader = PeriodicExportingMetricReader(
            otlp_metric_exporter(chosen, endpoint, headers), export_interval_millis=interval
        )
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        otel_metrics.set_meter_provider(meter_provider)
    return Telemetry(provider, meter_provider)


def _offloaded(
    protocol: str,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    resource: Mapping[str, Any],
    metrics: bool,
    metric_interval_s: float | None,
) -> Telemetry:
    """Install providers that only queue here, and the exporter process that exports."""
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace

    _span_exporter_class(protocol)  # not installed: say so here, not in the exporter process
    shipper = Shipper(
        {
            "protocol": protocol,
            "endpoint": endpoint,
            "headers": dict(headers) if headers is not None else None,
            "resource": dict(resource),
            "metrics": metrics,
            "metric_interval_ms": None if metric_interval_s is None else metric_interval_s * 1000,
        }
    )
    tracer_provider = _lightspan.TracerProvider(shipper)
    trace.set_tracer_provider(tracer_provider)
    meter_provider = _lightmeter.MeterProvider(shipper) if metrics else None
    if meter_provider is not None:
        otel_metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider)


def configure_from_env() -> Telemetry | None:
    """Configure from the standard variables, as the `phalanx` command does at start.

    Exports when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, or when
    `OTEL_TRACES_EXPORTER` says `otlp` or `console`; not at all when `OTEL_SDK_DISABLED`
    is true or `OTEL_TRACES_EXPORTER` is `none`. Metrics follow unless
    `OTEL_METRICS_EXPORTER` is `none`. Returns None when nothing was configured.

    Raises:
        ConfigError: exporting is asked for but the SDK is not installed.
    """
    env = os.environ
    if (_env(env, "OTEL_SDK_DISABLED") or "").lower() == "true":
        return None
    exporters = {e.strip() for e in (_env(env, "OTEL_TRACES_EXPORTER") or "").split(",") if e}
    endpoint = _env(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if "none" in exporters or not (endpoint or exporters & {"otlp", "console"}):
        return None
    metrics = (_env(env, "OTEL_METRICS_EXPORTER") or "otlp").lower() != "none"
    if "console" in exporters and "otlp" not in exporters:
        try:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        except ImportError as exc:
            raise ConfigError(
                setting="OTEL_TRACES_EXPORTER",
                value="console",
                reason=f"{exc.name} is not installed; {_EXTRA_HINT}",
            ) from exc
        return configure_tracing(span_exporter=ConsoleSpanExporter(), metrics=False)
    # The exporters read the endpoint, headers, timeout and TLS settings themselves.
    return configure_tracing(metrics=metrics)
