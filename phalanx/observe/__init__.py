"""Observability: exporting phalanx's spans and metrics, and the span tree of a recorded run.

Each layer emits its own spans and metrics (the GenAI conventions for agents, model and
tool calls), through the OpenTelemetry API only, on the base in `phalanx._telemetry`,
where names and the conventions version are pinned. This package sits on top of the
layers: `configure_tracing` (or the standard `OTEL_*` variables, which the `phalanx`
command applies at start) installs the SDK and the OTLP exporters from the `otel`
extra, and `trace_run` reads a run's span tree back from its journal alone.
"""

from .._telemetry import capture_content as capture_content
from .._telemetry.semconv import SEMCONV_VERSION as SEMCONV_VERSION
from ._config import Telemetry as Telemetry
from ._config import configure_from_env as configure_from_env
from ._config import configure_tracing as configure_tracing
from ._tree import TraceNode as TraceNode
from ._tree import trace_run as trace_run
