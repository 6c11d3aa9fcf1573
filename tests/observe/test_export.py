"""What a `phalanx` process exports over OTLP, as a real receiver decodes it off the wire."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.observe.helpers import (
    ROOT,
    everything_said,
    journal,
    named,
    one,
    otel_env,
    run_workflow,
    store_url,
)
from tests.observe.receiver import ReceivedSpan, start_receiver
from tests.observe.workflows import SECRET

pytestmark = pytest.mark.slow

SECRET_AGENT = "tests.observe.workflows:secret_agent"
FAN_OUT = "tests.observe.workflows:fan_out"
CLIENT, INTERNAL = 3, 1  # SpanKind in the protocol


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def run_span_done(name: str):
    return lambda spans: any(s.name == name for s in spans)


def test_agent_run_exports_genai_spans_in_one_trace_with_parent_links(tmp_path: Path) -> None:
    """Run, invoke_agent, step, chat and execute_tool spans arrive nested, with GenAI names."""
    with start_receiver() as receiver:
        outcome = run_workflow(SECRET_AGENT, "agent-1", otel_env(tmp_path, receiver))
        assert outcome["status"] == "completed"
        spans = receiver.wait_for(run_span_done(f"phalanx.run {SECRET_AGENT}"))

    run = one(spans, f"phalanx.run {SECRET_AGENT}")
    assert run.parent_span_id == ""
    assert run.attributes["phalanx.run.id"] == "agent-1"
    assert run.attributes["phalanx.run.status"] == "completed"
    assert run.resource["service.name"] == "phalanx-tests"
    assert run.scope == "phalanx"
    assert {s.trace_id for s in spans} == {run.trace_id}

    agent = one(spans, "invoke_agent helper")
    assert agent.parent_span_id == run.span_id
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "helper"
    assert agent.attributes["gen_ai.agent.id"] == "agent-1/helper"
    assert agent.attributes["phalanx.agent.role"] == "assistant"
    assert agent.attributes["phalanx.agent.input_hash"].startswith("sha256:")
    assert agent.attributes["phalanx.agent.turns"] == 2
    assert agent.attributes["phalanx.agent.tool_calls"] == 1
    assert agent.attributes["gen_ai.response.time_to_first_chunk"] > 0
    tool_calls = [attrs for name, attrs in agent.events if name == "phalanx.agent.tool_call"]
    assert [(c["gen_ai.tool.name"], c["phalanx.tool.outcome"]) for c in tool_calls] == [
        ("login", "ok")
    ]

    steps = children(spans, agent)
    assert [s.name for s in sorted(steps, key=lambda s: s.start_ns)] == [
        "phalanx.step helper/model/1",
        "phalanx.step helper/tool/login/1.0",
        "phalanx.step helper/model/2",
    ]
    chats = named(spans, "chat scripted-1")
    assert len(chats) == 2
    for chat in chats:
        step = next(s for s in spans if s.span_id == chat.parent_span_id)
        assert step.name.startswith("phalanx.step helper/model/")
        assert chat.kind == INTERNAL  # the scripted model answers in-process
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.provider.name"] == "scripted"
        assert chat.attributes["gen_ai.request.model"] == "scripted-1"
        assert chat.attributes["gen_ai.response.model"] == "scripted-1"
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert chat.attributes["gen_ai.usage.output_tokens"] > 0
        assert chat.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    reasons = sorted(c.attributes["gen_ai.response.finish_reasons"][0] for c in chats)
    assert reasons == ["stop", "tool_calls"]
    assert agent.attributes["gen_ai.usage.input_tokens"] == sum(
        c.attributes["gen_ai.usage.input_tokens"] for c in chats
    )

    tool = one(spans, "execute_tool login")
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "login"
    assert tool.attributes["gen_ai.tool.call.id"] == "call_0_0"
    assert next(s for s in spans if s.span_id == tool.parent_span_id).name == (
        "phalanx.step helper/tool/login/1.0"
    )

    # Retries are events on the step's one span, not extra spans.
    flaky = one(spans, "phalanx.step flaky")
    assert flaky.parent_span_id == run.span_id
    retries = [attrs for name, attrs in flaky.events if name == "phalanx.step.retry"]
    assert len(retries) == 1
    assert retries[0]["error.type"] == "ConnectionError"
    assert flaky.attributes["phalanx.step.attempts"] == 2
    assert flaky.attributes["phalanx.step.status"] == "completed"

    # The journal carries the same trace: every event the runner wrote, its run span.
    events = journal(store_url(tmp_path), "agent-1")
    stamped = [e for e in events if e.type != "RunStarted"]
    assert {(e.metadata.trace_id, e.metadata.span_id) for e in stamped} == {
        (run.trace_id, run.span_id)
    }


def test_content_is_not_captured_by_default(tmp_path: Path) -> None:
    """Without the opt-in variable no prompt, completion or tool argument is exported."""
    with start_receiver() as receiver:
        run_workflow(SECRET_AGENT, "quiet-1", otel_env(tmp_path, receiver))
        spans = receiver.wait_for(run_span_done(f"phalanx.run {SECRET_AGENT}"))
    content_keys = {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
    for span in spans:
        assert not content_keys & set(span.attributes), span.name
        assert "Log in for the user" not in everything_said(span)
        assert SECRET not in everything_said(span)
    assert one(spans, "invoke_agent helper").attributes["phalanx.agent.input_hash"]


def test_captured_content_never_contains_a_declared_secret(tmp_path: Path) -> None:
    """With capture on, prompts and tool arguments arrive, but the secret never does."""
    with start_receiver() as receiver:
        run_workflow(SECRET_AGENT, "loud-1", otel_env(tmp_path, receiver, capture=True))
        spans = receiver.wait_for(run_span_done(f"phalanx.run {SECRET_AGENT}"))
    for span in spans:
        assert SECRET not in everything_said(span), span.name
    tool = one(spans, "execute_tool login")
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {
        "user": "ada",
        "api_key": "[redacted]",
    }
    # The tool echoed the key into its result: scrubbed there too.
    assert tool.attributes["gen_ai.tool.call.result"] == "session for ada opened with [redacted]"
    first, second = sorted(named(spans, "chat scripted-1"), key=lambda s: s.start_ns)
    system = json.loads(first.attributes["gen_ai.system_instructions"])
    assert system == [{"type": "text", "content": "You are helper. Log in for the user."}]
    asked = json.loads(first.attributes["gen_ai.input.messages"])
    assert asked == [
        {"role": "user", "parts": [{"type": "text", "content": "Please log in as ada."}]}
    ]
    answered = json.loads(first.attributes["gen_ai.output.messages"])
    call = answered[0]["parts"][0]
    assert call["type"] == "tool_call"
    assert call["arguments"] == {"user": "ada", "api_key": "[redacted]"}
    # The second call's input holds the first call and the tool's (scrubbed) answer.
    history = json.loads(second.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[2]["parts"][0]["response"] == "session for ada opened with [redacted]"


def test_output_messages_carry_the_finish_reason_the_genai_schema_requires(
    tmp_path: Path,
) -> None:
    """Captured output messages (invoke_agent's and each chat's) name their finish_reason."""
    with start_receiver() as receiver:
        env = otel_env(tmp_path, receiver, capture=True)
        outcome = run_workflow(SECRET_AGENT, "finish-1", env)
        spans = receiver.wait_for(run_span_done(f"phalanx.run {SECRET_AGENT}"))
    # v1.41.0 gen-ai-output-messages.json: role, parts and finish_reason are required.
    agent = one(spans, "invoke_agent helper")
    answer = outcome["result"]["answer"].replace(SECRET, "[redacted]")  # it echoes the key
    assert json.loads(agent.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": answer}],
            "finish_reason": "stop",
        }
    ]
    chats = sorted(named(spans, "chat scripted-1"), key=lambda s: s.start_ns)
    answered = [json.loads(c.attributes["gen_ai.output.messages"]) for c in chats]
    assert [m[0]["finish_reason"] for m in answered] == ["tool_calls", "stop"]
    assert all({"role", "parts", "finish_reason"} <= set(m[0]) for m in answered)


def test_fan_out_over_grpc_exports_branch_outcomes_child_runs_and_metrics(
    tmp_path: Path,
) -> None:
    """Over gRPC: the fan-out span holds each branch's outcome; child runs nest in it."""
    with start_receiver(grpc=True) as receiver:
        env = otel_env(tmp_path, receiver, protocol="grpc")
        outcome = run_workflow(FAN_OUT, "fan-1", env)
        assert outcome["status"] == "completed"
        spans = receiver.wait_for(run_span_done(f"phalanx.run {FAN_OUT}"))
        assert receiver.requests.get("grpc", 0) >= 1
        assert "http" not in receiver.requests
        metric_names = {m["name"] for m in receiver.metrics}  # exported at shutdown
        fanout_points = [m for m in receiver.metrics if m["name"] == "phalanx.fanout.completed"]

    run = one(spans, f"phalanx.run {FAN_OUT}")
    fanout = one(spans, "phalanx.fanout sources")
    assert fanout.parent_span_id == run.span_id
    assert fanout.attributes["phalanx.fanout.policy"] == "best_effort"
    assert fanout.attributes["phalanx.fanout.branches"] == ["good", "bad"]
    assert fanout.attributes["phalanx.fanout.partial"] is True
    assert fanout.attributes["phalanx.fanout.satisfied"] is True
    assert fanout.attributes["phalanx.fanout.missing"] == ["bad"]
    outcomes = {
        attrs["phalanx.branch.name"]: attrs
        for name, attrs in fanout.events
        if name == "phalanx.fanout.branch"
    }
    assert outcomes["good"]["phalanx.branch.status"] == "succeeded"
    assert outcomes["bad"]["phalanx.branch.status"] == "failed"
    assert "no source for fencing" in outcomes["bad"]["phalanx.branch.error"]

    branch_runs = named(spans, "phalanx.run tests.observe.workflows:branch")
    assert {s.attributes["phalanx.run.id"] for s in branch_runs} == {"fan-1.1.good", "fan-1.1.bad"}
    assert {s.parent_span_id for s in branch_runs} == {fanout.span_id}
    failed = next(s for s in branch_runs if s.attributes["phalanx.run.id"] == "fan-1.1.bad")
    assert failed.attributes["phalanx.run.status"] == "failed"
    assert failed.status_code == 2  # ERROR
    assert failed.attributes["error.type"] == "RuntimeError"
    broken = one(spans, "phalanx.step broken")
    assert broken.parent_span_id == failed.span_id
    assert broken.status_code == 2
    assert one(spans, "invoke_agent researcher").attributes["gen_ai.agent.id"] == (
        "fan-1.1.good/researcher"
    )
    assert {s.trace_id for s in spans} == {run.trace_id}

    assert {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "phalanx.tool.executions",
        "phalanx.step.duration",
        "phalanx.fanout.completed",
    } <= metric_names
    assert [(p["attributes"]["phalanx.fanout.partial"], p["value"]) for p in fanout_points] == [
        (True, 1)
    ]


