"""Memory benchmark: compare-and-set, snapshots and recall against the plain append floor.

Run it as `.venv/bin/python benchmarks/memory.py [--quick] [--json] [--dir DIR]`. SQLite.

The floor is a plain durable append: `store.append` of the same value, with
`expected_version`, on the same store, measured in interleaved rounds with what is
compared to it (see `_util`), so the noise of a shared machine hits both alike.

1. An uncontended compare-and-set (`cas` through a manager in this process; read
   the version, decide, append under the lease epoch, fold): at most 2x the append.
   The same through the request stream (another connection, as another process
   would) is reported without a target: it is a request append, a poll by the
   manager, an outcome append and a poll by the client.
2. `update(key, fn)` with 1, 4 and 16 writers on one key, each its own connection
   through the request stream: updates/s and the conflict rate (conflicts per
   attempt), against as many tasks appending to one stream (reported, no target).
3. Reading a pinned snapshot (pin + 10 reads, projection warm) with 1k, 10k and 100k
   versions in the memory: the cost at N against the cost at 1k (at most 2x: the
   read cost does not grow with history). The one-off cost of folding the history
   into a cold projection is reported beside it.
4. Full-text recall over 100k entries in SQLite FTS5: the p95 of a two-word query
   (target under 20 ms), against the same FTS5 query through raw sqlite3.

Exits 0 even when a target is missed: a report, not a gate. With `--json` the table
goes to stderr and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._util import Figure, interleaved, print_figures, print_table, stopwatch
from phalanx.journal import EventStore, NewEvent, store_from_url
from phalanx.memory import (
    Document,
    Memory,
    Recall,
    SqliteFullText,
    memory_stream,
    open_memory_manager,
)


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    repeats: int
    cas_ops: int
    remote_ops: int
    updates_per_writer: int
    versions: tuple[int, ...]
    snapshot_reads: int
    fts_entries: int
    fts_queries: int


FULL = Sizes(9, 300, 60, 25, (1_000, 10_000, 100_000), 200, 100_000, 400)
QUICK = Sizes(3, 40, 10, 4, (500, 1_000, 2_000), 20, 3_000, 40)

VALUE = {"plan": ["read the sources", "draft", "fact-check"], "owner": "planner", "step": 3}


async def open_store(directory: Path, name: str) -> EventStore:
    store = store_from_url(f"sqlite:///{directory / name}")
    await store.open()
    return store


async def cas_vs_append(directory: Path, sizes: Sizes) -> list[Figure]:
    """Figure 1: uncontended CAS (in process, and via requests) against the plain append."""
    store = await open_store(directory, "cas.db")
    client_store = await open_store(directory, "cas.db")
    figures = []
    try:
        async with open_memory_manager(store, "bench", poll=0.002) as manager:
            local = Memory(store, "bench", manager=manager).linearizable()
            remote = Memory(client_store, "bench").linearizable()
            versions = {"local": 0, "remote": 0, "raw": 0}

            async def cas_ops(handle: Any, key: str, ops: int) -> float:
                with stopwatch() as elapsed:
                    for _ in range(ops):
                        written = await handle.cas(key, VALUE, based_on=versions[key])
                        versions[key] = written.version
                return elapsed() / ops * 1e6

            async def appends(ops: int) -> float:
                with stopwatch() as elapsed:
                    for _ in range(ops):
                        result = await store.append(
                            "floor",
                            [NewEvent("MemoryWritten", {"key": "raw", "value": VALUE})],
                            expected_version=versions["raw"],
                        )
                        versions["raw"] = result.version
                return elapsed() / ops * 1e6

            samples = await interleaved(
                {
                    "phalanx": lambda: cas_ops(local, "local", sizes.cas_ops),
                    "raw": lambda: appends(sizes.cas_ops),
                },
                sizes.repeats,
            )
            figures.append(
                Figure.from_samples(
                    "cas.uncontended",
                    "uncontended CAS, manager in process",
                    "µs/op",
                    samples,
                    better="lower",
                    limit=2.0,
                )
            )
            samples = await interleaved(
                {
                    "phalanx": lambda: cas_ops(remote, "remote", sizes.remote_ops),
                    "raw": lambda: appends(sizes.remote_ops),
                },
                sizes.repeats,
            )
            figures.append(
                Figure.from_samples(
                    "cas.request_stream",
                    "uncontended CAS via the request stream",
                    "µs/op",
                    samples,
                    better="lower",
                )
            )
    finally:
        await store.close()
        await client_store.close()
    return figures


async def contention(directory: Path, sizes: Sizes) -> tuple[list[Figure], list[list[str]]]:
    """Figure 2: updates/s and conflict rate with 1, 4 and 16 writers on one key."""
    figures, rows = [], []
    for writers in (1, 4, 16):
        store = await open_store(directory, f"contention-{writers}.db")
        clients = [await open_store(directory, f"contention-{writers}.db") for _ in range(writers)]
        try:
            async with open_memory_manager(store, "c", poll=0.002) as manager:
                await Memory(store, "c", manager=manager).linearizable().cas("n", 0, based_on=0)
                handles = [
                    Memory(c, "c", agent=f"w{i}").linearizable() for i, c in enumerate(clients)
                ]

                async def updates(handles: list[Any] = handles, writers: int = writers) -> float:
                    async def one(handle: Any) -> None:
                        for _ in range(sizes.updates_per_writer):
                            await handle.update("n", lambda n: n + 1, max_attempts=100_000)

                    with stopwatch() as elapsed:
                        async with asyncio.TaskGroup() as group:
                            for handle in handles:
                                group.create_task(one(handle))
                    return writers * sizes.updates_per_writer / elapsed()

                async def floor(
                    clients: list[EventStore] = clients, writers: int = writers
                ) -> float:
                    async def one(client: EventStore) -> None:
                        for _ in range(sizes.updates_per_writer):
                            await client.append("floor", [NewEvent("Appended", {"value": VALUE})])
                            await asyncio.sleep(0)

                    with stopwatch() as elapsed:
                        async with asyncio.TaskGroup() as group:
                            for client in clients:
                                group.create_task(one(client))
                    return writers * sizes.updates_per_writer / elapsed()

                samples = await interleaved(
                    {"phalanx": updates, "raw": floor}, max(3, sizes.repeats // 3)
                )
                state = manager.state
                rate = state.conflicts / max(1, state.conflicts + state.writes - 1)
        finally:
            await store.close()
            for client in clients:
                await client.close()
        figure = Figure.from_samples(
            f"update.writers_{writers}",
            f"update(key, fn), {writers} writer(s) on one key (updates/s)",
            "ops/s",
            samples,
            better="higher",
        )
        figures.append(figure)
        rows.append([str(writers), f"{figure.phalanx:,.0f}", f"{figure.raw:,.0f}", f"{rate:.1%}"])
    return figures, rows


def written_event(key: str, version: int) -> NewEvent:
    """A manager's `MemoryWritten`, for filling a memory's history fast (no lease)."""
    data = {
        "request": f"fill-{key}-{version}",
        "key": key,
        "based_on": version - 1,
        "version": version,
        "value": {**VALUE, "version": version},
        "mode": "cas",
        "author": {"agent": "filler", "run": None},
    }
    return NewEvent("MemoryWritten", data)


async def fill(store: EventStore, name: str, versions: int, keys: int = 100) -> None:
    batch: list[NewEvent] = []
    for i in range(versions):
        batch.append(written_event(f"k{i % keys}", i // keys + 1))
        if len(batch) == 1000:
            await store.append(memory_stream(name), batch)
            batch = []
    if batch:
        await store.append(memory_stream(name), batch)


async def snapshots(directory: Path, sizes: Sizes) -> tuple[list[Figure], list[list[str]]]:
    """Figure 3: a pinned snapshot's read cost at 1k/10k/100k versions, against 1k."""
    stores = {}
    cold = {}
    memories = {}
    for versions in sizes.versions:
        store = await open_store(directory, f"snap-{versions}.db")
        await fill(store, "m", versions)
        memory = Memory(store, "m")
        with stopwatch() as elapsed:
            await memory.snapshot()  # folds the whole history into a cold projection
        stores[versions], memories[versions], cold[versions] = store, memory, elapsed()

    async def read(versions: int) -> float:
        memory = memories[versions]
        with stopwatch() as elapsed:
            for i in range(sizes.snapshot_reads):
                snapshot = await memory.snapshot()
                for k in range(10):
                    await snapshot.read(f"k{(i + k) % 100}")
        return elapsed() / sizes.snapshot_reads * 1e3

    figures, rows = [], []
    smallest = sizes.versions[0]
    try:
        for versions in sizes.versions:
            samples = await interleaved(
                {"phalanx": lambda v=versions: read(v), "raw": lambda: read(smallest)},
                sizes.repeats,
            )
            figure = Figure.from_samples(
                f"snapshot.read_{versions}",
                f"snapshot pin + 10 reads at {versions:,} versions, vs {smallest:,}",
                "ms",
                samples,
                better="lower",
                limit=2.0,
            )
            figures.append(figure)
            rows.append([f"{versions:,}", f"{figure.phalanx:.3f}", f"{cold[versions]:.3f}"])
    finally:
        for store in stores.values():
            await store.close()
    return figures, rows


