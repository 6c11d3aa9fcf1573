"""Tracing overhead: a durable step and an agent turn, traced to a live receiver vs not.

Run it as `.venv/bin/python benchmarks/tracing.py [--quick] [--json] [--steps N]`.

Two contenders, each a fresh process on a fresh SQLite journal (the OpenTelemetry
tracer provider is process-global, so "disabled" and "enabled" cannot share one):

- `disabled`: no SDK configured, the no-op API path every phalanx user gets by default;
- `enabled`: `configure_tracing` with the batch span processor exporting OTLP/HTTP to a
  live receiver in this process, and metrics on (exported at the end).

Measured in each process: N no-op `ctx.step`s in one run (per step = total / N), and
M agent turns with the scripted model at zero latency (each turn one model step and one
tool step; per turn = total / M). Rounds alternate disabled/enabled; each round yields
one paired ratio, the figure is the median (see `_util`). The receiver counts the spans
that arrived, so the enabled side is known to have exported them. Target: overhead
under 10% of the step cost and of the agent-turn cost. The script exits 0 when a target
is missed: it is a report, not a gate. With `--json` stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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
        started = time.perf_counter()
        await runtime.run(steps_wf, {"n": steps}, run_id="steps")
        figures["step_s"] = (time.perf_counter() - started) / steps
        io_steps = max(20, steps // 10)
        started = time.perf_counter()
        await runtime.run(io_wf, {"n": io_steps}, run_id="io")
        figures["io_step_s"] = (time.perf_counter() - started) / io_steps
        started = time.perf_counter()
        await runtime.run(agent_wf, {}, run_id="agent")
        figures["turn_s"] = (time.perf_counter() - started) / turns
    if telemetry is not None:
        telemetry.shutdown()  # export what is left: after the timing, as at process exit
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


def _run_worker(traced: bool, steps: int, turns: int, endpoint: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHALANX_"))}
        env["PYTHONPATH"] = str(ROOT)
        if traced:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
            env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
        store = f"sqlite:///{Path(tmp) / 'j.db'}"
        args = ["--worker", "traced" if traced else "disabled", str(steps), str(turns), store]
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
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        mode, steps, turns, store = options.worker
        figures = asyncio.run(_work(int(steps), int(turns), store, mode == "traced"))
        print(json.dumps(figures))
        return
    steps = options.steps or (300 if options.quick else 1500)
    # Few turns: the conversation, and so each turn's cost, grows with every turn.
    turns = 20 if options.quick else 40
    rounds = 3 if options.quick else 7
    keys = ("step_s", "io_step_s", "turn_s")
    ratios: dict[str, list[float]] = {k: [] for k in keys}
    samples: dict[str, dict[str, list[float]]] = {
        "disabled": {k: [] for k in keys},
        "enabled": {k: [] for k in keys},
    }
    with _receiver() as (endpoint, counts):
        _run_worker(False, 50, 5, endpoint)  # warm the disk cache and the interpreter
        for round_no in range(rounds):
            # Alternate who goes first, so drift in the machine's load favours neither.
            order = [False, True] if round_no % 2 == 0 else [True, False]
            got = {traced: _run_worker(traced, steps, turns, endpoint) for traced in order}
            for key in ratios:
                samples["disabled"][key].append(got[False][key])
                samples["enabled"][key].append(got[True][key])
                ratios[key].append(got[True][key] / got[False][key])
        # Per enabled run: 21 run/step spans of the warm-up, N step spans and one run
        # span, and per turn an invoke_agent-level model step, chat, tool step and tool.
        arrived = counts["spans"]
    expected_min = rounds * (steps + steps // 10 + 4 * turns)
    report: dict[str, Any] = {
        "steps": steps,
        "turns": turns,
        "rounds": rounds,
        "spans_arrived": arrived,
        "spans_expected_at_least": expected_min,
        "target_overhead": TARGET,
    }
    labels = (
        ("step_s", "no-op step"),
        ("io_step_s", f"{IO_STEP_S * 1000:g} ms I/O step"),
        ("turn_s", "agent turn"),
    )
    for key, label in labels:
        ratio = statistics.median(ratios[key])
        report[key] = {
            "disabled_us": statistics.median(samples["disabled"][key]) * 1e6,
            "enabled_us": statistics.median(samples["enabled"][key]) * 1e6,
            "added_us": statistics.median(
                e - d
                for e, d in zip(samples["enabled"][key], samples["disabled"][key], strict=True)
            )
            * 1e6,
            "overhead": ratio - 1,
            "met": ratio - 1 < TARGET,
            "label": label,
        }
    if options.json:
        print(json.dumps(report))
        return
    print(f"tracing overhead ({rounds} paired rounds, {steps} steps, {turns} agent turns)")
    for key in keys:
        row = report[key]
        print(
            f"  {row['label']:<15} disabled {row['disabled_us']:8.1f} us   "
            f"enabled {row['enabled_us']:8.1f} us   (+{row['added_us']:.0f} us)   "
            f"overhead {row['overhead'] * 100:+6.1f}%   "
            f"target < {TARGET * 100:.0f}%: {'met' if row['met'] else 'MISSED'}"
        )
    print(f"  spans that arrived at the receiver: {arrived} (at least {expected_min} expected)")


if __name__ == "__main__":
    main()
