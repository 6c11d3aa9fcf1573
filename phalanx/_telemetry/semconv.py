"""Every telemetry name phalanx emits, pinned in one place, below every layer using them.

Why one module: every `gen_ai.*` name is still "Development" status, so the names move
between releases. We follow the GenAI conventions as published with OpenTelemetry
semantic conventions **v1.41.0** (schema URL below), the last release before the GenAI
conventions moved to their own repository (`semantic-conventions-genai`, whose v0.1.0
lists the changes since 1.41.0). Moving to a newer version is a change to this file
and its tests, nothing else.

Known renames and removals to watch (as of that move):

- `gen_ai.system` was replaced by `gen_ai.provider.name` (1.37.0); we emit only the new one.
- `gen_ai.usage.prompt_tokens` / `completion_tokens` were replaced by
  `gen_ai.usage.input_tokens` / `output_tokens`; we emit only the new ones.
- `gen_ai.prompt` / `gen_ai.completion` were removed in favour of
  `gen_ai.input.messages` / `gen_ai.output.messages` (opt-in content, JSON).
- genai v0.1.0 removes `gen_ai.agent.id` from *internal* `invoke_agent` spans (ours are
  internal: the agent runs in-process); we keep it, as the seed asks for the agent id.
- genai v0.1.0 merges `invoke_workflow` into `invoke_agent`; our runs keep phalanx names.
- The `gen_ai.client.token.usage` histogram is being replaced by
  `gen_ai.client.inference.tokens` counters (genai, unreleased); we emit the histogram.

phalanx's own names live under `phalanx.*` and are ours to keep stable.
"""

from __future__ import annotations

from typing import Final

#: The semantic-conventions release whose GenAI names we follow.
SEMCONV_VERSION: Final = "1.41.0"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
#: The instrumentation scope name of every tracer and meter phalanx uses.
INSTRUMENTATION: Final = "phalanx"

# -- environment variables --------------------------------------------------------------

#: "true" turns on capture of prompts, completions and tool arguments/results.
CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# -- GenAI operation names (gen_ai.operation.name values) -------------------------------

OP_CHAT: Final = "chat"
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"

# -- GenAI attributes (Development status) --------------------------------------------

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
# Opt-in content (only with CAPTURE_CONTENT_ENV=true; secrets redacted even then).
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"

# -- general attributes (stable) ------------------------------------------------------

ERROR_TYPE: Final = "error.type"

# -- GenAI evaluation results (an event; in the conventions since 1.38.0) -----------------

EVENT_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"

# -- GenAI metrics (Development status) -----------------------------------------------

METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"

# -- phalanx span names (the variable part follows a space, as GenAI names do) ---------

SPAN_RUN: Final = "phalanx.run"  # "phalanx.run {workflow}"
SPAN_STEP: Final = "phalanx.step"  # "phalanx.step {step name}"
SPAN_FANOUT: Final = "phalanx.fanout"  # "phalanx.fanout {fan-out name}"
SPAN_EVAL: Final = "phalanx.eval"  # "phalanx.eval {rubric}"

# -- phalanx attributes ------------------------------------------------------------------

