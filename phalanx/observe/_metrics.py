"""Metric instruments, through the OpenTelemetry metrics API.

Created once against the global meter: until a meter provider is installed (by
`configure_tracing` or the application), the API's proxy instruments do nothing, and
they start recording as soon as one is. Bucket boundaries for the GenAI histograms
are the ones the conventions advise.
"""

from __future__ import annotations

from opentelemetry import metrics

from . import _semconv as sc
from ._version import VERSION

_meter = metrics.get_meter(sc.INSTRUMENTATION, VERSION, schema_url=sc.SCHEMA_URL)

# Advised by the GenAI conventions: powers of 4 up to 4^11 tokens, and seconds.
_TOKEN_BUCKETS = [4.0**i for i in range(12)]
_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                     40.96, 81.92]  # fmt: skip

token_usage = _meter.create_histogram(
    sc.METRIC_TOKEN_USAGE,
    unit="{token}",
    description="Tokens used per model call, by gen_ai.token.type (input or output).",
    explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
)
operation_duration = _meter.create_histogram(
    sc.METRIC_OPERATION_DURATION,
    unit="s",
    description="Duration of model calls, failed ones included (with error.type).",
    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
)
time_to_first_chunk = _meter.create_histogram(
    sc.METRIC_TIME_TO_FIRST_CHUNK,
    unit="s",
    description="Time from a model request to its first streamed chunk.",
    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
)
step_duration = _meter.create_histogram(
    sc.METRIC_STEP_DURATION,
    unit="s",
    description="Wall time of executed durable steps (retries included); replayed steps "
    "are not counted.",
    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
)
tool_calls = _meter.create_counter(
    sc.METRIC_TOOL_EXECUTIONS,
    unit="{execution}",
    description="Tool executions (attempts run in this process), by gen_ai.tool.name.",
)
tool_errors = _meter.create_counter(
    sc.METRIC_TOOL_EXECUTION_ERRORS,
    unit="{execution}",
    description="Tool executions that raised, by gen_ai.tool.name and error.type.",
)
tool_duration = _meter.create_histogram(
    sc.METRIC_TOOL_EXECUTION_DURATION,
    unit="s",
    description="Duration of tool executions, by gen_ai.tool.name.",
    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
)
fanouts = _meter.create_counter(
    sc.METRIC_FANOUTS,
    unit="{fanout}",
    description="Fan-outs that finished, by policy and whether the result was partial "
    "(the partial rate is partial=true over all).",
)
lease_takeovers = _meter.create_counter(
    sc.METRIC_LEASE_TAKEOVERS,
    unit="{takeover}",
    description="Runs resumed by forcibly taking over a live lease (fencing the old runner).",
)
dlq_depth = _meter.create_up_down_counter(
    sc.METRIC_DLQ_DEPTH,
    unit="{entry}",
    description="Open dead-letter entries: +1 when this process dead-letters a call, -1 "
    "when it closes an entry (summed over processes, the queue's depth), by tool.",
)
breaker_transitions = _meter.create_counter(
    sc.METRIC_BREAKER_TRANSITIONS,
    unit="{transition}",
    description="Circuit-breaker state changes this process wrote, by tool and transition.",
)
