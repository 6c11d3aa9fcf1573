"""Observability: OpenTelemetry spans and metrics, and the span tree of a recorded run.

Spans and metrics follow the GenAI conventions; the span tree is read from a run's
journal alone. The library emits through the OpenTelemetry API only; `configure_tracing` (or the
standard `OTEL_*` variables, which the `phalanx` command applies at start) installs the
SDK from the `otel` extra. Names and the conventions version are pinned in `_semconv`.
"""

from .._errors import TelemetryConfigError as TelemetryConfigError
from ._config import Telemetry as Telemetry
from ._config import configure_from_env as configure_from_env
from ._config import configure_tracing as configure_tracing
from ._content import capture_content as capture_content
from ._semconv import SEMCONV_VERSION as SEMCONV_VERSION
from ._tree import TraceNode as TraceNode
from ._tree import trace_run as trace_run
