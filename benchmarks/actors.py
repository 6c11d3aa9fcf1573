"""Actor benchmark: phalanx actors against bare asyncio and against pykka, in one run.

Run it as `.venv/bin/python benchmarks/actors.py [--quick] [--json]`.

Three questions, each answered against two baselines measured in the same run:

1. What does an idle agent cost? Memory per idle actor (10,000 of them, tracemalloc,
   so only Python allocations count: no thread stacks), next to a bare asyncio task
   blocked on its own `asyncio.Queue` (the least an async actor can be; target: at most
   2x) and a pykka `ThreadingActor` (target: phalanx at least 3x lighter).
2. How fast does `tell` deliver? One sender, one actor counting messages, next to one
   task doing `await queue.put()` into a bounded `asyncio.Queue` of the same capacity
   (target: at least 0.5x its rate) and pykka tells (target: at least 5x).
3. How fast is a request/reply? Sequential `ask`s (with the default timeout armed, as
   real code has one), next to ping-pong over two `asyncio.Queue`s (target: at least
   0.5x) and pykka asks (target: at least 2x).

The raw baselines do no more than the mechanism itself: no message ids, no
deduplication, no supervision, no timeouts; that difference is the overhead measured.
Every figure comes from interleaved rounds (see `_util.interleaved`) and ratios are
medians of per-round ratios, so the noise of a shared machine hits all sides alike.
pykka is optional (`pip install -e '.[bench]'`), imported only when measured, and
reported as skipped with the reason when it is missing. The script exits 0 even when a
target is missed: it is a report, not a gate. With `--json` the table goes to stderr
and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import threading
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._util import format_number, interleaved, paired_ratio, print_table, stopwatch
from phalanx.actors import Actor, MailboxPolicy, open_actor_system

CAPACITY = 1000  # mailbox / queue bound on both sides of the tell comparison
SCRIPT = str(Path(__file__).resolve())
HAVE_STATM = os.path.exists("/proc/self/statm")

Measure = Callable[[], Awaitable[float]]


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    repeats: int
    idle_actors: int
    tells: int
    asks: int
    pykka_tells: int
    pykka_asks: int
    warmup: int = 1


FULL = Sizes(
    repeats=5,
    idle_actors=10_000,
    tells=200_000,
    asks=20_000,
    pykka_tells=50_000,
    pykka_asks=5_000,
)
QUICK = Sizes(
    repeats=1,
    idle_actors=1_000,
    tells=20_000,
    asks=2_000,
    pykka_tells=5_000,
    pykka_asks=1_000,
    warmup=0,
)


# -- the contenders --------------------------------------------------------------------


class Idle(Actor):
    """An actor that is never sent anything."""

    __slots__ = ()

    async def receive(self, message: Any) -> Any:
        return message


class Sink(Actor):
    """Counts tells; completes `done` at the `target`th."""

    __slots__ = ("count", "done", "target")

    def __init__(self, target: int, done: asyncio.Future[None]) -> None:
        self.count = 0
        self.target = target
        self.done = done

    async def receive(self, message: Any) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set_result(None)


class Echo(Actor):
    """Answers each ask with its message."""

    __slots__ = ()

    async def receive(self, message: Any) -> Any:
        return message


def measure_memory(kind: str, n: int) -> Measure:
    """A measure of bytes per idle entity: tracemalloc around `IDLE[kind](n)`, then teardown."""

    async def measure() -> float:
        create = IDLE[kind]
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            teardown = await create(n)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        await teardown()
        return (after - before) / n

    return measure


async def phalanx_idle(n: int) -> Callable[[], Awaitable[None]]:
    """Spawn `n` idle actors in an already open system; return the teardown."""
    system = open_actor_system()
    # The system itself (root supervisor and its task) is opened inside the trace too:
    # a constant few KB, which is noise spread over thousands of actors.
    await system.__aenter__()
    for i in range(n):
        await system.spawn(Idle, name=f"idle-{i}")
    for _ in range(3):
        await asyncio.sleep(0)

    async def teardown() -> None:
        await system.__aexit__(None, None, None)

    return teardown


async def raw_idle(n: int) -> Callable[[], Awaitable[None]]:
    """Start `n` bare tasks, each blocked on its own queue; return the teardown."""

    async def consumer(queue: asyncio.Queue[Any]) -> None:
        while True:
            await queue.get()

    group = asyncio.TaskGroup()
    await group.__aenter__()
    tasks = [group.create_task(consumer(asyncio.Queue())) for _ in range(n)]
    for _ in range(3):
        await asyncio.sleep(0)

    async def teardown() -> None:
        for task in tasks:
            task.cancel()
        await group.__aexit__(None, None, None)

    return teardown


def pykka_module() -> Any:
    """pykka, or ImportError with the reason (it is an optional dependency)."""
    import pykka

    return pykka


async def pykka_idle(n: int) -> Callable[[], Awaitable[None]]:
    """Start `n` idle pykka ThreadingActors; return the teardown."""
    pykka = pykka_module()

    class PykkaIdle(pykka.ThreadingActor):  # type: ignore[misc,name-defined]
        def on_receive(self, message: Any) -> Any:
            return message

    refs = [PykkaIdle.start() for _ in range(n)]
    for ref in refs:
        ref.ask(None)  # every thread has started and is blocked on its inbox

    async def teardown() -> None:
        pykka.ActorRegistry.stop_all()

    return teardown


async def phalanx_tells(n: int) -> float:
    """Messages per second from one sender to one actor, until the actor has them all."""
    async with open_actor_system() as system:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ref = await system.spawn(
            functools.partial(Sink, n, done), name="sink", mailbox=MailboxPolicy(capacity=CAPACITY)
        )
        with stopwatch() as elapsed:
            for i in range(n):
                await ref.tell(i)
            await done
        return n / elapsed()


async def raw_tells(n: int) -> float:
    """The same through a bare task reading a bounded asyncio.Queue."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=CAPACITY)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def consumer() -> None:
        count = 0
        while True:
            await queue.get()
            count += 1
            if count == n:
                done.set_result(None)

    rate = 0.0
    async with asyncio.TaskGroup() as group:
        task = group.create_task(consumer())
        with stopwatch() as elapsed:
            for i in range(n):
                await queue.put(i)
            await done
        rate = n / elapsed()
        task.cancel()
    return rate


