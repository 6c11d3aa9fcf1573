"""Scale-out benchmark: `phalanx worker` processes on one PostgreSQL, 1 to 4 of them.

Run it as `.venv/bin/python benchmarks/scale.py [--quick] [--json]`.

1. Throughput: RUNS short durable runs (10 no-op steps each) are submitted, then
   released at once to 1, 2 and 4 worker processes (each `--concurrency C`); the
   figure is steps/s until the last run completed, and steps/s per worker.
   Baseline, measured in the same run on the same server: one process running the
   same runs in-process (`Runtime.run`, C at a time), no queue, no claims.
2. Where it saturates, with the evidence: CPU seconds used during each window by the
   worker processes and by every `postgres` process on the machine (from /proc),
   next to the machine's cores, and the journal appends per second.
3. Takeover latency after SIGKILL: a worker holding a long run is SIGKILLed; the
   time until another worker's first write to it, against the target lease TTL + 1 s.
4. The same throughput with SQLite and one worker, for comparison.
5. Fan-out of child runs: PARENTS runs each fan out to WIDTH child runs of one step
   that waits (a model call's latency), submitted to 1, 2 and 4 workers at
   `--concurrency C`; every child is queued for any worker and a waiting parent holds
   no slot. The figure is children/s until the last parent completed, and its ratio to
   one worker. Baseline, in the same run: the same parents run in one process
   (`Runtime.run`, C at a time, children in-process, so not bound by worker slots).

The PostgreSQL server is $PHALANX_BENCH_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test), each measurement in a schema of its own.
It is shared: other load on it shows in the postgres CPU column. The script exits 0
even when a target is missed (a report, not a gate); with `--json` the table goes to
stderr and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._scale_workflows import fan, long, noop
from benchmarks._util import print_table
from phalanx import Runtime, open_runtime, store_from_url

ROOT = Path(__file__).resolve().parent.parent
PHALANX = str(Path(sys.executable).with_name("phalanx"))
POSTGRES_ENV = "PHALANX_BENCH_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
STEPS_PER_RUN = 10


@dataclass
class Window:
    """One throughput measurement."""

    label: str
    workers: int
    runs: int
    seconds: float
    steps_per_s: float
    steps_per_s_per_worker: float
    worker_cpu: float  # cores busy in worker processes (CPU seconds / wall seconds)
    postgres_cpu: float  # cores busy in every postgres process on the machine
    appends_per_s: float


@dataclass
class FanWindow:
    """One fan-out measurement."""

    label: str
    workers: int
    parents: int
    children: int
    seconds: float
    children_per_s: float


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _postgres_ticks() -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += _ticks(int(entry.name))
            except OSError:
                continue
    return total


TICK = os.sysconf("SC_CLK_TCK")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    return out


def pg_url(schema: str) -> str:
    base = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


async def drop(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    import asyncpg

    base, schema = url.split("?", 1)[0], url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def spawn_workers(url: str, n: int, concurrency: int, queue: str, ttl: float) -> list[Any]:
    procs = []
    for _ in range(n):
        argv = [PHALANX, "worker", "--store", url, "--concurrency", str(concurrency)]
        argv += ["--queue", queue, "--poll", "0.2", "--lease-ttl", str(ttl)]
        procs.append(subprocess.Popen(argv, env=env(), stderr=subprocess.DEVNULL))
    return procs


def stop_workers(procs: list[Any]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def until(check: Callable[[], Awaitable[bool]], interval: float = 0.05) -> None:
    """Poll `check` (other processes change what it reads) until it holds."""
    while True:
        if await check():
            return
        await asyncio.sleep(interval)


async def _at_least(value: Awaitable[int], n: int) -> bool:
    return await value >= n


async def _count_at_least(items: Awaitable[list[Any]], n: int) -> bool:
    return len(await items) >= n


async def completed(rt: Runtime) -> int:
    return len(await rt.runs(status="completed"))


async def throughput(url: str, n_workers: int, runs: int, concurrency: int, label: str) -> Window:
    """Submit `runs` held back, start the workers, release the runs, time them all."""
    async with open_runtime(url) as rt:
        for _ in range(runs):
            await rt.submit(noop, {"count": STEPS_PER_RUN}, queue="held")
        work = await rt.work_queue()
        procs = spawn_workers(url, n_workers, concurrency, "go", 15.0)
        try:
            await until(lambda: _count_at_least(work.workers(), n_workers))
            head = await rt.store.head_position()
            cpu0 = sum(_ticks(p.pid) for p in procs)
            pg0 = _postgres_ticks()
            start = time.perf_counter()
            await _release(rt, url)
            await work.notify()
            await until(lambda: _at_least(completed(rt), runs))
            seconds = time.perf_counter() - start
            cpu = (sum(_ticks(p.pid) for p in procs) - cpu0) / TICK
            pg = (_postgres_ticks() - pg0) / TICK
            appends = await _appends(rt, head)
        finally:
            stop_workers(procs)
    total = runs * STEPS_PER_RUN
    return Window(
        label,
        n_workers,
        runs,
        seconds,
        total / seconds,
        total / seconds / n_workers,
        cpu / seconds,
        pg / seconds,
        appends / seconds,
    )


async def _release(rt: Runtime, url: str) -> None:
    """Move the held runs to the workers' queue in one statement."""
    if url.startswith("postgresql"):
        import asyncpg

        base, schema = url.split("?", 1)[0], url.rsplit("schema=", 1)[1]
        conn = await asyncpg.connect(base, server_settings={"search_path": schema})
        try:
            await conn.execute("UPDATE work_queue SET queue = 'go' WHERE queue = 'held'")
        finally:
            await conn.close()
    else:
        import sqlite3

        conn = sqlite3.connect(url.split("sqlite:///", 1)[1], isolation_level=None)
        try:
            conn.execute("UPDATE work_queue SET queue = 'go' WHERE queue = 'held'")
        finally:
            conn.close()


