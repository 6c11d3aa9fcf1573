"""Evals benchmark: scoring recorded runs against reading their events.

Run it as `.venv/bin/python benchmarks/evals.py [--quick] [--json]`.

One research demo run (`phalanx demo --fault none`: an orchestrator, three sub-agent
child runs, about forty events in all) is recorded on SQLite, then copied under new
run ids until the store holds N recorded demo runs (1,000; 50 with `--quick`), each
with its three child runs: the same journals a thousand demos would leave.

- raw: read every one of those runs' events back (`read_stream` of each run and of
  each of its child runs), which is what any evaluation must do at least.
- phalanx: `phalanx.evals.score_runs` with a rubric of every deterministic criterion
  (the research rubric: status, JSON schema, citations, tool calls, token and latency
  budgets, and the six failure-mode detectors), which finds the child runs, reads
  and folds every journal and scores each run.

Target: phalanx at most 2x raw. Every figure is a median over interleaved rounds (see
`_util.interleaved`). The script exits 0 even when the target is missed: it is a
report, not a gate. With `--json` the table goes to stderr and stdout carries one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phalanx
from benchmarks._util import Figure, interleaved, print_figures, stopwatch
from phalanx.demo import research
from phalanx.evals import load_rubric, score_runs
from phalanx.journal import Metadata, NewEvent

RUBRIC = Path(__file__).resolve().parents[1] / "examples" / "rubrics" / "research.yaml"
#: The event types the runtime indexes (run listings and child discovery find them).
INDEXED = {"RunStarted", "RunCompleted", "RunFailed", "RunCancelled", "SignalWaiting"}


async def _record(runtime: phalanx.Runtime, count: int) -> list[list[str]]:
    """Record one demo run, copy it `count` times; each copy's run ids, the top one first."""
    outcome = await runtime.run(research, {})
    original = outcome.run_id
    store = runtime.store
    ids = [
        original,
        *[f"{original}.1.{agent}" for agent in ("vector_db", "web_search", "synthesis")],
    ]
    journals = [(run_id, e) for run_id in ids for e in await store.read_stream(f"run:{run_id}")]
    # In the order they were journaled, so the copies interleave their streams as the
    # demo did (the failure-mode detectors compare positions across runs).
    journals.sort(key=lambda item: item[1].position)
    copies = []
    for index in range(count):
        new = f"bench{index:05d}"
        for run_id, events in itertools.groupby(journals, key=lambda item: item[0]):
            copied = run_id.replace(original, new)
            batch = [
                NewEvent(
                    e.type,
                    json.loads(json.dumps(e.data).replace(original, new)),
                    Metadata(run_id=copied),
                    indexed=e.type in INDEXED,
                )
                for _, e in events
            ]
            await store.append(f"run:{copied}", batch)
        copies.append([run_id.replace(original, new) for run_id in ids])
    return copies


async def main(quick: bool, as_json: bool) -> int:
    count = 50 if quick else 1000
    repeats = 3 if quick else 5
    rubric = load_rubric(RUBRIC)
    with tempfile.TemporaryDirectory() as root:
        async with phalanx.open_runtime(f"sqlite:///{root}/evals.db") as runtime:
            copies = await _record(runtime, count)
            tops = [ids[0] for ids in copies]

            async def raw() -> float:
                with stopwatch() as elapsed:
                    for ids in copies:
                        for run_id in ids:
                            await runtime.store.read_stream(f"run:{run_id}")
                return elapsed()

            async def scored() -> float:
                with stopwatch() as elapsed:
                    report = await score_runs(runtime, rubric, tops)
                if not report.passed or len(report.runs) != count:
                    raise SystemExit(f"the copied demo runs must all pass: {report.summary()}")
                return elapsed()

            samples = await interleaved({"phalanx": scored, "raw": raw}, repeats)
    figure = Figure.from_samples(
        "evals.deterministic",
        f"score {count} demo runs (every deterministic criterion) vs read their events",
        "s",
        samples,
        better="lower",
        limit=2.0,
    )
    print_figures([figure], file=sys.stderr if as_json else None)
    if as_json:
        print(
            json.dumps(
                {
                    "runs": count,
                    "criteria": len(rubric.criteria),
                    "figures": {
                        figure.key: {
                            "phalanx_s": figure.phalanx,
                            "raw_s": figure.raw,
                            "ratio": figure.ratio,
                            "limit": figure.limit,
                            "samples": figure.samples,
                        }
                    },
                }
            )
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 runs, 3 rounds (CI smoke)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.quick, args.json)))
