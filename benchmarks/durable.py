"""Durable-execution benchmark: what a journaled `ctx.step` and a resume cost, in one run.

Run it as `.venv/bin/python benchmarks/durable.py [--quick] [--json] [--steps N]`.

1. Per-step overhead: one run of N no-op `ctx.step`s (per step = total / N) on SQLite at
   synchronous=NORMAL and FULL, next to
   - a plain `await noop()` loop (no durability at all);
   - the raw one-commit floor: `sqlite3` in WAL mode at the same synchronous setting,
     one BEGIN IMMEDIATE / INSERT / COMMIT of a ~100-byte JSON row per step, into a
     table shaped like phalanx's events table;
   - LangGraph, a StateGraph whose every step is one node run, without a checkpointer
     (framework cost) and with `SqliteSaver` from langgraph-checkpoint-sqlite as it
     ships (WAL, SQLite's default synchronous=FULL), both at its default
     `durability="async"` and at `durability="sync"` (each step durable before the next,
     the guarantee phalanx gives);
   - DBOS Transact on a local SQLite system database as it ships (rollback journal,
     synchronous=FULL), each step a `@DBOS.step()` inside a `@DBOS.workflow()`.
   Targets: phalanx <= 1.5x the raw floor at NORMAL and <= 1.3x at FULL (a quick
   step is one commit: its StepStarted rides in its StepCompleted's transaction);
   phalanx at NORMAL (its default) >= 10x faster than LangGraph with SqliteSaver as it
   ships. The equal-durability pairs (phalanx FULL against the FULL peers) are reported.
   Sync steps: the same run with a plain `def` step function (run in a worker thread),
   next to a loop of `await asyncio.to_thread(noop)`; target: the `def` step costs at
   most the async step plus 1.2 raw thread hops.
   From outside: `phalanx run benchmarks.durable:steps` as a user runs it (a fresh
   process, at NORMAL), timed by this script with N steps and with 0, per step =
   the difference / N (N = `cli_steps`, 3,000: process start-up is ~1 s and noisy, and
   N must lift the steps above it); target: within 1.2x of the in-process figure.
2. Resume cost: a run with H completed steps whose process died in step H+1 (a
   BaseException escaped it). Measured: from `rt.resume(run_id, force=True)` until step
   H+1 runs again, next to one `read_stream` of the same journal. Targets: resume <= 3x
   the read; per-event resume cost at the largest H <= 1.2x that at the smallest
   (resume grows linearly with the journal).

Every figure comes from interleaved rounds (see `_util.interleaved`), one warm-up round
discarded, each contender on a fresh database; ratios are medians of per-round ratios.
The peers are optional (`pip install -e '.[bench]'`) and imported only when measured; a
peer that is not installed, or fails to run here, is reported as skipped with the
reason. The script exits 0 even when a target is missed: it is a report, not a gate.
With `--json` the tables go to stderr and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TextIO, TypedDict

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phalanx
from benchmarks._util import format_number, interleaved, paired_ratio, print_table, stopwatch

Synchronous = Literal["normal", "full"]


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    steps: int
    repeats: int
    histories: tuple[int, ...]
    warmup: int = 1
    #: Steps of a `phalanx run` sample (its N; see the module docstring).
    cli_steps: int = 3000


FULL = Sizes(steps=1000, repeats=7, histories=(1000, 10_000, 100_000))
QUICK = Sizes(steps=1000, repeats=5, histories=(1000, 10_000))

#: The steps a peer runs before the rounds, to see that it works here at all.
PREFLIGHT_STEPS = 3
#: Step-overhead targets: phalanx / raw floor at most this, LangGraph / phalanx at least.
FLOOR_LIMIT = {"normal": 1.5, "full": 1.3}
LANGGRAPH_LIMIT = 10.0
#: A `def` step may cost the async step plus at most this many raw thread hops.
SYNC_LIMIT = 1.2
#: A step through `phalanx run` may cost at most this times the in-process step.
CLI_LIMIT = 1.2
#: Resume targets: resume / read at most this; per-event growth largest / smallest H.
RESUME_LIMIT = 3.0
LINEARITY_LIMIT = 1.2


# -- the workflows -------------------------------------------------------------------


async def noop() -> None:
    """The step body: nothing, so what is measured is the durability machinery."""


@phalanx.workflow
async def steps(ctx: phalanx.WorkflowContext, n: int) -> int:
    """N no-op steps in one run."""
    for i in range(n):
        await ctx.step(f"s{i}", noop)
    return n


def noop_sync() -> None:
    """The body of a plain `def` step: nothing, so the thread hand-off is measured."""


@phalanx.workflow
async def sync_steps(ctx: phalanx.WorkflowContext, n: int) -> int:
    """N no-op `def` steps in one run (each runs in a worker thread)."""
    for i in range(n):
        await ctx.step(f"s{i}", noop_sync)
    return n


class Crash(BaseException):
    """The process dying in a step: not an Exception, so the run is left resumable."""


class _Probe:
    """Step H+1 of `long_run`: crashes while armed, else notes when it was reached."""

    armed = True
    reached: float | None = None


async def next_step() -> None:
    """Step H+1: the first step a resume runs rather than replays."""
    if _Probe.armed:
        raise Crash
    _Probe.reached = time.perf_counter()


@phalanx.workflow
async def long_run(ctx: phalanx.WorkflowContext, h: int) -> int:
    """H no-op steps, then `next_step`."""
    for i in range(h):
        await ctx.step(f"s{i}", noop)
    await ctx.step("next", next_step)
    return h


# -- scratch files ---------------------------------------------------------------------


class Scratch:
    """Fresh temporary directories under one base, one per measurement."""

    def __init__(self, base: str | None) -> None:
        self.base = Path(base or tempfile.gettempdir())

    @contextmanager
    def fresh(self) -> Iterator[Path]:
        """A new empty directory, removed with everything in it afterwards."""
        with tempfile.TemporaryDirectory(prefix="phalanx-bench-", dir=self.base) as path:
            yield Path(path)


def sqlite_url(path: Path, synchronous: str) -> str:
    """The store URL of a SQLite file at a synchronous setting."""
    return f"sqlite:///{path}?synchronous={synchronous}"


# -- 1. per-step overhead --------------------------------------------------------------

# The events table of phalanx's SQLite migration, with only the UNIQUE (stream_id, seq)
# index a journal cannot do without (phalanx's further index is charged to phalanx).
RAW_EVENTS_DDL = """
CREATE TABLE events (
    position    INTEGER PRIMARY KEY,
    stream_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    epoch       INTEGER,
    recorded_at REAL NOT NULL,
    run_id      TEXT,
    agent_id    TEXT,
    parent_id   TEXT,
    trace_id    TEXT,
    span_id     TEXT,
    UNIQUE (stream_id, seq)
)
"""
RAW_INSERT = (
    "INSERT INTO events (stream_id, seq, type, data, epoch, recorded_at, run_id, agent_id,"
    " parent_id, trace_id, span_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def floor_payload(i: int) -> dict[str, Any]:
    """A ~100-byte step event, shaped like phalanx's StepCompleted data."""
    return {
        "op": i,
        "name": f"s{i}",
        "attempt": 1,
        "result": None,
        "duration_s": 1.234e-05,
        "key": f"0f3a9c2b71d4e856:{i}",
    }


