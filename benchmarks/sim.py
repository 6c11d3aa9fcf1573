"""Simulation benchmark: seeds per second for the research demo on virtual time.

Run it as `.venv/bin/python benchmarks/sim.py [--quick] [--json] [--seeds N]`.

1. Seeds per second: `phalanx.testing.simulate` over the research demo (`phalanx
   demo`'s workflow), every seed run twice and checked, as `phalanx simulate` runs it.
   Target: >= 50 seeds/s on this machine.
2. Virtual time against real time, in the same run: the demo run once for real on
   `memory://` (its scripted agents really sleep, ~1-2 s), next to one simulated seed
   of the same demo without faults. The ratio is what virtual time buys.

`--seeds N` is the long job: N seeds of the demo (the default sweep is 1,000; CI runs
a few hundred in tests/simulation). The report lists every failing seed and the
script exits 1 if one failed, so the long job doubles as a search for bugs.
With `--json` the table goes to stderr and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phalanx
from phalanx.demo._scenario import research
from phalanx.testing import simulate
from phalanx.testing._simulate import run_world  # one fault-free world

TARGET_SEEDS_PER_S = 50.0


async def _real_run() -> float:
    started = time.perf_counter()
    async with phalanx.open_runtime("memory://") as runtime:
        outcome = await runtime.run(research, {})
    assert outcome.ok, outcome.error
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few seeds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seeds", type=int, default=None, help="seeds to run (default 300)")
    args = parser.parse_args()
    seeds = args.seeds or (20 if args.quick else 300)
    os.environ.setdefault("PYTHONHASHSEED", "0")

    started = time.perf_counter()
    report = simulate(research, {}, seeds=seeds)
    elapsed = time.perf_counter() - started
    rate = seeds / elapsed

    real = asyncio.run(_real_run())
    sim_started = time.perf_counter()
    world = run_world(research, {}, 0, _no_faults(), checks=(), baseline=None)
    simulated = time.perf_counter() - sim_started

    result: dict[str, Any] = {
        "benchmark": "sim",
        "quick": args.quick,
        "seeds_run": report.seeds_run,
        "seconds": elapsed,
        "seeds_per_s": rate,
        "target_seeds_per_s": TARGET_SEEDS_PER_S,
        "pass": rate >= TARGET_SEEDS_PER_S,
        "faults_injected": report.faults_injected,
        "failures": [f.to_json() for f in report.failures],
        "real_run_s": real,
        "simulated_run_s": simulated,
        "virtual_run_s": world.duration,
        "speedup": real / simulated,
    }
    table = sys.stderr if args.json else sys.stdout
    print(
        f"research demo, {seeds} seeds (each run twice and checked): "
        f"{elapsed:.2f} s, {rate:.1f} seeds/s (target >= {TARGET_SEEDS_PER_S:g}: "
        f"{'PASS' if result['pass'] else 'MISS'})",
        file=table,
    )
    print(f"faults injected: {report.faults_injected}", file=table)
    print(
        f"one run for real on memory://: {real * 1000:.0f} ms; one simulated seed "
        f"(no faults, {world.duration:.2f} virtual s): {simulated * 1000:.1f} ms; "
        f"{real / simulated:.0f}x",
        file=table,
    )
    for failure in report.failures:
        print(f"FAILED seed {failure.seed} {failure.kind}: {failure.message}", file=table)
    if args.json:
        print(json.dumps(result))
    return 1 if report.failures else 0


def _no_faults() -> Any:
    from phalanx.testing._sim_world import FaultPlan

    return FaultPlan()


if __name__ == "__main__":
    sys.exit(main())
