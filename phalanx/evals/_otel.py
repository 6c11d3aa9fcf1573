"""Eval results as OpenTelemetry: one `phalanx.eval {rubric}` span, one event per score.

Each criterion's result for each run is a `gen_ai.evaluation.result` event (the GenAI
conventions' evaluation event, in the pinned 1.41.0) with `gen_ai.evaluation.name`
(the criterion), `gen_ai.evaluation.score.value`, `gen_ai.evaluation.score.label`
(`pass` or `fail`) and `gen_ai.evaluation.explanation`, plus `phalanx.run.id` (the run
scored) and `phalanx.eval.threshold`. Nothing is computed when tracing is off.
"""

from __future__ import annotations

from opentelemetry.util.types import AttributeValue

from .._telemetry import semconv as sc
from .._telemetry import tracer
from ._score import EvalReport


def emit(report: EvalReport) -> None:
    """Emit `report` as a span with one evaluation event per run and criterion."""
    with tracer.start_as_current_span(f"{sc.SPAN_EVAL} {report.rubric}") as span:
        if not span.is_recording():
            return
        span.set_attribute(sc.PHALANX_EVAL_RUBRIC, report.rubric)
        span.set_attribute(sc.PHALANX_EVAL_PASSED, report.passed)
        if report.eval_run_id is not None:
            span.set_attribute(sc.PHALANX_RUN_ID, report.eval_run_id)
        for run in report.runs:
            for result in run.results:
                attributes: dict[str, AttributeValue] = {
                    sc.GEN_AI_EVALUATION_NAME: result.criterion,
                    sc.GEN_AI_EVALUATION_SCORE_LABEL: "pass" if result.passed else "fail",
                    sc.GEN_AI_EVALUATION_EXPLANATION: result.detail,
                    sc.PHALANX_RUN_ID: run.run_id,
                    sc.PHALANX_EVAL_THRESHOLD: result.threshold,
                }
                if result.score is not None:
                    attributes[sc.GEN_AI_EVALUATION_SCORE_VALUE] = result.score
                span.add_event(sc.EVENT_EVALUATION_RESULT, attributes)