async def _appends(rt: Runtime, after: int) -> int:
    """Appends (transactions) since `after`: distinct (stream, recorded_at) batches."""
    count = 0
    seen: set[tuple[str, float]] = set()
    while page := await rt.store.read_all(after=after, limit=5000):
        for event in page:
            key = (event.stream_id, event.recorded_at)
            if key not in seen:
                seen.add(key)
                count += 1
        after = page[-1].position
    return count


async def in_process(url: str, runs: int, concurrency: int) -> Window:
    """The baseline: one process, `Runtime.run` of the same runs, `concurrency` at a time."""
    async with open_runtime(url) as rt:
        head = await rt.store.head_position()
        gate = asyncio.Semaphore(concurrency)
        cpu0 = _ticks(os.getpid())
        pg0 = _postgres_ticks()
        start = time.perf_counter()

        async def one() -> None:
            async with gate:
                await rt.run(noop, {"count": STEPS_PER_RUN})

        async with asyncio.TaskGroup() as group:
            for _ in range(runs):
                group.create_task(one())
        seconds = time.perf_counter() - start
        cpu = (_ticks(os.getpid()) - cpu0) / TICK
        pg = (_postgres_ticks() - pg0) / TICK
        appends = await _appends(rt, head)
    total = runs * STEPS_PER_RUN
    return Window(
        "in-process baseline",
        1,
        runs,
        seconds,
        total / seconds,
        total / seconds,
        cpu / seconds,
        pg / seconds,
        appends / seconds,
    )


@dataclass(frozen=True)
class FanShape:
    """The fan-out scenario: `parents` runs of `width` children, each waiting `seconds`."""

    parents: int
    width: int
    seconds: float
    concurrency: int

    def inputs(self) -> dict[str, Any]:
        return {"width": self.width, "seconds": self.seconds}

    def window(self, label: str, workers: int, seconds: float) -> FanWindow:
        children = self.parents * self.width
        return FanWindow(label, workers, self.parents, children, seconds, children / seconds)


async def _ended(rt: Runtime, run_ids: list[str]) -> bool:
    return all([(await rt.history(r)).terminal for r in run_ids])


async def fan_out(url: str, n_workers: int, shape: FanShape) -> FanWindow:
    """Start the workers, then submit the parents; time until every parent completed.

    Submitted after the workers are up (not held back and released like the runs of
    `throughput`): a child goes to the queue its parent was submitted to.
    """
    async with open_runtime(url) as rt:
        work = await rt.work_queue()
        procs = spawn_workers(url, n_workers, shape.concurrency, "fan", 15.0)
        try:
            await until(lambda: _count_at_least(work.workers(), n_workers))
            start = time.perf_counter()
            ids = [await rt.submit(fan, shape.inputs(), queue="fan") for _ in range(shape.parents)]
            await until(lambda: _ended(rt, ids), interval=0.1)
            seconds = time.perf_counter() - start
        finally:
            stop_workers(procs)
    return shape.window(f"fan-out, {n_workers} worker(s)", n_workers, seconds)


async def fan_in_process(url: str, shape: FanShape) -> FanWindow:
    """The fan-out baseline: the same parents in one process, `concurrency` at a time."""
    async with open_runtime(url) as rt:
        gate = asyncio.Semaphore(shape.concurrency)
        start = time.perf_counter()

        async def one() -> None:
            async with gate:
                await rt.run(fan, shape.inputs())

        async with asyncio.TaskGroup() as group:
            for _ in range(shape.parents):
                group.create_task(one())
        seconds = time.perf_counter() - start
    return shape.window("fan-out, in-process baseline", 1, seconds)