@dataclass
class Contender:
    """One way to run N steps; `measure(n)` returns microseconds per step."""

    key: str
    label: str
    durability: str
    measure: Callable[[int], Awaitable[float]]
    peer: str | None = None
    skipped: str | None = None
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        """The median sample, None when skipped."""
        return statistics.median(self.samples) if self.samples else None

    def to_json(self) -> dict[str, Any]:
        """The contender in the `--json` schema."""
        return {
            "label": self.label,
            "durability": self.durability,
            "status": "skipped" if self.skipped else "ok",
            "reason": self.skipped,
            "us_per_step": self.median,
            "samples": list(self.samples),
        }


def plain_loop() -> Callable[[int], Awaitable[float]]:
    """`await noop()` N times: the floor of any async step API."""

    async def measure(n: int) -> float:
        with stopwatch() as elapsed:
            for _ in range(n):
                await noop()
        return elapsed() / n * 1e6

    return measure


def thread_hop() -> Callable[[int], Awaitable[float]]:
    """`await asyncio.to_thread(noop_sync)` N times: one raw thread hop per step."""

    async def measure(n: int) -> float:
        with stopwatch() as elapsed:
            for _ in range(n):
                await asyncio.to_thread(noop_sync)
        return elapsed() / n * 1e6

    return measure


