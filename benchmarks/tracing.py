"""Tracing overhead: a durable step and an agent turn, traced to a live receiver vs not.

Run it as `.venv/bin/python benchmarks/tracing.py [--quick] [--json] [--steps N] [--rounds R]`.

Three contenders, each a fresh process on a fresh SQLite journal (the OpenTelemetry
tracer provider is process-global, so they cannot share one):

- `disabled`: no SDK configured, the no-op API path every phalanx user gets by default
  (the baseline);
- `enabled`: `configure_tracing` from `OTEL_EXPORTER_OTLP_ENDPOINT`, exporting OTLP/HTTP
  to a live receiver in this process, metrics on (exported at the end): spans and
  measurements are only queued in the traced process, and its exporter process builds
  and exports them (`phalanx/observe/_offload.py`);
- `in-process`: the same, with `OTEL_TRACES_SAMPLER=parentbased_always_on` (the SDK's
  default sampler, named), which keeps the SDK and its batch processor in the traced
  process: how tracing was exported before, for comparison.

Measured in each process: N no-op `ctx.step`s in one run (per step = total / N), and
M agent turns with the scripted model at zero latency (each turn one model step and one
tool step; per turn = total / M), as wall time and as the traced process's CPU time;
with the exporter process, also that process's CPU time over the whole run (the work
moved off the hot path, not gone). Rounds rotate the contenders' order; each round
yields one paired ratio against `disabled`, the figure is the median. The receiver
counts the spans that arrived, so the traced contenders are known to have exported
them. Target: `enabled` overhead under 10% of the step cost and of the agent-turn
cost. The script exits 0 when a target is missed: it is a report, not a gate. With
`--json` stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.10
#: The "real" step: 2 ms of awaited I/O, a fast API call or database query.
IO_STEP_S = 0.002


# -- the worker (one process, one contender) ---------------------------------------------


def _noop() -> None:
    return None


async def _io(seconds: float) -> None:
    await asyncio.sleep(seconds)  # stands for a small real effect: an API call, a query


async def _work(steps: int, turns: int, store: str, traced: bool) -> dict[str, float]:
    import phalanx
    from phalanx.agents import Agent, Rule, Script, ScriptedModel, Turn
    from phalanx.tools import tool

    telemetry = None
    if traced:
        from phalanx.observe import configure_tracing

        telemetry = configure_tracing(service_name="phalanx-bench")

    @tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    turn_script = (Turn(tool_calls=(("echo", {"text": "x"}),)),)
    script = Script(rules=(Rule("bench", turn_script),))
    agent = Agent(
        "bench",
        model=ScriptedModel(script, latency=0.0, seconds_per_token=0.0),
        instructions="bench",
        tools=[echo],
        max_turns=turns,
    )

    @phalanx.workflow
    async def steps_wf(ctx: phalanx.WorkflowContext, n: int) -> int:
        for i in range(n):
            await ctx.step(f"s{i}", _noop)
        return n

    @phalanx.workflow
    async def io_wf(ctx: phalanx.WorkflowContext, n: int) -> int:
        for i in range(n):
            await ctx.step(f"io{i}", _io, IO_STEP_S)
        return n

    @phalanx.workflow
    async def agent_wf(ctx: phalanx.WorkflowContext) -> str:
        # It never answers: MaxTurnsExceededError once it has run every turn.
        with contextlib.suppress(phalanx.PhalanxError):
            await agent.run(ctx, "go")
        return "done"

    figures: dict[str, float] = {}
    async with phalanx.open_runtime(store) as runtime:
        # Warm-up: imports, caches, tables, and (traced) one export, so the exporter's
        # own first-use imports do not land in the timed part.
        await runtime.run(steps_wf, {"n": 20}, run_id="warm")
        await runtime.run(agent_wf, {}, run_id="warm-agent")
        if telemetry is not None:
            telemetry.force_flush()
        started, cpu = time.perf_counter(), time.process_time()
        await runtime.run(steps_wf, {"n": steps}, run_id="steps")
        figures["step_s"] = (time.perf_counter() - started) / steps
        figures["step_cpu_s"] = (time.process_time() - cpu) / steps
        io_steps = max(20, steps // 10)
        started = time.perf_counter()
        await runtime.run(io_wf, {"n": io_steps}, run_id="io")
        figures["io_step_s"] = (time.perf_counter() - started) / io_steps
        started, cpu = time.perf_counter(), time.process_time()
        await runtime.run(agent_wf, {}, run_id="agent")
        figures["turn_s"] = (time.perf_counter() - started) / turns
        figures["turn_cpu_s"] = (time.process_time() - cpu) / turns
    if telemetry is not None:
        telemetry.shutdown()  # export what is left: after the timing, as at process exit
    # The exporter process, if any, is this process's child, waited for by shutdown.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures["exporter_cpu_s"] = children.ru_utime + children.ru_stime
    return figures


# -- the receiver ----------------------------------------------------------------------


@contextmanager
def _receiver() -> Iterator[tuple[str, dict[str, int]]]:
    """A live OTLP/HTTP endpoint counting the spans that arrive."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    counts = {"spans": 0, "requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/v1/traces":
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with lock:
                    counts["spans"] += spans
                    counts["requests"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()


CONTENDERS = ("disabled", "enabled", "in-process")


def _run_worker(mode: str, steps: int, turns: int, endpoint: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHALANX_"))}
        env["PYTHONPATH"] = str(ROOT)
        if mode != "disabled":
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
            env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
        if mode == "in-process":
            env["OTEL_TRACES_SAMPLER"] = "parentbased_always_on"
        store = f"sqlite:///{Path(tmp) / 'j.db'}"
        args = ["--worker", mode, str(steps), str(turns), store]
        done = subprocess.run(
            [sys.executable, __file__, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        figures: dict[str, float] = json.loads(done.stdout)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--steps", type=int, default=None, help="steps per run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 7, quick 3)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        mode, steps, turns, store = options.worker
        figures = asyncio.run(_work(int(steps), int(turns), store, mode != "disabled"))
        print(json.dumps(figures))
        return
    steps = options.steps or (300 if options.quick else 1500)
    # Few turns: the conversation, and so each turn's cost, grows with every turn.
    turns = 20 if options.quick else 40
    rounds = options.rounds or (3 if options.quick else 7)
    keys = ("step_s", "step_cpu_s", "io_step_s", "turn_s", "turn_cpu_s")
    traced = CONTENDERS[1:]
    ratios = {mode: {k: [] for k in keys} for mode in traced}
    samples: dict[str, dict[str, list[float]]] = {
        mode: {k: [] for k in (*keys, "exporter_cpu_s")} for mode in CONTENDERS
    }
    with _receiver() as (endpoint, counts):
        _run_worker("disabled", 50, 5, endpoint)  # warm the disk cache and the interpreter
        for round_no in range(rounds):
            # Rotate who goes first, so drift in the machine's load favours none.
            order = CONTENDERS[round_no % 3 :] + CONTENDERS[: round_no % 3]
            got = {mode: _run_worker(mode, steps, turns, endpoint) for mode in order}
            for mode in CONTENDERS:
                for key, values in samples[mode].items():
                    values.append(got[mode][key])
            for mode in traced:
                for key in keys:
                    ratios[mode][key].append(got[mode][key] / got["disabled"][key])
        # Per traced run: 21 run/step spans of the warm-up, N step spans and one run
        # span, and per turn an invoke_agent-level model step, chat, tool step and tool.
        arrived = counts["spans"]
    expected_min = len(traced) * rounds * (steps + steps // 10 + 4 * turns)
    report: dict[str, Any] = {
        "steps": steps,
        "turns": turns,
        "rounds": rounds,
        "spans_arrived": arrived,
        "spans_expected_at_least": expected_min,
        "target_overhead": TARGET,
        "exporter_cpu_ms_per_run": statistics.median(samples["enabled"]["exporter_cpu_s"]) * 1e3,
        # Every round's figures, µs, in round order: to see the noise, not just medians.
        "samples_us": {
            mode: {k: [round(v * 1e6, 1) for v in values] for k, values in by_key.items()}
            for mode, by_key in samples.items()
        },
    }
    labels = {
        "step_s": "no-op step",
        "step_cpu_s": "no-op step CPU",
        "io_step_s": f"{IO_STEP_S * 1000:g} ms I/O step",
        "turn_s": "agent turn",
        "turn_cpu_s": "agent turn CPU",
    }
    for mode in traced:
        report[mode] = {}
        for key in keys:
            ratio = statistics.median(ratios[mode][key])
            report[mode][key] = {
                "disabled_us": statistics.median(samples["disabled"][key]) * 1e6,
                "traced_us": statistics.median(samples[mode][key]) * 1e6,
                "added_us": statistics.median(
                    t - d for t, d in zip(samples[mode][key], samples["disabled"][key], strict=True)
                )
                * 1e6,
                "overhead": ratio - 1,
                "met": ratio - 1 < TARGET,
                "label": labels[key],
            }
    if options.json:
        print(json.dumps(report))
        return
    print(f"tracing overhead ({rounds} rounds, {steps} steps, {turns} agent turns)")
    for mode in traced:
        print(f"  {mode} (against disabled):")
        for key in keys:
            row = report[mode][key]
            print(
                f"    {row['label']:<16} disabled {row['disabled_us']:8.1f} us   "
                f"traced {row['traced_us']:8.1f} us   (+{row['added_us']:.0f} us)   "
                f"overhead {row['overhead'] * 100:+6.1f}%   "
                f"target < {TARGET * 100:.0f}%: {'met' if row['met'] else 'MISSED'}"
            )
    print(
        f"  the exporter process's CPU per enabled run: {report['exporter_cpu_ms_per_run']:.0f} ms"
    )
    print(f"  spans that arrived at the receiver: {arrived} (at least {expected_min} expected)")


if __name__ == "__main__":
    main()