PHALANX_RUN_ID: Final = "phalanx.run.id"
PHALANX_RUN_WORKFLOW: Final = "phalanx.run.workflow"
PHALANX_RUN_PARENT_ID: Final = "phalanx.run.parent_id"
PHALANX_EVAL_RUBRIC: Final = "phalanx.eval.rubric"
PHALANX_EVAL_PASSED: Final = "phalanx.eval.passed"
PHALANX_EVAL_THRESHOLD: Final = "phalanx.eval.threshold"
PHALANX_RUN_STATUS: Final = "phalanx.run.status"
PHALANX_RUN_RESUMED: Final = "phalanx.run.resumed"
PHALANX_RUN_REPLAYED_OPS: Final = "phalanx.run.replayed_operations"
PHALANX_LEASE_EPOCH: Final = "phalanx.lease.epoch"
PHALANX_LEASE_OWNER: Final = "phalanx.lease.owner"
PHALANX_STEP_NAME: Final = "phalanx.step.name"
PHALANX_STEP_OP: Final = "phalanx.step.op"
PHALANX_STEP_ATTEMPT: Final = "phalanx.step.attempt"
PHALANX_STEP_ATTEMPTS: Final = "phalanx.step.attempts"
PHALANX_STEP_STATUS: Final = "phalanx.step.status"
PHALANX_AGENT_ROLE: Final = "phalanx.agent.role"
PHALANX_AGENT_INPUT_HASH: Final = "phalanx.agent.input_hash"
PHALANX_AGENT_TURNS: Final = "phalanx.agent.turns"
PHALANX_AGENT_TOOL_CALLS: Final = "phalanx.agent.tool_calls"
#: The agent's own confidence, when its structured output reports one (a number).
PHALANX_AGENT_CONFIDENCE: Final = "phalanx.agent.confidence"
PHALANX_AGENT_RESUMED: Final = "phalanx.agent.resumed"
PHALANX_MODEL_LATENCY: Final = "phalanx.model.latency_s"
PHALANX_TOOL_OUTCOME: Final = "phalanx.tool.outcome"
PHALANX_FANOUT_NAME: Final = "phalanx.fanout.name"
PHALANX_FANOUT_POLICY: Final = "phalanx.fanout.policy"
PHALANX_FANOUT_BRANCHES: Final = "phalanx.fanout.branches"
PHALANX_FANOUT_SUCCEEDED: Final = "phalanx.fanout.succeeded"
PHALANX_FANOUT_SATISFIED: Final = "phalanx.fanout.satisfied"
PHALANX_FANOUT_PARTIAL: Final = "phalanx.fanout.partial"
PHALANX_FANOUT_MISSING: Final = "phalanx.fanout.missing"
PHALANX_BRANCH_NAME: Final = "phalanx.branch.name"
PHALANX_BRANCH_STATUS: Final = "phalanx.branch.status"
PHALANX_BRANCH_ERROR: Final = "phalanx.branch.error"
PHALANX_BRANCH_DURATION: Final = "phalanx.branch.duration_s"
PHALANX_BRANCH_STALLED: Final = "phalanx.branch.stalled"
PHALANX_RETRY_DELAY: Final = "phalanx.retry.delay_s"
PHALANX_VOTE_NAME: Final = "phalanx.vote.name"
PHALANX_VOTE_DECISION: Final = "phalanx.vote.decision"
PHALANX_VOTE_AGREEMENT: Final = "phalanx.vote.agreement"
PHALANX_VOTE_DISAGREEMENT: Final = "phalanx.vote.disagreement"
PHALANX_VOTE_DISSENTERS: Final = "phalanx.vote.dissenters"
PHALANX_REPLICA_NAME: Final = "phalanx.replica.name"
#: A replica's self-reported confidence (a number; recorded, never calibrated).
PHALANX_REPLICA_CONFIDENCE: Final = "phalanx.replica.confidence"

# -- phalanx span events -------------------------------------------------------------

EVENT_RETRY: Final = "phalanx.step.retry"
EVENT_LEASE_ACQUIRED: Final = "phalanx.lease.acquired"
EVENT_LEASE_TAKEN_OVER: Final = "phalanx.lease.taken_over"
EVENT_FENCED: Final = "phalanx.lease.fenced"
EVENT_BRANCH_FINISHED: Final = "phalanx.fanout.branch"
EVENT_TOOL_CALL: Final = "phalanx.agent.tool_call"
EVENT_VOTE_DECIDED: Final = "phalanx.vote.decided"
EVENT_REPLICA_CONFIDENCE: Final = "phalanx.vote.confidence"

# -- phalanx metrics -------------------------------------------------------------------
# Tool *executions* are attempts that ran here, measured live; the journal-derived
# per-call figures (`phalanx.tool.calls` and others, phalanx/tools/_metrics.py) count
# logical calls across every process, so the names differ on purpose.

METRIC_STEP_DURATION: Final = "phalanx.step.duration"
METRIC_TOOL_EXECUTIONS: Final = "phalanx.tool.executions"
METRIC_TOOL_EXECUTION_ERRORS: Final = "phalanx.tool.execution.errors"
METRIC_TOOL_EXECUTION_DURATION: Final = "phalanx.tool.execution.duration"
METRIC_FANOUTS: Final = "phalanx.fanout.completed"
METRIC_LEASE_TAKEOVERS: Final = "phalanx.lease.takeovers"
METRIC_DLQ_DEPTH: Final = "phalanx.dlq.depth"
METRIC_BREAKER_TRANSITIONS: Final = "phalanx.tool.breaker.transitions"
ATTR_BREAKER_TRANSITION: Final = "phalanx.breaker.transition"