async def takeover(url: str, ttl: float) -> float:
    """Seconds from SIGKILL of a run's worker to another worker's first write to it."""
    async with open_runtime(url) as rt:
        run_id = await rt.submit(long, {"count": 400, "seconds": 0.05}, queue="t")
        procs = spawn_workers(url, 1, 1, "t", ttl)
        first = procs[0]
        try:
            await until(lambda: _at_least(rt.store.stream_version(f"run:{run_id}"), 3))
            procs += spawn_workers(url, 1, 1, "t", ttl)
            work = await rt.work_queue()
            await until(lambda: _count_at_least(work.workers(), 2))
            first.kill()
            killed = time.time()
            first.wait()
            while True:
                events = await rt.store.read_stream(f"run:{run_id}")
                taken = [e for e in events if e.epoch is not None and e.epoch >= 2]
                if taken:
                    break
                await asyncio.sleep(0.02)
            latency = taken[0].recorded_at - killed
        finally:
            stop_workers(procs)
    return latency


async def measure(quick: bool) -> dict[str, Any]:
    runs = 20 if quick else 200
    concurrency = 4 if quick else 8
    counts = (1, 2) if quick else (1, 2, 4)
    ttl = 1.0 if quick else 3.0
    repeats = 1 if quick else 3
    windows: list[Window] = []

    async def fresh(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tempfile.mkdtemp(prefix='phalanx-scale-')}/journal.db"
        url = pg_url(f"scale_{secrets.token_hex(4)}")
        async with store_from_url(url):
            pass
        return url

    url = await fresh("postgres")
    try:
        windows.append(await in_process(url, runs, concurrency))
    finally:
        await drop(url)
    for n in counts:
        url = await fresh("postgres")
        try:
            windows.append(await throughput(url, n, runs, concurrency, f"postgres, {n} worker(s)"))
        finally:
            await drop(url)
    url = await fresh("sqlite")
    windows.append(await throughput(url, 1, runs, concurrency, "sqlite, 1 worker"))
    # Enough waiting per slot (64 children of 0.5 s on 4 slots a worker: 8 s on one) that
    # the work, not the claim and hand-back latencies, sets the time.
    shape = FanShape(
        parents=2 if quick else 4,
        width=4 if quick else 16,
        seconds=0.05 if quick else 0.5,
        concurrency=4,
    )
    fans: list[FanWindow] = []
    url = await fresh("postgres")
    try:
        fans.append(await fan_in_process(url, shape))
    finally:
        await drop(url)
    for n in counts:
        url = await fresh("postgres")
        try:
            fans.append(await fan_out(url, n, shape))
        finally:
            await drop(url)
    latencies = []
    for _ in range(repeats):
        url = await fresh("postgres")
        try:
            latencies.append(await takeover(url, ttl))
        finally:
            await drop(url)
    return {
        "cores": os.cpu_count(),
        "runs": runs,
        "steps_per_run": STEPS_PER_RUN,
        "concurrency": concurrency,
        "windows": [asdict(w) for w in windows],
        "fanout": {**asdict(shape), "windows": [asdict(w) for w in fans]},
        "takeover": {
            "lease_ttl": ttl,
            "target_s": ttl + 1.0,
            "seconds": latencies,
            "median_s": statistics.median(latencies),
            "pass": statistics.median(latencies) <= ttl + 1.0,
        },
    }


def report(result: dict[str, Any], file: Any) -> None:
    rows = [
        [
            w["label"],
            f"{w['seconds']:.2f}",
            f"{w['steps_per_s']:.0f}",
            f"{w['steps_per_s_per_worker']:.0f}",
            f"{w['worker_cpu']:.2f}",
            f"{w['postgres_cpu']:.2f}",
            f"{w['appends_per_s']:.0f}",
        ]
        for w in result["windows"]
    ]
    headers = ["setup", "s", "steps/s", "per worker", "worker cores", "pg cores", "appends/s"]
    print_table(headers, rows, file=file)
    fan = result["fanout"]
    one = next(w for w in fan["windows"] if w["workers"] == 1 and "baseline" not in w["label"])
    rows = [
        [
            w["label"],
            f"{w['seconds']:.2f}",
            f"{w['children_per_s']:.1f}",
            f"{w['children_per_s'] / one['children_per_s']:.2f}x",
        ]
        for w in fan["windows"]
    ]
    print(
        f"fan-out: {fan['parents']} parents x {fan['width']} child runs, one {fan['seconds']}s "
        f"step each, --concurrency {fan['concurrency']}",
        file=file,
    )
    print_table(["setup", "s", "children/s", "vs 1 worker"], rows, file=file)
    t = result["takeover"]
    print(
        f"takeover after SIGKILL: median {t['median_s']:.2f}s (target <= {t['target_s']:.1f}s, "
        f"lease TTL {t['lease_ttl']:.1f}s) {'PASS' if t['pass'] else 'MISS'}; "
        f"machine cores: {result['cores']}",
        file=file,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    args = parser.parse_args()
    result = asyncio.run(measure(args.quick))
    report(result, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
