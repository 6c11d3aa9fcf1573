"""Group-commit benchmark: many concurrent runs on one SQLite journal, against its floors.

Run it as `.venv/bin/python benchmarks/group.py [--quick] [--json] [--runs R] [--steps S]
[--profile]`.

One question: when R workflows of S no-op `ctx.step`s run at once in one process on
SQLite (synchronous=NORMAL, a fresh file each time), how many steps per second do they
make, now that the appends of one loop tick share a commit? Measured in interleaved
rounds (see `_util.interleaved`) next to, in the same run on the same disk:

1. the raw one-commit floor: `sqlite3` alone, one BEGIN IMMEDIATE / INSERT / COMMIT of
   a ~100-byte step event per step, into a table shaped like phalanx's events table
   (`benchmarks/durable.py`'s floor). Target: phalanx's steps/s >= 1.85x this floor's
   commits/s (issue 13: 50,000 steps/s against ~27,000 commits/s on its machine);
2. the raw batched floor: the same rows, R per transaction, one append's check
   (SELECT max(seq)) and INSERT per row in a savepoint, as a tick's batch is written:
   what a batch of R costs SQLite itself (reported, no target);
3. the same R x S steps as one workflow (one step at a time: nothing to share a commit
   with), for what group commit adds (reported, no target).

The report also gives steps per commit (from the store's commit count). The script exits
0 even when a target is missed: it is a report, not a gate. With `--json` the table
goes to stderr and stdout carries one JSON object; `--profile` prints a cProfile of one
concurrent round to stderr (top 25 by own time) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import platform
import pstats
import shutil
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phalanx
from benchmarks._util import Figure, interleaved, print_figures, stopwatch
from benchmarks.durable import RAW_EVENTS_DDL, RAW_INSERT, floor_payload
from benchmarks.fanout import Scratch
from phalanx.journal import SqliteEventStore

#: Issue 13's target: 50,000 steps/s against ~27,000 commits/s on its machine.
TARGET = 50_000 / 27_000


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    runs: int
    steps: int
    repeats: int


FULL = Sizes(runs=100, steps=100, repeats=7)
QUICK = Sizes(runs=20, steps=20, repeats=3)


async def noop() -> None:
    """A no-op step body."""
    return None


@phalanx.workflow
async def steps(ctx: phalanx.WorkflowContext, n: int) -> int:
    """`n` no-op steps, one after another."""
    for i in range(n):
        await ctx.step(f"s{i}", noop)
    return n


@dataclass
class Commits:
    """Steps and commits of the concurrent rounds, for steps per commit."""

    steps: int = 0
    commits: int = 0


async def concurrent_runs(path: Path, runs: int, n: int, *, tally: Commits | None = None) -> float:
    """`runs` workflows of `n` steps at once on a fresh store: steps per second."""
    store = SqliteEventStore(path)
    await store.open()  # the schema is made before the clock starts
    try:
        runtime = phalanx.Runtime(store)
        before = store.commits
        with stopwatch() as elapsed:
            outcomes = await asyncio.gather(*(runtime.run(steps, {"n": n}) for _ in range(runs)))
        if any(o.result != n for o in outcomes):
            raise RuntimeError(f"a run did not complete: {outcomes}")
        if tally is not None:
            tally.steps += runs * n
            tally.commits += store.commits - before
        return runs * n / elapsed()
    finally:
        await store.close()


async def one_run(path: Path, n: int) -> float:
    """One workflow of `n` steps on a fresh store: steps per second."""
    store = SqliteEventStore(path)
    await store.open()
    try:
        runtime = phalanx.Runtime(store)
        with stopwatch() as elapsed:
            outcome = await runtime.run(steps, {"n": n})
        if outcome.result != n:
            raise RuntimeError(f"the run did not complete: {outcome}")
        return n / elapsed()
    finally:
        await store.close()


def raw_floor(path: Path, n: int, batch: int) -> float:
    """`n` step rows over `batch` streams, `batch` rows a commit: rows per second."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(RAW_EVENTS_DDL)
        rows = [json.dumps(floor_payload(i), separators=(",", ":")) for i in range(n)]
        check = "SELECT max(seq) FROM events WHERE stream_id = ?"
        with stopwatch() as elapsed:
            for start in range(0, n, batch):
                conn.execute("BEGIN IMMEDIATE")
                for i in range(start, min(start + batch, n)):
                    stream = f"run:{i % batch}"
                    if batch > 1:
                        conn.execute("SAVEPOINT w")
                    conn.execute(check, (stream,)).fetchone()
                    conn.execute(
                        RAW_INSERT,
                        (stream, i, "StepCompleted", rows[i], 1, 0.0, "r", None, None, None, None),
                    )
                    if batch > 1:
                        conn.execute("RELEASE w")
                conn.execute("COMMIT")
        return n / elapsed()
    finally:
        conn.close()