def raw_floor(scratch: Scratch, synchronous: Synchronous) -> Callable[[int], Awaitable[float]]:
    """One INSERT + COMMIT per step with plain `sqlite3`, WAL, at `synchronous`."""

    async def measure(n: int) -> float:
        datas = [floor_payload(i) for i in range(1, n + 1)]
        with scratch.fresh() as tmp:
            conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
                conn.execute(RAW_EVENTS_DDL)
                with stopwatch() as elapsed:
                    for seq, data in enumerate(datas, start=1):
                        text = json.dumps(data, separators=(",", ":"))
                        conn.execute("BEGIN IMMEDIATE")
                        conn.execute(
                            RAW_INSERT,
                            ("run:r", seq, "StepCompleted", text, 1, time.time()) + (None,) * 5,
                        )
                        conn.execute("COMMIT")
                return elapsed() / n * 1e6
            finally:
                conn.close()

    return measure


def phalanx_steps(
    scratch: Scratch, synchronous: Synchronous, workflow: Any = steps
) -> Callable[[int], Awaitable[float]]:
    """`rt.run(workflow, {"n": n})` on a fresh SQLite store at `synchronous`."""

    async def measure(n: int) -> float:
        with scratch.fresh() as tmp:
            async with phalanx.open_runtime(sqlite_url(tmp / "phalanx.db", synchronous)) as rt:
                with stopwatch() as elapsed:
                    outcome = await rt.run(workflow, {"n": n})
                if outcome.result != n:
                    raise RuntimeError(f"phalanx run ended {outcome.status}: {outcome.error}")
                return elapsed() / n * 1e6

    return measure


