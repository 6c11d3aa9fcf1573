"""Pictures and dashboard benchmark: drawing and serving a run of 10,000 events.

Run it as `.venv/bin/python benchmarks/pictures.py [--quick] [--json]`.

A run tree of about 10,000 events is written to a fresh SQLite store (a fan-out over
10 branches, each a child run of ~500 agent steps: model calls and tool calls with
their tags, as the agent loop journals them; timestamps 1 ms apart). Then, in
interleaved rounds (see `_util.interleaved`):

- baseline `read`: reading every run's journal (`Runtime.history` of the root and each
  child): the I/O floor any picture of the run pays;
- `timeline`: `build_run_model` + `render_timeline_svg` (target: under 2 s);
- `diagram`: `build_run_model` + `run_graph` + DOT laid out by Graphviz as SVG
  (target: under 2 s);
- baseline `read_flat`: reading the journal of one run of ~10,000 events (a flat run
  of 5,000 agent steps, written beside the tree);
- `page_cold` and `page`: the dashboard's page of that run (`Dashboard.run_detail`, the
  handler behind `/runs/RUN`, called in-process: server time without the network;
  target: under 300 ms), first by a dashboard that has never seen the run (it folds the
  whole journal), then by one that has (it checks the stream's version, and reads only
  events appended since). Either way it renders one page of events and 100 model calls.

Each figure is the median over rounds, with its ratio to the baseline measured in the
same rounds. `--quick` writes ~1,000 events and runs one round (the CI smoke test
checks the figures and baselines are reported, never their values). The script exits
0 even when a target is missed: it is a report, not a gate. With `--json` the table
goes to stderr and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.requests import Request

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phalanx
from benchmarks._util import format_number, interleaved, print_table, stopwatch
from phalanx.journal import Metadata, NewEvent, store_from_url
from phalanx.observe import build_run_model, dot_to, render_timeline_svg, run_graph, to_dot
from phalanx.web import Dashboard

ROOT_ID = "bench-root"
FLAT_ID = "bench-flat"
BRANCHES = 10


class _Ticks:
    """A clock that moves 1 ms per reading: a long run's timestamps, written at once."""

    def __init__(self) -> None:
        self.at = 1_800_000_000.0

    def now(self) -> float:
        self.at += 0.001
        return self.at

    def monotonic(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _steps(run_id: str, agent: str, count: int) -> list[NewEvent]:
    meta = Metadata(run_id=run_id)
    events: list[NewEvent] = []
    for op in range(1, count + 1):
        turn = (op + 1) // 2
        if op % 2:
            tags = {"agent": agent, "turn": turn, "operation": "chat"}
            result: Any = {
                "text": None if op < count else "done",
                "tool_calls": [{"id": f"c{op}", "name": "lookup", "arguments": "{}"}],
                "usage": {"input_tokens": 100 + op, "output_tokens": 20},
                "model": "scripted-1",
                "provider": "scripted",
            }
        else:
            tags = {"agent": agent, "turn": turn, "operation": "execute_tool", "tool": "lookup"}
            result = {"tool": "lookup", "attempt": 1, "result": f"page {op}"}
        name = f"{agent}/step/{op}"
        started = {"op": op, "name": name, "attempt": 1, "key": f"{run_id}:{op}", "tags": tags}
        done = {"op": op, "name": name, "attempt": 1, "result": result, "duration_s": 0.001}
        events += [NewEvent("StepStarted", started, meta), NewEvent("StepCompleted", done, meta)]
    return events


async def write_run(url: str, total_events: int) -> int:
    """Write the run tree; return how many events it holds."""
    store = store_from_url(url, clock=_Ticks())
    await store.open()
    written = 0
    try:
        steps = max(2, (total_events // BRANCHES - 2) // 2)
        branches = {f"agent_{i}": f"{ROOT_ID}.1.agent_{i}" for i in range(BRANCHES)}
        meta = Metadata(run_id=ROOT_ID)
        root = [
            NewEvent(
                "RunStarted",
                {"workflow": "bench:fan_out", "inputs": {}, "parent_run_id": None},
                meta,
                indexed=True,
            ),
            NewEvent(
                "GatherStarted",
                {"op": 1, "name": "work", "policy": "all", "branches": branches,
                 "deadline_at": None, "started_at": 1_800_000_000.0, "op_kind": "gather"},
                meta,
            ),
        ]  # fmt: skip
        await store.append(f"run:{ROOT_ID}", root, expected_version=0)
        written += len(root)
        for branch, run_id in branches.items():
            child = [
                NewEvent(
                    "RunStarted",
                    {"workflow": "bench:agent", "inputs": {}, "parent_run_id": ROOT_ID},
                    Metadata(run_id=run_id),
                    indexed=True,
                ),
                *_steps(run_id, branch, steps),
                NewEvent("RunCompleted", {"result": "done"}, Metadata(run_id=run_id), indexed=True),
            ]
            for start in range(0, len(child), 500):
                await store.append(f"run:{run_id}", child[start : start + 500])
            written += len(child)
            finished = {
                "op": 1, "name": "work", "branch": branch, "status": "succeeded",
                "value": None, "error": None, "duration_s": 1.0, "run_id": run_id,
            }  # fmt: skip
            await store.append(f"run:{ROOT_ID}", [NewEvent("BranchFinished", finished, meta)])
            written += 1
        tail = [
            NewEvent(
                "GatherCompleted",
                {"op": 1, "name": "work", "satisfied": True, "partial": False, "statuses": {}},
                meta,
            ),
            NewEvent("RunCompleted", {"result": "ok"}, meta, indexed=True),
        ]
        await store.append(f"run:{ROOT_ID}", tail)
        written += len(tail)
        flat = [
            NewEvent(
                "RunStarted",
                {"workflow": "bench:agent", "inputs": {}, "parent_run_id": None},
                Metadata(run_id=FLAT_ID),
                indexed=True,
            ),
            *_steps(FLAT_ID, "solo", max(2, (total_events - 2) // 2)),
            NewEvent("RunCompleted", {"result": "done"}, Metadata(run_id=FLAT_ID), indexed=True),
        ]
        for start in range(0, len(flat), 500):
            await store.append(f"run:{FLAT_ID}", flat[start : start + 500])
    finally:
        await store.close()
    return written


def _request(run_id: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/runs/{run_id}",
        "query_string": b"",
        "headers": [],
        "path_params": {"run_id": run_id},
    }
    return Request(scope)


async def measure(url: str, repeats: int) -> dict[str, list[float]]:
    """Interleaved samples of every measurement, in seconds."""
    async with phalanx.open_runtime(url) as runtime:
        dashboard = Dashboard(runtime, token=None, csrf="bench")
        run_ids = [ROOT_ID, *(f"{ROOT_ID}.1.agent_{i}" for i in range(BRANCHES))]

        async def read() -> float:
            with stopwatch() as elapsed:
                for run_id in run_ids:
                    await runtime.history(run_id)
            return elapsed()

        async def read_flat() -> float:
            with stopwatch() as elapsed:
                await runtime.history(FLAT_ID)
            return elapsed()

        async def timeline() -> float:
            with stopwatch() as elapsed:
                render_timeline_svg(await build_run_model(runtime, ROOT_ID))
            return elapsed()

        async def diagram() -> float:
            with stopwatch() as elapsed:
                dot_to(to_dot(run_graph(await build_run_model(runtime, ROOT_ID))), "svg")
            return elapsed()

        async def page_cold() -> float:
            fresh = Dashboard(runtime, token=None, csrf="bench")  # nothing cached yet
            with stopwatch() as elapsed:
                response = await fresh.run_detail(_request(FLAT_ID))
            assert response.status_code == 200
            return elapsed()

        async def page() -> float:
            with stopwatch() as elapsed:
                response = await dashboard.run_detail(_request(FLAT_ID))
            assert response.status_code == 200
            return elapsed()

        measures = {
            "read": read,
            "timeline": timeline,
            "diagram": diagram,
            "read_flat": read_flat,
            "page_cold": page_cold,
            "page": page,
        }
        return await interleaved(measures, repeats)


def report(samples: dict[str, list[float]], events: int) -> dict[str, Any]:
    """Medians, ratios to the baselines and the targets."""
    med = {name: statistics.median(values) for name, values in samples.items()}

    def ratio(name: str, base: str) -> float:
        return statistics.median(a / b for a, b in zip(samples[name], samples[base], strict=True))

    targets = {"timeline": 2.0, "diagram": 2.0, "page_cold": 0.3, "page": 0.3}
    figures = {
        name: {
            "median_s": med[name],
            "baseline": base,
            "baseline_median_s": med[base],
            "ratio_to_baseline": ratio(name, base),
            "target_s": targets[name],
            "met": med[name] < targets[name],
        }
        for name, base in (
            ("timeline", "read"),
            ("diagram", "read"),
            ("page_cold", "read_flat"),
            ("page", "read_flat"),
        )
    }
    return {"events": events, "rounds": len(samples["read"]), "figures": figures}


def main(argv: Sequence[str] | None = None) -> int:
    """Write the run, measure, print the table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~1,000 events, one round")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    total, repeats = (1_000, 1) if args.quick else (10_000, 5)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'pictures.db'}"
        events = asyncio.run(write_run(url, total))
        result = report(asyncio.run(measure(url, repeats)), events)
    out = sys.stderr if args.json else sys.stdout
    rows = [
        [
            name,
            format_number(f["median_s"] * 1000),
            f"{f['baseline']} {format_number(f['baseline_median_s'] * 1000)}",
            f"{f['ratio_to_baseline']:.1f}x",
            f"< {format_number(f['target_s'] * 1000)} ms " + ("met" if f["met"] else "MISSED"),
        ]
        for name, f in result["figures"].items()
    ]
    print(f"run tree of {events} events, {result['rounds']} round(s), SQLite", file=out)
    print_table(["figure", "median ms", "baseline ms", "ratio", "target"], rows, file=out)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
