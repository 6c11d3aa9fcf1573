"""Observability: exporting spans and metrics, and reading a recorded run back as pictures.

Each layer emits its own spans and metrics (the GenAI conventions for agents, model and
tool calls), through the OpenTelemetry API only, on the base in `phalanx._telemetry`,
where names and the conventions version are pinned. This package sits on top of the
layers: `configure_tracing` (or the standard `OTEL_*` variables, which the `phalanx`
command applies at start) installs the SDK and the OTLP exporters from the `otel`
extra, run in an exporter process so that tracing stays off the hot path, and
`trace_run` reads a run's span tree back from its journal alone.

Pictures: `build_run_model` reads a run and its child runs into one `RunModel` (lanes,
spans, marks, fan-outs, decisions), and everything that shows a run renders from it:
`render_timeline_svg` (a Gantt chart), `run_graph` with `to_dot` / `to_mermaid` (the
topology it took), `narrate` (the run in sentences), the dashboard, `phalanx show`.
`declared_graph` draws an agent system from code without running it.
"""

from .._telemetry import capture_content as capture_content
from .._telemetry.semconv import SEMCONV_VERSION as SEMCONV_VERSION
from ._config import Telemetry as Telemetry
from ._config import configure_from_env as configure_from_env
from ._config import configure_tracing as configure_tracing
from ._declared import declared_graph as declared_graph
from ._graph import Edge as Edge
from ._graph import Graph as Graph
from ._graph import Node as Node
from ._graph import run_graph as run_graph
from ._graph import to_dot as to_dot
from ._graph import to_mermaid as to_mermaid
from ._model import Lane as Lane
from ._model import RunModel as RunModel
from ._model import ViewCache as ViewCache
from ._model import build_run_model as build_run_model
from ._model import short_workflow as short_workflow
from ._render import DIAGRAM_FORMATS as DIAGRAM_FORMATS
from ._render import TIMELINE_FORMATS as TIMELINE_FORMATS
from ._render import diagram_bytes as diagram_bytes
from ._render import dot_to as dot_to
from ._render import svg_to_png as svg_to_png
from ._render import timeline_bytes as timeline_bytes
from ._render import timeline_html as timeline_html
from ._runview import TROUBLE as TROUBLE
from ._runview import BranchView as BranchView
from ._runview import FanOutView as FanOutView
from ._runview import Mark as Mark
from ._runview import RunView as RunView
from ._runview import Span as Span
from ._runview import view_run as view_run
from ._story import narrate as narrate
from ._story import outcome_word as outcome_word
from ._timeline import render_timeline_svg as render_timeline_svg
from ._tree import TraceNode as TraceNode
from ._tree import trace_run as trace_run