@dataclass
class Report:
    """Every figure of one run, and how to print it."""

    sizes: Sizes
    figures: list[Figure] = field(default_factory=list)
    tally: Commits = field(default_factory=Commits)

    @property
    def steps_per_commit(self) -> float:
        """Steps of the concurrent rounds per SQLite commit they made."""
        return self.tally.steps / self.tally.commits if self.tally.commits else 0.0

    def render(self, out: TextIO) -> None:
        """The table, then the sharing."""
        s = self.sizes
        print(
            f"phalanx group-commit benchmark: {s.runs} workflows x {s.steps} no-op steps,"
            " SQLite synchronous=NORMAL (steps or commits per second)",
            file=out,
        )
        print_figures(self.figures, file=out)
        print(f"\nconcurrent rounds: {self.steps_per_commit:.1f} steps per commit", file=out)

    def to_json(self) -> dict[str, Any]:
        """The `--json` report."""
        return {
            "runs": self.sizes.runs,
            "steps": self.sizes.steps,
            "repeats": self.sizes.repeats,
            "steps_per_commit": self.steps_per_commit,
            "figures": {figure.key: figure.to_json() for figure in self.figures},
            "all_targets_met": all(figure.passed is not False for figure in self.figures),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        }


async def run(sizes: Sizes) -> Report:
    """Measure every figure."""
    report = Report(sizes)
    scratch = Scratch()
    total = sizes.runs * sizes.steps
    try:

        async def concurrent() -> float:
            return await concurrent_runs(
                scratch.path(), sizes.runs, sizes.steps, tally=report.tally
            )

        async def sequential() -> float:
            return await one_run(scratch.path(), total)

        async def floor() -> float:
            return raw_floor(scratch.path(), total, 1)

        async def batched() -> float:
            return raw_floor(scratch.path(), total, sizes.runs)

        measures: dict[str, Callable[[], Awaitable[float]]] = {
            "concurrent": concurrent,
            "floor": floor,
            "sequential": sequential,
            "batched": batched,
        }
        samples = await interleaved(measures, sizes.repeats)
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)
    pairs = [
        ("floor", f"{sizes.runs} workflows vs one-commit floor", "concurrent", TARGET),
        ("batched", f"{sizes.runs} workflows vs batched floor", "concurrent", None),
        ("floor", "one workflow vs one-commit floor", "sequential", None),
    ]
    for raw, label, mine, limit in pairs:
        report.figures.append(
            Figure.from_samples(
                f"group.{mine}.{raw}",
                label,
                "/s",
                {"phalanx": samples[mine], "raw": samples[raw]},
                better="higher",
                limit=limit,
            )
        )
    return report


async def profile_one(sizes: Sizes, out: TextIO) -> None:
    """Print a cProfile of one concurrent round (top 25 functions by own time)."""
    scratch = Scratch()
    try:
        await concurrent_runs(scratch.path(), sizes.runs, sizes.steps)  # warm up
        profile = cProfile.Profile()
        profile.enable()
        rate = await concurrent_runs(scratch.path(), sizes.runs, sizes.steps)
        profile.disable()
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)
    print(f"profile: {sizes.runs} x {sizes.steps} steps, {rate:,.0f} steps/s profiled", file=out)
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; 0 even when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: less work, noisier")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--runs", type=int, help="concurrent workflows (default 100)")
    parser.add_argument("--steps", type=int, help="steps per workflow (default 100)")
    parser.add_argument("--profile", action="store_true", help="profile one concurrent round")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    sizes = Sizes(args.runs or sizes.runs, args.steps or sizes.steps, sizes.repeats)
    if args.profile:
        asyncio.run(profile_one(sizes, sys.stderr))
        return 0
    report = asyncio.run(run(sizes))
    report.render(sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