VOCABULARY = [f"w{i}" for i in range(5_000)]


async def recall(directory: Path, sizes: Sizes) -> tuple[list[Figure], dict[str, float]]:
    """Figure 4: FTS5 recall p95 over 100k entries, against the raw FTS5 query."""
    rng = random.Random(7)
    index = SqliteFullText(directory / "recall.db")
    try:
        batch: list[Document] = []
        for i in range(sizes.fts_entries):
            text = " ".join(rng.choices(VOCABULARY, k=12))
            batch.append(Document(f"doc{i}", 1, text))
            if len(batch) == 5000:
                await index.upsert("m", batch, i)
                batch = []
        if batch:
            await index.upsert("m", batch, sizes.fts_entries)
        queries = [" ".join(rng.choices(VOCABULARY, k=2)) for _ in range(sizes.fts_queries)]
        searcher = Recall(index)
        raw = sqlite3.connect(directory / "recall.db")
        sql = (
            "SELECT key, version, rank, substr(text, 1, 200) FROM recall "
            "WHERE recall MATCH ? AND memory = ? ORDER BY rank LIMIT 5"
        )

        async def ours() -> list[float]:
            latencies = []
            for query in queries:
                start = time.perf_counter()
                await searcher.search("m", query)
                latencies.append(time.perf_counter() - start)
            return latencies

        async def theirs() -> list[float]:
            latencies = []
            for query in queries:
                start = time.perf_counter()
                match = " OR ".join(f'"{w}"' for w in query.split())
                raw.execute(sql, (match, "m")).fetchall()
                latencies.append(time.perf_counter() - start)
            return latencies

        def p95(values: Sequence[float]) -> float:
            return statistics.quantiles(values, n=20)[-1]

        mine_all: list[float] = []
        raw_all: list[float] = []
        await ours()  # warm the page cache for both
        samples: dict[str, list[float]] = {"phalanx": [], "raw": []}
        for round_ in range(sizes.repeats):
            first, second = (ours, theirs) if round_ % 2 == 0 else (theirs, ours)
            for fn in (first, second):
                values = await fn()
                side = "phalanx" if fn is ours else "raw"
                samples[side].append(p95(values) * 1e3)
                (mine_all if fn is ours else raw_all).extend(values)
        raw.close()
    finally:
        index.close()
    figure = Figure.from_samples(
        "recall.fts_p95",
        f"FTS5 recall p95 over {sizes.fts_entries:,} entries",
        "ms",
        samples,
        better="lower",
    )
    absolute = {"p95_ms": figure.phalanx, "target_ms": 20.0, "pass": figure.phalanx < 20.0}
    return [figure], absolute