def cli_steps(
    scratch: Scratch, synchronous: Synchronous, n_cli: int
) -> Callable[[int], Awaitable[float]]:
    """`phalanx run benchmarks.durable:steps` in a fresh process: N steps minus 0 steps.

    Whatever `n` the round asks for, a sample runs `n_cli` steps (see `Sizes`); both
    processes are timed from outside, start-up, imports and exit included, so the
    difference is what the steps cost a user of the command.
    """
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "phalanx.cli", "run", "benchmarks.durable:steps"]

    async def one(store: Path, n: int) -> float:
        url = sqlite_url(store, synchronous)
        with stopwatch() as elapsed:
            proc = await asyncio.create_subprocess_exec(
                *command,
                "--input",
                json.dumps({"n": n}),
                "--store",
                url,
                "--json",
                cwd=root,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
        if proc.returncode != 0 or json.loads(out)["result"] != n:
            raise RuntimeError(f"phalanx run exited {proc.returncode}: {err.decode()[-300:]}")
        return elapsed()

    async def measure(_: int) -> float:
        with scratch.fresh() as tmp:
            steps_s = await one(tmp / "steps.db", n_cli)
            empty_s = await one(tmp / "empty.db", 0)
        return (steps_s - empty_s) / n_cli * 1e6

    return measure


class LoopState(TypedDict):
    """LangGraph's state: the step counter and the number of steps."""

    i: int
    n: int


def lg_step(state: LoopState) -> dict[str, int]:
    """One step: a node that only counts (the no-op of a graph)."""
    return {"i": state["i"] + 1}


def lg_route(state: LoopState) -> str:
    """Loop back to the step node until N steps ran."""
    return "step" if state["i"] < state["n"] else "__end__"


def langgraph_steps(
    scratch: Scratch, checkpointer: Literal["none", "sqlite"], durability: str | None = None
) -> Callable[[int], Awaitable[float]]:
    """A one-node StateGraph looping N times, one superstep (and checkpoint) per step."""

    async def measure(n: int) -> float:
        from langgraph.graph import START, StateGraph

        graph = StateGraph(LoopState)
        graph.add_node("step", lg_step)
        graph.add_edge(START, "step")
        graph.add_conditional_edges("step", lg_route)
        config: dict[str, Any] = {
            "configurable": {"thread_id": "bench"},
            "recursion_limit": n + 10,
        }
        options = {} if durability is None else {"durability": durability}
        if checkpointer == "none":
            app = graph.compile()
            with stopwatch() as elapsed:
                state = app.invoke({"i": 0, "n": n}, config)
        else:
            from langgraph.checkpoint.sqlite import SqliteSaver

            with (
                scratch.fresh() as tmp,
                SqliteSaver.from_conn_string(str(tmp / "checkpoints.sqlite")) as saver,
            ):
                app = graph.compile(checkpointer=saver)
                with stopwatch() as elapsed:
                    state = app.invoke({"i": 0, "n": n}, config, **options)
        if state["i"] != n:
            raise RuntimeError(f"LangGraph stopped at step {state['i']} of {n}")
        return elapsed() / n * 1e6

    return measure


_dbos_workflow: Callable[[int], int] | None = None


def dbos_steps(scratch: Scratch) -> Callable[[int], Awaitable[float]]:
    """A `@DBOS.workflow()` of N `@DBOS.step()`s on a fresh local SQLite system database.

    DBOS is a process-wide singleton: each measurement creates and launches it on a new
    file (not timed) and destroys it afterwards, so its background threads never run
    while another contender is being measured.
    """

    async def measure(n: int) -> float:
        global _dbos_workflow
        from dbos import DBOS

        with scratch.fresh() as tmp:
            DBOS(
                config={
                    "name": "phalanx-bench",
                    "system_database_url": f"sqlite:///{tmp / 'dbos.sqlite'}",
                    "log_level": "WARNING",
                }
            )
            try:
                if _dbos_workflow is None:

                    @DBOS.step()
                    def dbos_noop() -> None:
                        return None

                    @DBOS.workflow()
                    def dbos_loop(n: int) -> int:
                        for _ in range(n):
                            dbos_noop()
                        return n

                    _dbos_workflow = dbos_loop
                DBOS.launch()
                with stopwatch() as elapsed:
                    result = _dbos_workflow(n)
            finally:
                DBOS.destroy()
        if result != n:
            raise RuntimeError(f"DBOS workflow returned {result!r}, expected {n}")
        return elapsed() / n * 1e6

    return measure


def contenders(scratch: Scratch, sizes: Sizes) -> list[Contender]:
    """Everything the step figure compares, phalanx first."""
    lg_full = "WAL, sync=FULL (SQLite default)"
    return [
        Contender(
            "phalanx.normal", "phalanx", "WAL, sync=NORMAL", phalanx_steps(scratch, "normal")
        ),
        Contender(
            "phalanx.cli",
            f"`phalanx run`, ({sizes.cli_steps:,} - 0 steps) / {sizes.cli_steps:,}",
            "WAL, sync=NORMAL",
            cli_steps(scratch, "normal", sizes.cli_steps),
        ),
        Contender("phalanx.full", "phalanx", "WAL, sync=FULL", phalanx_steps(scratch, "full")),
        Contender(
            "phalanx.sync_def",
            "phalanx, plain `def` step",
            "WAL, sync=NORMAL",
            phalanx_steps(scratch, "normal", sync_steps),
        ),
        Contender("plain", "plain `await noop()` loop", "none", plain_loop()),
        Contender("to_thread", "`await asyncio.to_thread(noop)` loop", "none", thread_hop()),
        Contender(
            "raw.normal", "raw sqlite3 1 commit", "WAL, sync=NORMAL", raw_floor(scratch, "normal")
        ),
        Contender("raw.full", "raw sqlite3 1 commit", "WAL, sync=FULL", raw_floor(scratch, "full")),
        Contender(
            "langgraph.none",
            "LangGraph, no checkpointer",
            "none",
            langgraph_steps(scratch, "none"),
            peer="langgraph",
        ),
        Contender(
            "langgraph.sqlite",
            "LangGraph + SqliteSaver (as shipped)",
            f"{lg_full}, durability=async",
            langgraph_steps(scratch, "sqlite"),
            peer="langgraph.checkpoint.sqlite",
        ),
        Contender(
            "langgraph.sqlite_sync",
            "LangGraph + SqliteSaver",
            f"{lg_full}, durability=sync",
            langgraph_steps(scratch, "sqlite", "sync"),
            peer="langgraph.checkpoint.sqlite",
        ),
        Contender(
            "dbos.sqlite",
            "DBOS Transact, SQLite (as shipped)",
            "rollback journal, sync=FULL",
            dbos_steps(scratch),
            peer="dbos",
        ),
    ]


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):  # a missing parent package, a blocked module
        return False


