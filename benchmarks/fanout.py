"""Fan-out benchmark: a durable 1,000-branch fan-out against its journal floor and asyncio.

Run it as `.venv/bin/python benchmarks/fanout.py [--quick] [--json] [--branches N]
[--profile step|run]`.

One question, asked of both kinds of branch `phalanx.gather` has: what does durability
cost a fan-out of no-op branches? Each figure times one whole durable run on a fresh
SQLite journal (its lease, `RunStarted`, `GatherStarted`, the branches, every
`BranchFinished`, `GatherCompleted`, `RunCompleted`) and compares it, in interleaved
rounds (see `_util.interleaved`), with:

1. the journal's batched-append floor for the same events: every event the durable
   run wrote (same types, same data, same count), appended by the same store to one
   fresh stream in batches of 100, as `benchmarks/journal.py` batches. Nothing that
   records the same facts in the same journal can write them faster. Target for step
   branches (`Branch.step`): at most 2x. Child-run branches (`Branch`, the default) are
   reported against their own, larger floor, without a target: each is a run with
   its own lease and stream, several store round trips that no batching can share;
2. `asyncio.gather` over the same number of no-op coroutines, without durability, for
   scale (reported, no target).

The script exits 0 even when a target is missed: it is a report, not a gate. With
`--json` the table goes to stderr and stdout carries one JSON object. `--profile MODE`
prints a cProfile of one durable run to stderr (the top 25 by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import platform
import pstats
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phalanx
from benchmarks._util import Figure, format_number, interleaved, print_figures, stopwatch
from phalanx.journal import NewEvent, SqliteEventStore

Mode = Literal["step", "run"]
MODES: tuple[Mode, ...] = ("step", "run")
BATCH = 100  # the journal benchmark's batch size
TARGET = 2.0  # step branches: at most this many times the floor


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    branches: int
    repeats: int


FULL = Sizes(branches=1000, repeats=9)
QUICK = Sizes(branches=200, repeats=3)


# -- the workloads (module level: runs journal their workflow's module:qualname) -------


async def nothing() -> None:
    """A no-op branch body (step branches, and the asyncio baseline)."""
    return None


@phalanx.workflow
async def no_op(ctx: phalanx.WorkflowContext) -> None:
    """A no-op branch as a child run."""
    return None


@phalanx.workflow
async def fan_out(ctx: phalanx.WorkflowContext, branches: int, mode: str) -> int:
    """Fan out to `branches` no-op branches of one kind and wait for all of them."""
    if mode == "step":
        specs = {f"b{i}": phalanx.Branch.step(nothing) for i in range(branches)}
    else:
        specs = {f"b{i}": phalanx.Branch(no_op) for i in range(branches)}
    result = await phalanx.gather(ctx, "fan", specs)
    return len(result.values)


def workloads() -> Any:
    """This module under its import name, whose workflows are the ones to run.

    Run as a script, this file is `__main__`, and a workflow defined in `__main__` is
    found again through its file path, which costs a path resolution per child run that
    no application importing its workflows pays.
    """
    import benchmarks.fanout as module

    return module


# -- measuring -----------------------------------------------------------------------


class Scratch:
    """A fresh SQLite file per measurement, all under one temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="phalanx-fanout-"))
        self._n = 0

    def path(self) -> Path:
        """A new, empty database file's path."""
        self._n += 1
        return self.root / f"{self._n}.db"

    def clean(self) -> None:
        """Delete every file made so far."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)


async def durable_fan_out(
    path: Path, branches: int, mode: Mode, *, profile: cProfile.Profile | None = None
) -> tuple[float, list[NewEvent]]:
    """Time one durable fan-out run on a fresh store; return the seconds and its events."""
    workflow = workloads().fan_out
    store = SqliteEventStore(path)
    await store.open()  # the schema is made before the clock starts
    try:
        runtime = phalanx.Runtime(store)
        if profile is not None:
            profile.enable()
        with stopwatch() as elapsed:
            outcome = await runtime.run(workflow, {"branches": branches, "mode": mode})
        if profile is not None:
            profile.disable()
        if outcome.result != branches:
            raise RuntimeError(f"the fan-out did not complete: {outcome}")
        written = []
        after = 0
        while page := await store.read_all(after=after, limit=5000):
            written.extend(NewEvent(e.type, e.data, e.metadata) for e in page)
            after = page[-1].position
        return elapsed(), written
    finally:
        await store.close()


async def batched_floor(path: Path, events: Sequence[NewEvent]) -> float:
    """Time appending `events` to one fresh stream in batches of `BATCH`."""
    store = SqliteEventStore(path)
    await store.open()
    try:
        version = 0
        with stopwatch() as elapsed:
            for start in range(0, len(events), BATCH):
                result = await store.append(
                    "floor", events[start : start + BATCH], expected_version=version
                )
                version = result.version
        return elapsed()
    finally:
        await store.close()


async def plain_gather(branches: int) -> float:
    """Time `asyncio.gather` over `branches` no-op coroutines."""
    with stopwatch() as elapsed:
        await asyncio.gather(*(nothing() for _ in range(branches)))
    return elapsed()


@dataclass
class Report:
    """Every figure of one run, and how to print it."""

    sizes: Sizes
    figures: list[Figure] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)

    def render(self, out: TextIO) -> None:
        """The table, then the event counts, then the figures in words."""
        print(f"phalanx fan-out benchmark: {self.sizes.branches} no-op branches", file=out)
        print_figures(self.figures, file=out)
        print(file=out)
        for mode, count in self.events.items():
            print(f"{mode} branches journal {count:,} events per fan-out", file=out)

    def to_json(self) -> dict[str, Any]:
        """The `--json` report."""
        return {
            "branches": self.sizes.branches,
            "repeats": self.sizes.repeats,
            "events": self.events,
            "figures": {figure.key: figure.to_json() for figure in self.figures},
            "all_targets_met": all(figure.passed is not False for figure in self.figures),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        }


async def run(sizes: Sizes) -> Report:
    """Measure every figure."""
    report = Report(sizes)
    scratch = Scratch()
    n = sizes.branches
    try:
        for mode in MODES:
            # The floor replays exactly what one durable run wrote.
            _, written = await durable_fan_out(scratch.path(), n, mode)
            report.events[mode] = len(written)

            async def durable(mode: Mode = mode) -> float:
                seconds, _ = await durable_fan_out(scratch.path(), n, mode)
                return seconds

            async def floor(written: list[NewEvent] = written) -> float:
                return await batched_floor(scratch.path(), written)

            async def baseline() -> float:
                return await plain_gather(n)

            measures: dict[str, Callable[[], Awaitable[float]]] = {
                "phalanx": durable,
                "raw": floor,
                "gather": baseline,
            }
            samples = await interleaved(measures, sizes.repeats)
            scratch.clean()
            ms = {name: [s * 1000 for s in values] for name, values in samples.items()}
            kind = "step branches" if mode == "step" else "child-run branches"
            report.figures.append(
                Figure.from_samples(
                    f"fanout.{mode}.floor",
                    f"{kind} vs batched-append floor",
                    "ms",
                    {"phalanx": ms["phalanx"], "raw": ms["raw"]},
                    better="lower",
                    limit=TARGET if mode == "step" else None,
                )
            )
            report.figures.append(
                Figure.from_samples(
                    f"fanout.{mode}.gather",
                    f"{kind} vs asyncio.gather",
                    "ms",
                    {"phalanx": ms["phalanx"], "raw": ms["gather"]},
                    better="lower",
                )
            )
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)
    return report


async def profile_one(mode: Mode, branches: int, out: TextIO) -> None:
    """Print a cProfile of one durable fan-out (top 25 functions by own time)."""
    scratch = Scratch()
    try:
        await durable_fan_out(scratch.path(), branches, mode)  # warm imports and caches
        profile = cProfile.Profile()
        seconds, written = await durable_fan_out(scratch.path(), branches, mode, profile=profile)
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)
    print(
        f"profile: {branches} {mode} branches, {len(written):,} events, "
        f"{format_number(seconds * 1000)} ms under the profiler",
        file=out,
    )
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; 0 even when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: less work, noisier")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--branches", type=int, help="branches per fan-out (default 1000)")
    parser.add_argument("--profile", choices=MODES, help="profile one fan-out of this kind")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.branches:
        sizes = Sizes(branches=args.branches, repeats=sizes.repeats)
    if args.profile:
        asyncio.run(profile_one(args.profile, sizes.branches, sys.stderr))
        return 0
    report = asyncio.run(run(sizes))
    report.render(sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