def test_tracing_benchmark_runs_and_its_spans_arrive() -> None:
    """`benchmarks/tracing.py --quick --json` exits 0; every traced span reached its receiver."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/tracing.py", "--quick", "--json", "--steps", "100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["spans_arrived"] >= report["spans_expected_at_least"] > 0
    for mode in ("enabled", "in-process"):  # exported off the hot path, and in process
        for key in ("step_s", "step_cpu_s", "io_step_s", "turn_s", "turn_cpu_s"):
            assert report[mode][key]["disabled_us"] > 0
            assert report[mode][key]["traced_us"] > 0
    assert report["exporter_cpu_ms_per_run"] > 0  # the exporter process did the exporting


def test_dead_letter_depth_and_breaker_transitions_are_exported(tmp_path: Path) -> None:
    """A dead-lettered call raises the DLQ depth metric; the breaker opening is counted."""
    with start_receiver() as receiver:
        env = otel_env(tmp_path, receiver)
        outcome = run_workflow("tests.observe.workflows:dead_letters", "dlq-1", env)
        assert outcome["result"] == {"unavailable": True}
        receiver.wait_for(run_span_done("phalanx.run tests.observe.workflows:dead_letters"))
        metrics = list(receiver.metrics)  # exported when the process shut down
    depth = [m for m in metrics if m["name"] == "phalanx.dlq.depth"]
    assert depth and depth[-1]["value"] == 1
    assert depth[-1]["attributes"]["gen_ai.tool.name"] == "always_down"
    kinds = {
        m["attributes"]["phalanx.breaker.transition"]
        for m in metrics
        if m["name"] == "phalanx.tool.breaker.transitions"
    }
    assert "BreakerOpened" in kinds


def test_agent_confidence_is_recorded_when_its_output_reports_one(tmp_path: Path) -> None:
    """An agent whose structured output has a confidence gets it on its invoke_agent span."""
    with start_receiver() as receiver:
        env = otel_env(tmp_path, receiver)
        outcome = run_workflow("tests.observe.workflows:confident_agent", "judge-1", env)
        assert outcome["result"]["output"] == {"answer": "yes", "confidence": 0.8}
        spans = receiver.wait_for(
            run_span_done("phalanx.run tests.observe.workflows:confident_agent")
        )
    agent = one(spans, "invoke_agent judge")
    assert agent.attributes["phalanx.agent.confidence"] == 0.8