async def preflight(contender: Contender) -> None:
    """Mark a peer skipped, with why, if it is not installed or fails to run here."""
    if contender.peer is None or contender.skipped:
        return
    if not installed(contender.peer):
        contender.skipped = f"not installed ({contender.peer}; pip install -e '.[bench]')"
        return
    try:
        await contender.measure(PREFLIGHT_STEPS)
    except Exception as exc:
        contender.skipped = f"failed to run: {type(exc).__name__}: {exc}"[:300]


async def measure_steps(scratch: Scratch, sizes: Sizes, peers: bool = True) -> list[Contender]:
    """Every contender, N steps per sample, in interleaved rounds."""
    everyone = contenders(scratch, sizes)
    for contender in everyone:
        if contender.peer is not None and not peers:
            contender.skipped = "not measured (--no-peers)"
        await preflight(contender)
        if contender.skipped:
            progress(f"{contender.label}: skipped: {contender.skipped}")
    running = [c for c in everyone if not c.skipped]

    def bind(contender: Contender) -> Callable[[], Awaitable[float]]:
        return lambda: contender.measure(sizes.steps)

    samples = await interleaved(
        {c.key: bind(c) for c in running}, sizes.repeats, warmup=sizes.warmup
    )
    for contender in running:
        contender.samples = samples[contender.key]
    return everyone


# -- 2. resume cost --------------------------------------------------------------------


@dataclass
class ResumeResult:
    """Resume against read for one history length, in milliseconds per sample."""

    history: int
    events: int
    read_ms: list[float]
    resume_ms: list[float]

    @property
    def ratio(self) -> float:
        """Median of per-round resume / read."""
        return paired_ratio(self.resume_ms, self.read_ms)

    def per_event_us(self, samples: Sequence[float]) -> float:
        """Median microseconds per journaled event."""
        return statistics.median(samples) / self.events * 1e3

    def to_json(self) -> dict[str, Any]:
        """The history length's figures in the `--json` schema."""
        return {
            "history_steps": self.history,
            "events": self.events,
            "read_ms": statistics.median(self.read_ms),
            "resume_ms": statistics.median(self.resume_ms),
            "ratio": self.ratio,
            "read_us_per_event": self.per_event_us(self.read_ms),
            "resume_us_per_event": self.per_event_us(self.resume_ms),
            "samples": {"read_ms": list(self.read_ms), "resume_ms": list(self.resume_ms)},
        }