async def pykka_tells(n: int) -> float:
    """pykka: tells from the main thread to one ThreadingActor, until it has them all."""
    pykka = pykka_module()
    done = threading.Event()

    class PykkaSink(pykka.ThreadingActor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> None:
            self.count += 1
            if self.count == n:
                done.set()

    ref = PykkaSink.start()
    try:
        with stopwatch() as elapsed:
            for i in range(n):
                ref.tell(i)
            done.wait()
        return n / elapsed()
    finally:
        ref.stop()


async def phalanx_asks(n: int) -> float:
    """Sequential asks per second (each with the default timeout armed)."""
    async with open_actor_system() as system:
        ref = await system.spawn(Echo, name="echo")
        with stopwatch() as elapsed:
            for i in range(n):
                await ref.ask(i)
        return n / elapsed()


async def raw_asks(n: int) -> float:
    """Ping-pong over two asyncio.Queues with an echo task."""
    requests: asyncio.Queue[int] = asyncio.Queue()
    replies: asyncio.Queue[int] = asyncio.Queue()

    async def echo() -> None:
        while True:
            await replies.put(await requests.get())

    rate = 0.0
    async with asyncio.TaskGroup() as group:
        task = group.create_task(echo())
        with stopwatch() as elapsed:
            for i in range(n):
                await requests.put(i)
                await replies.get()
        rate = n / elapsed()
        task.cancel()
    return rate


async def pykka_asks(n: int) -> float:
    """pykka: sequential blocking asks to one ThreadingActor."""
    pykka = pykka_module()

    class PykkaEcho(pykka.ThreadingActor):  # type: ignore[misc,name-defined]
        def on_receive(self, message: Any) -> Any:
            return message

    ref = PykkaEcho.start()
    try:
        with stopwatch() as elapsed:
            for i in range(n):
                ref.ask(i)
        return n / elapsed()
    finally:
        ref.stop()


# -- figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """phalanx against one baseline; `ratio` is always phalanx / baseline in `unit`.

    `better` says which way is good for the *figure* (memory: lower; rates: higher),
    and `limit` is the ratio the target allows (at most when lower is better, at least
    when higher is better).
    """

    key: str
    label: str
    unit: str
    baseline: str
    phalanx: float
    other: float
    ratio: float
    better: Literal["lower", "higher"]
    limit: float
    note: str
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The target as text, e.g. `>= 0.50x` or `<= 0.33x (3x lighter)`."""
        sign = "<=" if self.better == "lower" else ">="
        return f"{sign} {self.limit:.2f}x" + (f" ({self.note})" if self.note else "")

    @property
    def passed(self) -> bool:
        """Whether the target is met."""
        return self.ratio <= self.limit if self.better == "lower" else self.ratio >= self.limit

    def to_json(self) -> dict[str, Any]:
        """The `--json` schema of one figure."""
        return {
            "label": self.label,
            "unit": self.unit,
            "baseline": self.baseline,
            "phalanx": self.phalanx,
            "other": self.other,
            "ratio": self.ratio,
            "better": self.better,
            "target": self.target,
            "pass": self.passed,
            "samples": self.samples,
        }


def compare(
    key: str,
    label: str,
    unit: str,
    samples: dict[str, list[float]],
    baseline: str,
    *,
    better: Literal["lower", "higher"],
    limit: float,
    note: str = "",
    scale: float = 1.0,
) -> Comparison:
    """A figure from interleaved samples (`scale` converts units, e.g. bytes to KB)."""
    mine, other = samples["phalanx"], samples[baseline]
    return Comparison(
        key=key,
        label=label,
        unit=unit,
        baseline=baseline,
        phalanx=statistics.median(mine) * scale,
        other=statistics.median(other) * scale,
        ratio=paired_ratio(mine, other),
        better=better,
        limit=limit,
        note=note,
        samples={"phalanx": list(mine), baseline: list(other)},
    )


def progress(message: str) -> None:
    """Say what is being measured, on stderr so stdout stays the report."""
    print(f"... {message}", file=sys.stderr, flush=True)


async def pykka_status() -> tuple[str, str, str | None]:
    """(status, reason, version) of the optional pykka baseline."""
    try:
        pykka_module()
    except ImportError as error:
        return "skipped", f"pykka is not installed ({error}); pip install -e '.[bench]'", None
    return "ok", "", importlib.metadata.version("pykka")


async def run_figure(
    measures: dict[str, Measure], sizes: Sizes, with_pykka: bool
) -> dict[str, list[float]]:
    """Interleave the contenders (pykka only when it is there)."""
    if not with_pykka:
        measures = {name: fn for name, fn in measures.items() if name != "pykka"}
    return await interleaved(measures, sizes.repeats, warmup=sizes.warmup)


@dataclass
class Report:
    """Everything one run measured, with the context needed to compare runs."""

    quick: bool
    environment: dict[str, Any]
    figures: list[Comparison]
    pykka: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: environment, figures by key, pykka status."""
        return {
            "benchmark": "actors",
            "quick": self.quick,
            "environment": self.environment,
            "figures": {figure.key: figure.to_json() for figure in self.figures},
            "pykka": self.pykka,
            "all_targets_met": all(figure.passed for figure in self.figures),
        }

    def render(self, file: TextIO) -> None:
        """The human-readable report: context, the table, then every MISS spelled out."""
        env = self.environment
        print(
            f"phalanx actor benchmark{' (--quick)' if self.quick else ''}: medians of "
            f"{env['repeats']} interleaved rounds, ratio = phalanx / baseline (median of "
            "per-round ratios)",
            file=file,
        )
        print(
            f"python {env['python']}, {env['cpus']} cpus, {env['platform']}; "
            f"{env['idle_actors']:,} idle actors, {env['tells']:,} tells "
            f"({env['pykka_tells']:,} for pykka), {env['asks']:,} asks "
            f"({env['pykka_asks']:,} for pykka)",
            file=file,
        )
        print(file=file)
        rows = [
            [
                figure.label,
                figure.unit,
                format_number(figure.phalanx),
                figure.baseline,
                format_number(figure.other),
                f"{figure.ratio:.2f}x",
                figure.target,
                "PASS" if figure.passed else "MISS",
            ]
            for figure in self.figures
        ]
        headers = ["figure", "unit", "phalanx", "baseline", "baseline", "ratio", "target", "result"]
        print_table(headers, rows, file=file)
        print(file=file)
        if self.pykka["status"] == "ok":
            print(f"pykka {self.pykka['version']}", file=file)
        else:
            print(f"pykka: {self.pykka['status']} ({self.pykka['reason']})", file=file)
        for figure in self.figures:
            if not figure.passed:
                print(
                    f"MISS: {figure.label} vs {figure.baseline}: {figure.ratio:.2f}x, "
                    f"target {figure.target}",
                    file=file,
                )


IDLE: dict[str, Callable[[int], Awaitable[Callable[[], Awaitable[None]]]]] = {
    "phalanx": phalanx_idle,
    "task+queue": raw_idle,
    "pykka": pykka_idle,
}


def rss_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def probe_rss(kind: str, n: int) -> float:
    """In a fresh process: RSS growth per idle entity (native memory and stacks too)."""
    warm = await IDLE[kind](10)  # first-use allocations (imports, caches) are not per actor
    await warm()
    gc.collect()
    before = rss_bytes()
    teardown = await IDLE[kind](n)
    gc.collect()
    after = rss_bytes()
    await teardown()
    return (after - before) / n


def measure_rss(kind: str, n: int) -> Measure:
    """A measure that runs `probe_rss` in a fresh interpreter, so no freed memory is reused."""

    async def measure() -> float:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            SCRIPT,
            "--probe-rss",
            kind,
            str(n),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"RSS probe for {kind} failed: {err.decode().strip()[-300:]}")
        return float(json.loads(out)["bytes_per"])

    return measure


async def memory_figures(
    method: Literal["tracemalloc", "rss"], sizes: Sizes, with_pykka: bool
) -> tuple[list[Comparison], str]:
    """The two idle-memory figures by one method, and why pykka is missing if it is."""
    n = sizes.idle_actors
    make = measure_memory if method == "tracemalloc" else measure_rss
    names = ["phalanx", "task+queue"] + (["pykka"] if with_pykka else [])
    rounds = dataclasses.replace(sizes, repeats=min(sizes.repeats, 3), warmup=0)
    problem = ""
    try:
        samples = await run_figure(
            {name: make(name, n) for name in names},
            rounds,
            with_pykka,
        )
    except RuntimeError as error:  # e.g. "can't start new thread" for 10,000 pykka threads
        if not with_pykka:
            raise
        problem = f"idle pykka actors ({method}): {error}"
        samples = await run_figure(
            {name: make(name, n) for name in names[:2]},
            rounds,
            False,
        )
    label = f"idle actor memory ({method})"
    figures = [
        compare(
            f"memory.{method}.raw",
            label,
            "KB/actor",
            samples,
            "task+queue",
            better="lower",
            limit=2.0,
            scale=1 / 1024,
        )
    ]
    if "pykka" in samples:
        figures.append(
            compare(
                f"memory.{method}.pykka",
                label,
                "KB/actor",
                samples,
                "pykka",
                better="lower",
                limit=1 / 3,
                note="3x lighter",
                scale=1 / 1024,
            )
        )
    return figures, problem


async def run(sizes: Sizes, quick: bool) -> Report:
    """Measure every figure in turn."""
    status, reason, version = await pykka_status()
    with_pykka = status == "ok"
    figures: list[Comparison] = []
    problems: list[str] = []

    for method in ("tracemalloc", "rss"):
        if method == "rss" and not HAVE_STATM:
            problems.append("rss: /proc/self/statm is missing (not Linux); figure skipped")
            continue
        progress(f"idle memory ({method}), {sizes.idle_actors:,} of each")
        found, problem = await memory_figures(method, sizes, with_pykka)
        figures += found
        if problem:
            problems.append(problem)

    progress(f"tell throughput, {sizes.tells:,} messages")
    tells = await run_figure(
        {
            "phalanx": functools.partial(phalanx_tells, sizes.tells),
            "queue": functools.partial(raw_tells, sizes.tells),
            "pykka": functools.partial(pykka_tells, sizes.pykka_tells),
        },
        sizes,
        with_pykka,
    )
    figures.append(
        compare("tell.raw", "tell throughput", "msg/s", tells, "queue", better="higher", limit=0.5)
    )
    if "pykka" in tells:
        figures.append(
            compare(
                "tell.pykka", "tell throughput", "msg/s", tells, "pykka", better="higher", limit=5.0
            )
        )

    progress(f"ask round trips, {sizes.asks:,} asks")
    asks = await run_figure(
        {
            "phalanx": functools.partial(phalanx_asks, sizes.asks),
            "ping-pong": functools.partial(raw_asks, sizes.asks),
            "pykka": functools.partial(pykka_asks, sizes.pykka_asks),
        },
        sizes,
        with_pykka,
    )
    figures.append(
        compare(
            "ask.raw", "ask round trips", "asks/s", asks, "ping-pong", better="higher", limit=0.5
        )
    )
    if "pykka" in asks:
        figures.append(
            compare(
                "ask.pykka", "ask round trips", "asks/s", asks, "pykka", better="higher", limit=2.0
            )
        )

    if problems and status == "ok":
        status = "incomplete"
    environment = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "repeats": sizes.repeats,
        "idle_actors": sizes.idle_actors,
        "tells": sizes.tells,
        "asks": sizes.asks,
        "pykka_tells": sizes.pykka_tells,
        "pykka_asks": sizes.pykka_asks,
        "capacity": CAPACITY,
    }
    reasons = "; ".join([r for r in [reason, *problems] if r])
    return Report(
        quick, environment, figures, {"status": status, "reason": reasons, "version": version}
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; 0 even when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: less work, noisier")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--probe-rss", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe_rss:
        kind, n = args.probe_rss
        print(json.dumps({"bytes_per": asyncio.run(probe_rss(kind, int(n)))}))
        return 0
    sizes = QUICK if args.quick else FULL
    report = asyncio.run(run(sizes, args.quick))
    report.render(sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