async def run(directory: Path, sizes: Sizes, out: Any) -> dict[str, Any]:
    figures = await cas_vs_append(directory, sizes)
    contention_figures, contention_rows = await contention(directory, sizes)
    snapshot_figures, snapshot_rows = await snapshots(directory, sizes)
    recall_figures, fts = await recall(directory, sizes)
    figures += contention_figures + snapshot_figures + recall_figures
    print_figures(figures, file=out)
    print(file=out)
    print_table(
        ["writers", "updates/s", "floor appends/s", "conflict rate"], contention_rows, file=out
    )
    print(file=out)
    print_table(["versions", "pinned read ms", "cold fold s"], snapshot_rows, file=out)
    verdict = "PASS" if fts["pass"] else "MISS"
    print(f"\nFTS p95 {fts['p95_ms']:.2f} ms (target < 20 ms): {verdict}", file=out)
    return {
        "figures": {f.key: f.to_json() for f in figures},
        "contention": [
            {"writers": int(r[0]), "conflict_rate": float(r[3].rstrip("%")) / 100}
            for r in contention_rows
        ],
        "fts": fts,
        "all_targets_met": all(f.passed is not False for f in figures) and fts["pass"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: less work, noisier")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    out = sys.stderr if args.json else sys.stdout
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        report = asyncio.run(run(Path(scratch), sizes, out))
    report["quick"] = args.quick
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
