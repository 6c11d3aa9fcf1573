"""Saga benchmark: what a saga step and a compensation cost next to a plain durable step.

Run it as `.venv/bin/python benchmarks/saga.py [--quick] [--json] [--steps N] [--dir DIR]`.
SQLite at its default synchronous=NORMAL, each contender on a fresh database, in
interleaved rounds (see `_util`), so the noise of a shared machine hits all alike.

Per step, in one run:

- plain: a workflow of N no-op `ctx.step`s (StepStarted, StepCompleted);
- saga: a `Saga` of N no-op steps, each with a no-op compensation, that completes;
- compensate: a `Saga` of N steps and a last one that fails at once, timed from its
  `SagaCompensating` to its `SagaEnded` (N compensations, each a durable, idempotent
  tool call with its own retry policy), per compensation;
- floor: the journal's floor, two `store.append`s of one small event each per step
  (what a durable step writes), straight to the store.

Targets: a saga step <= 1.2x a plain durable step; compensating N steps <= 1.2x
running N durable steps. Each is also reported against the floor. Exits 0 even when a
target is missed: a report, not a gate. With `--json` the table goes to stderr and
stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phalanx
from benchmarks._util import Figure, interleaved, print_figures, stopwatch
from phalanx import RetryPolicy, Saga, SagaState, SagaStep
from phalanx.journal import NewEvent, store_from_url

FULL_STEPS, FULL_REPEATS = 200, 7
QUICK_STEPS, QUICK_REPEATS = 20, 3


def noop(*args: Any) -> None:
    """A step, or a compensation, that does nothing: only the machinery is measured."""


async def anoop(*args: Any) -> None:
    """The async no-op: run on the event loop, like the plain steps measured."""


class Boom(Exception):
    """The last step's failure, which starts the compensation."""


async def boom(state: SagaState) -> None:
    raise Boom("the last step fails")


def _saga(name: str, steps: int, *, failing: bool) -> Saga:
    chain = [SagaStep(f"s{i}", anoop, compensation=anoop) for i in range(steps)]
    if failing:
        chain.append(SagaStep("fail", boom, compensation=anoop, retry=RetryPolicy(max_attempts=1)))
    return Saga(name, chain)


@phalanx.workflow
async def plain(ctx: phalanx.WorkflowContext, steps: int) -> None:
    """N plain durable steps."""
    for i in range(steps):
        await ctx.step(f"s{i}", anoop)


SAGAS: dict[tuple[int, bool], Saga] = {}


@phalanx.workflow
async def saga_run(ctx: phalanx.WorkflowContext, steps: int, failing: bool) -> dict[str, Any]:
    """A saga of N steps that completes, or fails at its last and compensates N."""
    saga = SAGAS.get((steps, failing))
    if saga is None:  # defined once per shape, as a saga is, at import time, in real code
        saga = SAGAS[steps, failing] = _saga(f"bench{steps}", steps, failing=failing)
    return (await saga.run(ctx)).to_json()


class Bench:
    """Fresh databases in `root`, one per measurement."""

    def __init__(self, root: Path, steps: int) -> None:
        self.root = root
        self.steps = steps
        self.count = 0

    def url(self) -> str:
        self.count += 1
        return f"sqlite:///{self.root / f'bench-{self.count}.db'}"

    async def plain(self) -> float:
        async with phalanx.open_runtime(self.url()) as runtime:
            with stopwatch() as elapsed:
                await runtime.run(plain, {"steps": self.steps})
        return elapsed() / self.steps

    async def saga(self) -> float:
        async with phalanx.open_runtime(self.url()) as runtime:
            with stopwatch() as elapsed:
                outcome = await runtime.run(saga_run, {"steps": self.steps, "failing": False})
            assert outcome.result["status"] == "completed", outcome
        return elapsed() / self.steps

    async def compensate(self) -> float:
        async with phalanx.open_runtime(self.url()) as runtime:
            outcome = await runtime.run(saga_run, {"steps": self.steps, "failing": True})
            assert outcome.result["status"] == "compensated", outcome
            events = (await runtime.history(outcome.run_id)).events
        began = next(e for e in events if e.type == "SagaCompensating").recorded_at
        ended = next(e for e in events if e.type == "SagaEnded").recorded_at
        return (ended - began) / self.steps

    async def floor(self) -> float:
        store = store_from_url(self.url())
        await store.open()
        try:
            with stopwatch() as elapsed:
                for i in range(self.steps):
                    await store.append("run:floor", [NewEvent("StepStarted", {"op": i})])
                    await store.append("run:floor", [NewEvent("StepCompleted", {"op": i})])
        finally:
            await store.close()
        return elapsed() / self.steps


async def measure(root: Path, steps: int, repeats: int) -> list[Figure]:
    bench = Bench(root, steps)
    samples = await interleaved(
        {
            "plain": bench.plain,
            "saga": bench.saga,
            "compensate": bench.compensate,
            "floor": bench.floor,
        },
        repeats,
    )

    def pair(mine: str, raw: str) -> dict[str, list[float]]:
        return {"phalanx": [s * 1e6 for s in samples[mine]], "raw": [s * 1e6 for s in samples[raw]]}

    return [
        Figure.from_samples(
            "saga.step.vs_plain_step",
            "saga step vs plain durable step",
            "us/step",
            pair("saga", "plain"),
            better="lower",
            limit=1.2,
        ),
        Figure.from_samples(
            "saga.compensate.vs_plain_steps",
            "compensating N vs running N durable steps",
            "us/step",
            pair("compensate", "plain"),
            better="lower",
            limit=1.2,
        ),
        Figure.from_samples(
            "plain.step.vs_floor",
            "plain durable step vs journal floor",
            "us/step",
            pair("plain", "floor"),
            better="lower",
        ),
        Figure.from_samples(
            "saga.step.vs_floor",
            "saga step vs journal floor",
            "us/step",
            pair("saga", "floor"),
            better="lower",
        ),
        Figure.from_samples(
            "saga.compensate.vs_floor",
            "compensation vs journal floor",
            "us/step",
            pair("compensate", "floor"),
            better="lower",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: small sizes")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--steps", type=int, help="steps per run (default 200, quick 20)")
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temp dir)")
    args = parser.parse_args(argv)
    steps = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
    repeats = QUICK_REPEATS if args.quick else FULL_REPEATS
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures = asyncio.run(measure(Path(tmp), steps, repeats))
    out = sys.stderr if args.json else sys.stdout
    print(f"saga benchmark: SQLite (synchronous=normal), {steps} steps, {repeats} rounds", file=out)
    print_figures(figures, file=out)
    if args.json:
        report = {
            "steps": steps,
            "repeats": repeats,
            "figures": {f.key: f.to_json() for f in figures},
            "all_targets_met": all(f.passed is not False for f in figures),
        }
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