def _is_crash(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(Crash) is not None
    return isinstance(exc, Crash)


async def crashed_run(path: Path, history: int) -> tuple[str, int]:
    """Leave at `path` a run whose `history` steps completed and whose next one crashed.

    Returns:
        The run id and the number of events in its journal.
    """
    run_id = f"crashed-{history}"
    _Probe.armed = True
    # synchronous=off: durability does not matter while making the fixture.
    async with phalanx.open_runtime(sqlite_url(path, "off")) as rt:
        try:
            await rt.run(long_run, {"h": history}, run_id=run_id)
        except BaseException as exc:
            if not _is_crash(exc):
                raise
        else:
            raise RuntimeError("the crashing step did not crash the run")
        events = await rt.store.stream_version(f"run:{run_id}")
    return run_id, events


@contextmanager
def copy_of(scratch: Scratch, base: Path) -> Iterator[Path]:
    """A private copy of a closed SQLite file (its WAL was checkpointed on close)."""
    with scratch.fresh() as tmp:
        target = tmp / base.name
        shutil.copyfile(base, target)
        yield target


async def measure_resume(scratch: Scratch, sizes: Sizes, history: int) -> ResumeResult:
    """Time resume-to-next-step and read_stream, each on its own copy of the journal."""
    with scratch.fresh() as tmp:
        base = tmp / "crashed.db"
        with stopwatch() as made:
            run_id, events = await crashed_run(base, history)
        progress(f"  made a run of {history:,} steps ({events:,} events) in {made():.1f}s")
        stream = f"run:{run_id}"

        async def read() -> float:
            with copy_of(scratch, base) as path:
                async with phalanx.open_runtime(sqlite_url(path, "normal")) as rt:
                    with stopwatch() as elapsed:
                        got = await rt.store.read_stream(stream)
                    if len(got) != events:
                        raise RuntimeError(f"read {len(got)} events, expected {events}")
                    return elapsed() * 1e3

        async def resume() -> float:
            with copy_of(scratch, base) as path:
                async with phalanx.open_runtime(sqlite_url(path, "normal")) as rt:
                    _Probe.armed, _Probe.reached = False, None
                    start = time.perf_counter()
                    outcome = await rt.resume(run_id, force=True, workflow=long_run)
                    if outcome.result != history or _Probe.reached is None:
                        raise RuntimeError(f"resume ended {outcome.status}: {outcome.error}")
                    return (_Probe.reached - start) * 1e3

        samples = await interleaved(
            {"read": read, "resume": resume}, sizes.repeats, warmup=sizes.warmup
        )
    return ResumeResult(history, events, samples["read"], samples["resume"])


# -- figures and report ----------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A ratio with an optional target; `value` is None when a side was skipped."""

    key: str
    label: str
    value: float | None
    better: Literal["lower", "higher"]
    limit: float | None = None
    reason: str | None = None

    @property
    def target(self) -> str:
        """The target as text, e.g. `<= 2.50x`, or `-`."""
        if self.limit is None:
            return "-"
        return f"{'<=' if self.better == 'lower' else '>='} {self.limit:.2f}x"

    @property
    def passed(self) -> bool | None:
        """Whether the target is met; None without a target or a value."""
        if self.limit is None or self.value is None:
            return None
        return self.value <= self.limit if self.better == "lower" else self.value >= self.limit

    @property
    def verdict(self) -> str:
        """PASS, MISS, `skipped`, or `-` for a figure only reported."""
        if self.value is None:
            return "skipped"
        return {True: "PASS", False: "MISS", None: "-"}[self.passed]

    def to_json(self) -> dict[str, Any]:
        """The figure in the `--json` schema."""
        return {
            "label": self.label,
            "value": self.value,
            "better": self.better,
            "target": None if self.limit is None else self.target,
            "pass": self.passed,
            "reason": self.reason,
        }


def ratio_figure(
    key: str,
    label: str,
    by_key: dict[str, Contender],
    numerator: str,
    denominator: str,
    *,
    better: Literal["lower", "higher"],
    limit: float | None = None,
) -> Figure:
    """numerator / denominator as the median of per-round ratios."""
    top, bottom = by_key[numerator], by_key[denominator]
    skipped = top.skipped or bottom.skipped
    if skipped:
        return Figure(key, label, None, better, limit, reason=skipped)
    return Figure(key, label, paired_ratio(top.samples, bottom.samples), better, limit)


def step_figures(everyone: list[Contender]) -> list[Figure]:
    """The step figures: phalanx against the floor, and the peers against phalanx."""
    by_key = {c.key: c for c in everyone}
    figures = [
        ratio_figure(
            f"step.{sync}.vs_raw_floor",
            f"phalanx {sync.upper()} / raw 1-commit floor {sync.upper()}",
            by_key,
            f"phalanx.{sync}",
            f"raw.{sync}",
            better="lower",
            limit=FLOOR_LIMIT[sync],
        )
        for sync in ("normal", "full")
    ]
    figures.append(sync_step_figure(by_key))
    figures.append(
        ratio_figure(
            "step.cli_vs_in_process",
            "`phalanx run` per step / in-process phalanx NORMAL",
            by_key,
            "phalanx.cli",
            "phalanx.normal",
            better="lower",
            limit=CLI_LIMIT,
        )
    )
    figures += [
        ratio_figure(
            "step.langgraph_vs_phalanx",
            "LangGraph+SqliteSaver (as shipped) / phalanx NORMAL",
            by_key,
            "langgraph.sqlite",
            "phalanx.normal",
            better="higher",
            limit=LANGGRAPH_LIMIT,
        ),
        ratio_figure(
            "step.langgraph_vs_phalanx_full",
            "equal durability: LangGraph+SqliteSaver (as shipped) / phalanx FULL",
            by_key,
            "langgraph.sqlite",
            "phalanx.full",
            better="higher",
        ),
        ratio_figure(
            "step.langgraph_sync_vs_phalanx_full",
            "equal durability: LangGraph+SqliteSaver durability=sync / phalanx FULL",
            by_key,
            "langgraph.sqlite_sync",
            "phalanx.full",
            better="higher",
        ),
        ratio_figure(
            "step.langgraph_framework_vs_phalanx",
            "LangGraph without checkpointer / phalanx NORMAL",
            by_key,
            "langgraph.none",
            "phalanx.normal",
            better="higher",
        ),
        ratio_figure(
            "step.dbos_vs_phalanx_full",
            "equal durability: DBOS SQLite (as shipped) / phalanx FULL",
            by_key,
            "dbos.sqlite",
            "phalanx.full",
            better="higher",
        ),
        ratio_figure(
            "step.phalanx_vs_plain",
            "phalanx NORMAL / plain await loop",
            by_key,
            "phalanx.normal",
            "plain",
            better="lower",
        ),
    ]
    return figures


def sync_step_figure(by_key: dict[str, Contender]) -> Figure:
    """What a `def` step costs over an `async def` one, in raw thread hops, per round."""
    sync, step, hop = by_key["phalanx.sync_def"], by_key["phalanx.normal"], by_key["to_thread"]
    label = "(`def` step - async step) / one asyncio.to_thread hop"
    per_round = [
        (s - a) / h for s, a, h in zip(sync.samples, step.samples, hop.samples, strict=True)
    ]
    return Figure(
        "step.sync_def_vs_thread_hop", label, statistics.median(per_round), "lower", SYNC_LIMIT
    )


def resume_figures(results: list[ResumeResult]) -> list[Figure]:
    """Resume against read per history length, and the growth of per-event cost."""
    figures = [
        Figure(
            f"resume.{r.history}.vs_read",
            f"resume-to-next-step / read_stream, {r.history:,} steps",
            r.ratio,
            "lower",
            RESUME_LIMIT,
        )
        for r in results
    ]
    if len(results) >= 2:
        small, large = results[0], results[-1]
        growth = large.per_event_us(large.resume_ms) / small.per_event_us(small.resume_ms)
        figures.append(
            Figure(
                "resume.linearity",
                f"resume us/event at {large.history:,} / at {small.history:,} steps",
                growth,
                "lower",
                LINEARITY_LIMIT,
            )
        )
    return figures


def progress(message: str) -> None:
    """Say what is being measured, on stderr so stdout stays the report."""
    print(f"... {message}", file=sys.stderr, flush=True)


@dataclass
class Report:
    """Everything one run measured, with the context needed to compare runs."""

    quick: bool
    sizes: Sizes
    environment: dict[str, Any]
    contenders: list[Contender]
    resumes: list[ResumeResult]
    figures: list[Figure]

    def to_json(self) -> dict[str, Any]:
        """The `--json` object."""
        return {
            "benchmark": "durable",
            "quick": self.quick,
            "environment": self.environment,
            "sizes": {
                "steps": self.sizes.steps,
                "cli_steps": self.sizes.cli_steps,
                "repeats": self.sizes.repeats,
                "histories": list(self.sizes.histories),
            },
            "steps": {c.key: c.to_json() for c in self.contenders},
            "resume": {str(r.history): r.to_json() for r in self.resumes},
            "figures": {f.key: f.to_json() for f in self.figures},
            "all_targets_met": all(f.passed is not False for f in self.figures),
        }

    def render(self, file: TextIO) -> None:
        """The tables: per-step costs, resume costs, then the figures and verdicts."""
        env, sizes = self.environment, self.sizes
        print(
            f"phalanx durable benchmark{' (--quick)' if self.quick else ''}: medians of "
            f"{sizes.repeats} interleaved rounds (+{sizes.warmup} warm-up); ratios are "
            "medians of per-round ratios",
            file=file,
        )
        print(
            f"python {env['python']}, sqlite {env['sqlite']}, {env['cpus']} cpus, "
            f"{env['platform']}, scratch dir {env['scratch']}; peers: {env['peers']}",
            file=file,
        )
        print(file=file)
        print(f"1. per-step cost, {sizes.steps:,} no-op steps in one run", file=file)
        phalanx_normal = next(c for c in self.contenders if c.key == "phalanx.normal")
        rows = []
        for c in self.contenders:
            if c.skipped:
                rows.append([c.label, c.durability, "skipped", "-"])
                continue
            vs = paired_ratio(c.samples, phalanx_normal.samples)
            shown = f"{vs:.2f}x" if vs >= 0.1 else f"{vs:.4f}x"
            rows.append([c.label, c.durability, format_number(c.median or 0.0), shown])
        print_table(["contender", "durability", "us/step", "vs phalanx NORMAL"], rows, file=file)
        for c in self.contenders:
            if c.skipped:
                print(f"skipped {c.label}: {c.skipped}", file=file)
        print(file=file)
        print("2. resume: rt.resume(force=True) until the next new step runs", file=file)
        rows = [
            [
                f"{r.history:,}",
                f"{r.events:,}",
                format_number(statistics.median(r.read_ms)),
                format_number(statistics.median(r.resume_ms)),
                f"{r.ratio:.2f}x",
                format_number(r.per_event_us(r.read_ms)),
                format_number(r.per_event_us(r.resume_ms)),
            ]
            for r in self.resumes
        ]
        headers = [
            "steps",
            "events",
            "read ms",
            "resume ms",
            "resume/read",
            "read us/event",
            "resume us/event",
        ]
        print_table(headers, rows, file=file)
        print(file=file)
        print("targets", file=file)
        rows = [
            [
                f.label,
                "-" if f.value is None else f"{f.value:.2f}x",
                f.target,
                f.verdict,
            ]
            for f in self.figures
        ]
        print_table(["figure", "value", "target", "result"], rows, file=file)
        for f in self.figures:
            if f.passed is False:
                print(f"MISS: {f.label}: {f.value:.2f}x, target {f.target}", file=file)


def peer_versions() -> str:
    """The installed peers and their versions, for the report header."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("langgraph", "langgraph-checkpoint-sqlite", "dbos"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


async def run(sizes: Sizes, scratch: Scratch, quick: bool, peers: bool = True) -> Report:
    """Measure every figure in turn, resume first.

    Resume allocates an object per event, so its cost includes Python's cyclic garbage
    collector, whose full passes walk every live object in the process. The peers
    (LangGraph with langchain-core, DBOS with SQLAlchemy) leave ~150k objects behind
    once imported, which measurably slowed a 10k-step resume: measuring resume before
    any peer is imported gives the figure a phalanx worker would see.
    """
    resumes = []
    for history in sizes.histories:
        progress(f"resume after {history:,} steps")
        resumes.append(await measure_resume(scratch, sizes, history))
    progress(f"per-step cost, {sizes.steps:,} steps x {sizes.repeats} rounds")
    everyone = await measure_steps(scratch, sizes, peers)
    environment = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "scratch": str(scratch.base),
        "peers": peer_versions(),
    }
    figures = step_figures(everyone) + resume_figures(resumes)
    return Report(quick, sizes, environment, everyone, resumes, figures)


def positive_ints(text: str) -> tuple[int, ...]:
    """Parse `1000,10000` into a sorted tuple of positive ints."""
    values = tuple(sorted(int(part) for part in text.split(",") if part.strip()))
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers separated by commas")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; 0 even when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: less work, noisier")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--no-peers", action="store_true", help="phalanx and its floors only")
    parser.add_argument("--steps", type=int, help="steps per run in the per-step figure")
    parser.add_argument(
        "--cli-steps", type=int, help="steps of a `phalanx run` sample (N, then 0, is timed)"
    )
    parser.add_argument(
        "--histories", type=positive_ints, help="completed steps before a resume, e.g. 1000,10000"
    )
    parser.add_argument("--repeats", type=int, help="rounds kept per figure (at least 5)")
    parser.add_argument(
        "--dir", help="where the scratch SQLite files go (FULL depends on its filesystem)"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.steps is not None:
        if args.steps < 1:
            parser.error("--steps must be positive")
        sizes = replace(sizes, steps=args.steps)
    if args.cli_steps is not None:
        if args.cli_steps < 1:
            parser.error("--cli-steps must be positive")
        sizes = replace(sizes, cli_steps=args.cli_steps)
    if args.histories is not None:
        sizes = replace(sizes, histories=args.histories)
    if args.repeats is not None:
        if args.repeats < 5:
            parser.error("--repeats must be at least 5: a median of fewer is too noisy")
        sizes = replace(sizes, repeats=args.repeats)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    report = asyncio.run(run(sizes, Scratch(args.dir), args.quick, not args.no_peers))
    report.render(sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
