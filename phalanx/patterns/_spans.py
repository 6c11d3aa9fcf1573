"""Spans and metrics of patterns: the span of a fan-out waiting on its branches.

The fan-out's span is current while its branches run, so each branch's child run (and
its steps) nest under it in the trace; when it ends, every finished branch becomes an
event on it, and the span says whether the result was partial.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span

from .. import _telemetry as telemetry
from .._telemetry import semconv as sc

if TYPE_CHECKING:
    from ._fanout_state import BranchOutcome

fanouts = telemetry.meter.create_counter(
    sc.METRIC_FANOUTS,
    unit="{fanout}",
    description="Fan-outs that finished, by policy and whether the result was partial "
    "(the partial rate is partial=true over all).",
)


@contextlib.asynccontextmanager
async def fanout_span(
    *,
    run_id: str,
    op: int,
    name: str,
    policy: str,
    kind: str,
    needed: int,
    branches: Sequence[str],
    outcomes: Mapping[str, BranchOutcome],
) -> AsyncIterator[Span]:
    """The span of a fan-out waiting on its branches (their child runs are its children).

    `outcomes` is the fan-out's live map of finished branches; at the end each becomes
    an event, and the span says whether the result was partial.
    """
    span = telemetry.tracer.start_span(
        f"{sc.SPAN_FANOUT} {name}",
        attributes={
            sc.PHALANX_RUN_ID: run_id,
            sc.PHALANX_STEP_OP: op,
            sc.PHALANX_FANOUT_NAME: name,
            sc.PHALANX_FANOUT_POLICY: policy,
            sc.PHALANX_FANOUT_BRANCHES: list(branches),
        },
    )
    try:
        with telemetry.current(span):
            yield span
    finally:
        # A set: `missing` below is then linear, not quadratic, in the branches.
        succeeded = {b for b, o in outcomes.items() if o.status == "succeeded"}
        missing = [b for b in branches if b not in succeeded]
        partial = bool(missing)
        span.set_attribute(sc.PHALANX_FANOUT_SUCCEEDED, len(succeeded))
        span.set_attribute(sc.PHALANX_FANOUT_SATISFIED, len(succeeded) >= needed)
        span.set_attribute(sc.PHALANX_FANOUT_PARTIAL, partial)
        span.set_attribute(sc.PHALANX_FANOUT_MISSING, missing)
        for branch, outcome in outcomes.items():
            event: dict[str, Any] = {
                sc.PHALANX_BRANCH_NAME: branch,
                sc.PHALANX_BRANCH_STATUS: outcome.status,
                sc.PHALANX_BRANCH_DURATION: float(outcome.duration_s),
                sc.PHALANX_BRANCH_STALLED: bool(outcome.stalled),
            }
            if outcome.run_id:
                event[sc.PHALANX_RUN_ID] = outcome.run_id
            if outcome.error:
                event[sc.PHALANX_BRANCH_ERROR] = str(outcome.error)
            span.add_event(sc.EVENT_BRANCH_FINISHED, event)
        fanouts.add(1, {sc.PHALANX_FANOUT_POLICY: kind, sc.PHALANX_FANOUT_PARTIAL: partial})
        span.end()


def vote_recorded(run_id: str, result: Mapping[str, Any]) -> None:
    """Put a vote's outcome on the current span: attributes, and an event per confidence.

    On the current span (the run's, or the step's the vote runs in) rather than one of
    its own: a vote is over when this is called, its replicas traced in its fan-out.
    """
    span = trace.get_current_span()
    if not span.is_recording():
        return
    name = str(result["vote"])
    span.add_event(
        sc.EVENT_VOTE_DECIDED,
        {
            sc.PHALANX_RUN_ID: run_id,
            sc.PHALANX_VOTE_NAME: name,
            sc.PHALANX_VOTE_DECISION: str(result["decision"]),
            sc.PHALANX_VOTE_AGREEMENT: float(result["agreement"]),
            sc.PHALANX_VOTE_DISAGREEMENT: bool(result["disagreement"]),
            sc.PHALANX_VOTE_DISSENTERS: [str(d) for d in result["dissenters"]],
        },
    )
    for replica, confidence in dict(result.get("confidence") or {}).items():
        span.add_event(
            sc.EVENT_REPLICA_CONFIDENCE,
            {
                sc.PHALANX_VOTE_NAME: name,
                sc.PHALANX_REPLICA_NAME: str(replica),
                sc.PHALANX_REPLICA_CONFIDENCE: float(confidence),
            },
        )
        span.set_attribute(f"{sc.PHALANX_REPLICA_CONFIDENCE}.{replica}", float(confidence))
