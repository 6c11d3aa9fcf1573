"""Tool-reliability benchmark: what the reliability layer adds to a tool call.

Run it as `.venv/bin/python benchmarks/tools.py [--quick] [--json]`.

1. In memory (no journal): N sequential calls of an async no-op tool through
   `phalanx.call_tool(None, tool, ...)`, next to N direct `await fn(x=...)` calls.
   Two tools: `plain` (no breaker, no timeout) and `guarded` (an in-process circuit
   breaker, a retry policy and a timeout armed per attempt, as production tools
   have). The figure is the overhead per call, `(layer - direct) / N`; target: under
   50 microseconds for `guarded`. What it pays for: argument validation through
   pydantic, the breaker's admission and report, the timeout scope, the
   `execute_tool` span (a no-op span with no OpenTelemetry SDK installed) and the
   report object.
2. An open breaker's fast failure: N calls refused by an open in-process breaker
   (the tool is never touched; `CircuitOpenError` raised and caught), per call.
3. In a workflow, on SQLite (reported, no target): one run of N `call_tool`s next to
   one run of N plain `ctx.step`s of the same function, per call. A durable call is
   one step (two journal appends), so this should be close to the step itself.
4. The default breaker is shared: its state is a stream in the store, which every
   worker reads (at most every `refresh_interval`) before admitting a call. Outside a
   workflow there is no store, so figure 1 cannot show its cost; in a workflow the
   `guarded` tool (in-process breaker) runs next to `guarded_shared` (the same tool
   with the default shared breaker), and the difference per call is reported.

Every figure is a median over interleaved rounds (see `_util.interleaved`). The script
exits 0 even when a target is missed: it is a report, not a gate. With `--json` the
table goes to stderr and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phalanx
from benchmarks._util import format_number, interleaved, print_table, stopwatch
from phalanx import CircuitOpenError, RetryPolicy
from phalanx.tools import CircuitBreaker, call_tool, tool

#: Target for the in-memory overhead of a call through the layer, in microseconds.
TARGET_US = 50.0


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    calls: int
    durable_calls: int
    repeats: int


FULL = Sizes(calls=20_000, durable_calls=2_000, repeats=7)
QUICK = Sizes(calls=2_000, durable_calls=200, repeats=3)


async def noop(x: int) -> int:
    """The work itself: nothing."""
    return x


plain = tool(name="plain", notifiers=[])(noop)
#: As production tools are armed: a timeout per attempt, retries, a breaker.
ARMED: dict[str, Any] = {"timeout": 30.0, "retry": RetryPolicy(max_attempts=3), "notifiers": []}
guarded = tool(name="guarded", breaker=CircuitBreaker(failure_threshold=5, shared=False), **ARMED)(
    noop
)
guarded_shared = tool(name="guarded_shared", breaker=CircuitBreaker(failure_threshold=5), **ARMED)(
    noop
)
TOOLS = {t.name: t for t in (plain, guarded, guarded_shared)}
OPEN_BREAKER = CircuitBreaker(failure_threshold=1, open_for=3600.0, shared=False)


@tool(name="down", breaker=OPEN_BREAKER, dead_letter="fail", notifiers=[])
async def down(x: int) -> int:
    """Always fails: one call opens its breaker for an hour."""
    raise ConnectionError("down")


async def _direct(n: int) -> float:
    with stopwatch() as elapsed:
        for i in range(n):
            await noop(x=i)
    return elapsed()


async def _layer(the_tool: Any, n: int) -> float:
    with stopwatch() as elapsed:
        for i in range(n):
            await call_tool(None, the_tool, {"x": i})
    return elapsed()


async def _refused(n: int) -> float:
    with stopwatch() as elapsed:
        for i in range(n):
            with contextlib.suppress(CircuitOpenError):
                await call_tool(None, down, {"x": i})
    return elapsed()


@phalanx.workflow
async def durable_calls(ctx: phalanx.WorkflowContext, n: int, tool: str = "plain") -> int:
    """N reliable calls of one of TOOLS, each one durable step."""
    for i in range(n):
        await call_tool(ctx, TOOLS[tool], {"x": i})
    return n


@phalanx.workflow
async def durable_steps(ctx: phalanx.WorkflowContext, n: int) -> int:
    """N plain steps of the same function."""
    for i in range(n):
        await ctx.step("noop", noop, i)
    return n


async def _durable(workflow: Any, inputs: dict[str, Any], scratch: Path) -> float:
    with tempfile.TemporaryDirectory(dir=scratch) as where:
        async with phalanx.open_runtime(f"sqlite:///{where}/j.db") as runtime:
            with stopwatch() as elapsed:
                outcome = await runtime.run(workflow, inputs)
            assert outcome.ok, outcome.error
    return elapsed()


def _us(samples: Sequence[float], n: int) -> float:
    return statistics.median(samples) / n * 1e6


async def measure(sizes: Sizes, scratch: Path) -> dict[str, Any]:
    """Every figure, in microseconds per call."""
    n = sizes.calls
    with contextlib.suppress(phalanx.ToolAttemptError):
        await call_tool(None, down, {"x": 0})  # opens its breaker
    memory = await interleaved(
        {
            "direct": lambda: _direct(n),
            "plain": lambda: _layer(plain, n),
            "guarded": lambda: _layer(guarded, n),
            "refused": lambda: _refused(n),
        },
        sizes.repeats,
    )
    d = sizes.durable_calls
    durable = await interleaved(
        {
            "call_tool": lambda: _durable(durable_calls, {"n": d}, scratch),
            "ctx.step": lambda: _durable(durable_steps, {"n": d}, scratch),
            "guarded": lambda: _durable(durable_calls, {"n": d, "tool": "guarded"}, scratch),
            "shared": lambda: _durable(durable_calls, {"n": d, "tool": "guarded_shared"}, scratch),
        },
        sizes.repeats,
    )
    direct = _us(memory["direct"], n)
    figures = {
        "direct_us": direct,
        "plain_us": _us(memory["plain"], n),
        "guarded_us": _us(memory["guarded"], n),
        "refused_us": _us(memory["refused"], n),
        "durable_call_us": _us(durable["call_tool"], d),
        "durable_step_us": _us(durable["ctx.step"], d),
        "durable_guarded_us": _us(durable["guarded"], d),
        "durable_shared_us": _us(durable["shared"], d),
    }
    figures["plain_overhead_us"] = figures["plain_us"] - direct
    figures["guarded_overhead_us"] = figures["guarded_us"] - direct
    figures["durable_overhead_us"] = figures["durable_call_us"] - figures["durable_step_us"]
    figures["shared_breaker_overhead_us"] = (
        figures["durable_shared_us"] - figures["durable_guarded_us"]
    )
    return figures


def report(figures: dict[str, Any], sizes: Sizes, out: Any) -> bool:
    """Print the table; whether the target is met."""
    passed = figures["guarded_overhead_us"] < TARGET_US
    rows = [
        ["direct await fn(x=...)", format_number(figures["direct_us"]), "-", "-"],
        [
            "call_tool, plain tool (in memory)",
            format_number(figures["plain_us"]),
            format_number(figures["plain_overhead_us"]),
            "-",
        ],
        [
            "call_tool, breaker+retry+timeout (in memory)",
            format_number(figures["guarded_us"]),
            format_number(figures["guarded_overhead_us"]),
            f"< {TARGET_US:g} us: {'PASS' if passed else 'MISS'}",
        ],
        ["open breaker, fast failure", format_number(figures["refused_us"]), "-", "-"],
        ["ctx.step (SQLite, durable)", format_number(figures["durable_step_us"]), "-", "-"],
        [
            "call_tool in a workflow (SQLite)",
            format_number(figures["durable_call_us"]),
            format_number(figures["durable_overhead_us"]),
            "-",
        ],
        [
            "  armed, in-process breaker (shared=False)",
            format_number(figures["durable_guarded_us"]),
            "-",
            "-",
        ],
        [
            "  armed, shared breaker (the default)",
            format_number(figures["durable_shared_us"]),
            format_number(figures["shared_breaker_overhead_us"]),
            "-",
        ],
    ]
    print(
        f"tool calls: {sizes.calls} in memory, {sizes.durable_calls} durable, "
        f"{sizes.repeats} rounds (median, microseconds per call)",
        file=out,
    )
    print_table(["figure", "us/call", "overhead us", "target"], rows, file=out)
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 0 (a report, not a gate)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: less work, noisier")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory for SQLite")
    args = parser.parse_args(argv)
    logging.getLogger("phalanx").setLevel(logging.ERROR)  # the breaker's escalation line
    sizes = QUICK if args.quick else FULL
    scratch = args.dir or Path(tempfile.gettempdir())
    figures = asyncio.run(measure(sizes, scratch))
    passed = report(figures, sizes, sys.stderr if args.json else sys.stdout)
    if args.json:
        body = {
            "benchmark": "tools",
            "sizes": {"calls": sizes.calls, "durable_calls": sizes.durable_calls},
            "figures": figures,
            "target_us": TARGET_US,
            "target_met": passed,
        }
        print(json.dumps(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
