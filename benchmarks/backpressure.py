"""Backpressure and voting benchmark: what budgets and a vote add to the calls they wrap.

Run it as `.venv/bin/python benchmarks/backpressure.py [--quick] [--json]`.

1. Budget accounting per model call (in memory): what an agent does around each model
   call when it has a budget, against building the same request without one. The
   budget side builds the request with its max_tokens, estimates its tokens, checks
   the context, input, output and cost limits up a two-level ledger (the agent's
   under its run's), notes the context size and charges the usage afterwards. The
   conversation holds 12 messages (a few turns with tool results). Target: under 20
   microseconds per call.
2. A 3-replica vote against the three calls it makes (a workflow on SQLite, reported,
   no target): one run that votes over three step replicas (each an async no-op)
   against one run that makes the same three calls as `ctx.step`s. The vote adds its
   operation, a fan-out (one append for the three outcomes) and its decision.

Every figure is a median over interleaved rounds (see `_util.interleaved`). The script
exits 0 even when a target is missed: it is a report, not a gate. With `--json` the
table goes to stderr and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
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
from phalanx import Branch
from phalanx.agents import Budget, BudgetLedger, Message, ModelRequest, Prices, ToolCall, Usage
from phalanx.agents._backpressure import Fitter
from phalanx.tools import tool

#: Target for budget accounting per model call, in microseconds.
TARGET_US = 20.0


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    calls: int
    votes: int
    repeats: int


FULL = Sizes(calls=20_000, votes=100, repeats=7)
QUICK = Sizes(calls=1_000, votes=10, repeats=3)


@tool
def lookup(query: str) -> str:
    """A tool, for its schema in the request."""
    return query


def _conversation() -> list[Message]:
    messages = [Message.system("You are a researcher. Use lookup."), Message.user("Find leases.")]
    for turn in range(5):
        call = ToolCall(id=f"call_{turn}_0", name="lookup", arguments='{"query": "leases"}')
        messages.append(Message(role="assistant", tool_calls=(call,)))
        messages.append(Message.tool_result(call, "Leases fence stale writers. " * 8))
    return messages


async def _accounting(n: int, *, budgeted: bool) -> float:
    """Seconds for `n` calls' worth of pre-call work, with or without a budget."""
    messages, specs = _conversation(), (lookup.spec(),)
    usage = Usage(input_tokens=500, output_tokens=50)
    run = BudgetLedger(budget=Budget(input_tokens=10**12, output_tokens=10**12), scope="run")
    budget = Budget(
        input_tokens=10**12,
        output_tokens=10**12,
        cost=10.0**9,
        context_tokens=100_000,
        prices=Prices(input_per_mtok=1.0, output_per_mtok=2.0),
    )
    ledger = BudgetLedger(budget=budget, scope="agent", parent=run)
    # The fitter touches the workflow context only to journal an action; none runs here.
    fitter = Fitter(ctx=None, agent="a", ledger=ledger, summarize=None)  # type: ignore[arg-type]
    with stopwatch() as elapsed:
        if budgeted:
            for turn in range(n):
                await fitter.fit(turn, messages, specs, None)
                ledger.charge(usage)
        else:
            for _ in range(n):
                ModelRequest(messages=tuple(messages), tools=specs, output_schema=None)
    return elapsed()


async def _noop(label: str) -> str:
    return "Paris"


@phalanx.workflow
async def voted(ctx: phalanx.WorkflowContext, n: int) -> int:
    """`n` votes over three step replicas."""
    replicas = {f"r{i}": Branch.step(_noop, label=f"r{i}") for i in range(3)}
    for i in range(n):
        await phalanx.vote(ctx, f"v{i}", replicas, stop_early=False)
    return n


@phalanx.workflow
async def three_calls(ctx: phalanx.WorkflowContext, n: int) -> int:
    """The same calls, `n` times three, as plain steps."""
    for i in range(n):
        for r in range(3):
            await ctx.step(f"c{i}.{r}", _noop, f"r{r}")
    return n


_RUNS = iter(range(10**9))


async def _durable(workflow: Any, n: int, scratch: Path) -> float:
    path = scratch / f"{workflow.__name__}-{next(_RUNS)}.db"  # a fresh journal each round
    async with phalanx.open_runtime(f"sqlite:///{path}") as runtime:
        with stopwatch() as elapsed:
            outcome = await runtime.run(workflow, {"n": n})
        assert outcome.status == "completed", outcome.error
        return elapsed()


async def measure(sizes: Sizes, scratch: Path) -> dict[str, float]:
    """Every figure, in microseconds per call (or per vote)."""
    n, v = sizes.calls, sizes.votes
    memory = await interleaved(
        {
            "raw": lambda: _accounting(n, budgeted=False),
            "budgeted": lambda: _accounting(n, budgeted=True),
        },
        sizes.repeats,
    )
    durable = await interleaved(
        {
            "vote": lambda: _durable(voted, v, scratch),
            "calls": lambda: _durable(three_calls, v, scratch),
        },
        sizes.repeats,
    )
    per_call = [(b - r) / n * 1e6 for b, r in zip(memory["budgeted"], memory["raw"], strict=True)]
    ratios = [a / b for a, b in zip(durable["vote"], durable["calls"], strict=True)]
    return {
        "request_us": statistics.median(memory["raw"]) / n * 1e6,
        "budgeted_request_us": statistics.median(memory["budgeted"]) / n * 1e6,
        "accounting_overhead_us": statistics.median(per_call),
        "vote_us": statistics.median(durable["vote"]) / v * 1e6,
        "three_calls_us": statistics.median(durable["calls"]) / v * 1e6,
        "vote_ratio": statistics.median(ratios),
    }


def report(figures: dict[str, float], sizes: Sizes, out: Any) -> bool:
    """Print the table; whether the target is met."""
    passed = figures["accounting_overhead_us"] < TARGET_US
    rows = [
        ["build a request, no budget", format_number(figures["request_us"]), "-", "-"],
        [
            "with budget accounting",
            format_number(figures["budgeted_request_us"]),
            format_number(figures["accounting_overhead_us"]),
            f"< {TARGET_US:g} us: {'PASS' if passed else 'MISS'}",
        ],
        ["three ctx.step calls (SQLite)", format_number(figures["three_calls_us"]), "-", "-"],
        [
            "a 3-replica vote over them",
            format_number(figures["vote_us"]),
            f"{figures['vote_ratio']:.2f}x",
            "-",
        ],
    ]
    print(
        f"backpressure and voting: {sizes.calls} calls, {sizes.votes} votes, "
        f"{sizes.repeats} rounds (median, microseconds per call or vote)",
        file=out,
    )
    print_table(["figure", "us", "overhead", "target"], rows, file=out)
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON to stdout")
    args = parser.parse_args(argv)
    logging.getLogger("phalanx").setLevel(logging.ERROR)
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as scratch:
        figures = asyncio.run(measure(sizes, Path(scratch)))
    out = sys.stderr if args.json else sys.stdout
    passed = report(figures, sizes, out)
    if args.json:
        result = {"benchmark": "backpressure", "figures": figures, "target_met": passed}
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
