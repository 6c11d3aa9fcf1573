"""Journal benchmark: phalanx's event stores against raw sqlite3 and asyncpg, in one run.

Run it as `.venv/bin/python benchmarks/journal.py [--quick] [--json] [--dir DIR]`.

Every figure is phalanx / raw, from interleaved rounds (see `_util`), so the noise of a
shared machine hits both sides alike:

1. appending one event per transaction, checking `expected_version` as a real writer
   does, at synchronous=NORMAL and FULL (target: at most 1.5x raw latency);
2. appending 100-event batches (target: at least 0.70x raw rows/s);
3. reading one 10,000-event stream (target: at most 2x raw time);
4. the same three on PostgreSQL ($PHALANX_BENCH_POSTGRES, default
   postgresql://postgres@127.0.0.1:5432/test), or skipped with the reason when the
   server or the backend is not there; one-event appends with a target (at most 1.5x
   raw asyncpg latency);
5. 4 writers appending to different PostgreSQL streams at once, against 1 writer in
   the same run (target: at least 3x the appends/s): appends are not serialised.

The raw baselines do the least any journal on the same table must do: encode the data
as JSON, insert it under the same pragmas and UNIQUE (stream_id, seq) index, and decode
the JSON on read. They check no versions or leases and build no `Event` objects; that
difference is exactly the overhead being measured.

The script exits 0 even when a target is missed: it is a report, not a gate. With
`--json` the table goes to stderr and stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._util import Figure, interleaved, print_figures, stopwatch
from phalanx.journal import EventStore, NewEvent, SqliteEventStore, store_from_url

if TYPE_CHECKING:
    import asyncpg

POSTGRES_ENV = "PHALANX_BENCH_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

Synchronous = Literal["normal", "full"]


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    repeats: int
    appends: dict[Synchronous, int]
    batches: int
    read_events: int
    reads: int
    pg_appends: int
    pg_batches: int
    batch_size: int = 100
    warmup_appends: int = 50


FULL = Sizes(
    repeats=9,
    appends={"normal": 2000, "full": 400},
    batches=50,
    read_events=10_000,
    reads=3,
    pg_appends=500,
    pg_batches=30,
)
QUICK = Sizes(
    repeats=5,
    appends={"normal": 200, "full": 30},
    batches=5,
    read_events=1000,
    reads=2,
    pg_appends=50,
    pg_batches=3,
    warmup_appends=10,
)

EVENT_TYPE = "StepCompleted"
READ_STREAM = "run-read"
NOISE_STREAM = "run-noise"
_TEXT = (
    "The journal records every model call and tool result, so a run that crashed "
    "resumes where it stopped without repeating a side effect."
)


def payload(i: int) -> dict[str, Any]:
    """A typical step-result event: a few scalars and ~150 characters of model text."""
    return {
        "step": i,
        "agent": "researcher",
        "status": "ok",
        "tokens": {"input": 812, "output": 96},
        "text": _TEXT,
    }


def raw_row(stream_id: str, seq: int, data: dict[str, Any]) -> tuple[Any, ...]:
    """An insert row as a hand-written journal builds it, JSON encoding included."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (stream_id, seq, EVENT_TYPE, text, None, time.time(), None, None, None, None, None)


_COLUMNS = (
    "stream_id",
    "seq",
    "type",
    "data",
    "epoch",
    "recorded_at",
    "run_id",
    "agent_id",
    "parent_id",
    "trace_id",
    "span_id",
)
_ALL_COLUMNS = "position, " + ", ".join(_COLUMNS)


class Scratch:
    """Fresh temporary directories under one base, one per measurement."""

    def __init__(self, base: str | None) -> None:
        self.base = Path(base or tempfile.gettempdir())

    @contextmanager
    def fresh(self) -> Iterator[Path]:
        """A new empty directory, removed with everything in it afterwards."""
        with tempfile.TemporaryDirectory(prefix="phalanx-bench-", dir=self.base) as path:
            yield Path(path)


async def populate_store(store: EventStore, count: int) -> None:
    """Write `count` events to READ_STREAM, interleaved in 500-event batches with as
    many on NOISE_STREAM, so the read must use the index rather than scan one run."""
    for stream_id in (READ_STREAM, NOISE_STREAM):
        if await store.stream_version(stream_id):
            raise RuntimeError(f"{stream_id} is not empty")
    for start in range(0, count, 500):
        batch = [NewEvent(EVENT_TYPE, payload(i)) for i in range(start, min(start + 500, count))]
        for stream_id in (READ_STREAM, NOISE_STREAM):
            await store.append(stream_id, batch, expected_version=start)


def raw_rows_for_read(count: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows `populate_store` writes, in the same batches and order."""
    for start in range(0, count, 500):
        for stream_id in (READ_STREAM, NOISE_STREAM):
            yield [
                raw_row(stream_id, i + 1, payload(i)) for i in range(start, min(start + 500, count))
            ]


def check_count(what: str, got: int, want: int) -> None:
    """Refuse a measurement that did not do the work it claims to have timed."""
    if got != want:
        raise RuntimeError(f"{what} returned {got} events, expected {want}")


# -- SQLite ----------------------------------------------------------------------------

# The events table of phalanx's first SQLite migration, column for column, with only
# the UNIQUE (stream_id, seq) index a journal cannot do without: any further index
# phalanx keeps (events_by_type, for one) is charged to phalanx as overhead.
SQLITE_EVENTS_DDL = """
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
SQLITE_INSERT = f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * 11)})"
SQLITE_SELECT = f"SELECT {_ALL_COLUMNS} FROM events WHERE stream_id = ? ORDER BY seq"


def raw_sqlite(path: Path, synchronous: Synchronous, *, create: bool) -> sqlite3.Connection:
    """A plain autocommit connection with the pragmas phalanx sets on its own."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    if create:
        conn.execute(SQLITE_EVENTS_DDL)
    return conn


async def sqlite_append_latency(scratch: Scratch, sizes: Sizes, synchronous: Synchronous) -> Figure:
    """Microseconds per single-event append, each its own write transaction."""
    n, warm = sizes.appends[synchronous], sizes.warmup_appends
    datas = [payload(i) for i in range(warm + n)]
    events = [[NewEvent(EVENT_TYPE, data)] for data in datas]

    async def mine() -> float:
        with scratch.fresh() as tmp:
            store = SqliteEventStore(tmp / "journal.db", synchronous=synchronous)
            await store.open()
            try:
                version = 0
                for batch in events[:warm]:
                    version = (await store.append("s", batch, expected_version=version)).version
                with stopwatch() as elapsed:
                    for batch in events[warm:]:
                        result = await store.append("s", batch, expected_version=version)
                        version = result.version
                check_count("phalanx append", version, warm + n)
                return elapsed() / n * 1e6
            finally:
                await store.close()

    async def raw() -> float:
        with scratch.fresh() as tmp:
            conn = raw_sqlite(tmp / "raw.db", synchronous, create=True)
            try:

                def append(seq: int, data: dict[str, Any]) -> None:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute(SQLITE_INSERT, raw_row("s", seq, data))
                    conn.execute("COMMIT")

                for seq, data in enumerate(datas[:warm], start=1):
                    append(seq, data)
                with stopwatch() as elapsed:
                    for seq, data in enumerate(datas[warm:], start=warm + 1):
                        append(seq, data)
                return elapsed() / n * 1e6
            finally:
                conn.close()

    samples = await interleaved({"phalanx": mine, "raw": raw}, sizes.repeats)
    return Figure.from_samples(
        f"sqlite.append_latency.{synchronous}",
        f"sqlite append 1 event/txn, sync={synchronous.upper()}",
        "us/append",
        samples,
        better="lower",
        limit=1.5,
    )


async def sqlite_batch_throughput(scratch: Scratch, sizes: Sizes) -> Figure:
    """Rows per second appending 100-event batches, one transaction per batch."""
    size, warm = sizes.batch_size, 2
    count = warm + sizes.batches
    datas = [[payload(b * size + i) for i in range(size)] for b in range(count)]
    batches = [[NewEvent(EVENT_TYPE, data) for data in batch] for batch in datas]
    rows = sizes.batches * size

    async def mine() -> float:
        with scratch.fresh() as tmp:
            store = SqliteEventStore(tmp / "journal.db")
            await store.open()
            try:
                version = 0
                for batch in batches[:warm]:
                    version = (await store.append("s", batch, expected_version=version)).version
                with stopwatch() as elapsed:
                    for batch in batches[warm:]:
                        result = await store.append("s", batch, expected_version=version)
                        version = result.version
                check_count("phalanx append", version, count * size)
                return rows / elapsed()
            finally:
                await store.close()

    async def raw() -> float:
        with scratch.fresh() as tmp:
            conn = raw_sqlite(tmp / "raw.db", "normal", create=True)
            try:

                def append(first_seq: int, batch: list[dict[str, Any]]) -> None:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(
                        SQLITE_INSERT,
                        [raw_row("s", first_seq + i, data) for i, data in enumerate(batch)],
                    )
                    conn.execute("COMMIT")

                for b, batch in enumerate(datas[:warm]):
                    append(b * size + 1, batch)
                with stopwatch() as elapsed:
                    for b, batch in enumerate(datas[warm:], start=warm):
                        append(b * size + 1, batch)
                return rows / elapsed()
            finally:
                conn.close()

    samples = await interleaved({"phalanx": mine, "raw": raw}, sizes.repeats)
    return Figure.from_samples(
        "sqlite.batch_throughput",
        f"sqlite append {size}-event batches",
        "rows/s",
        samples,
        better="higher",
        limit=0.70,
    )


async def sqlite_read_stream(scratch: Scratch, sizes: Sizes) -> Figure:
    """Milliseconds to read one whole stream, both sides reading the same file."""
    n, reads = sizes.read_events, sizes.reads
    with scratch.fresh() as tmp:
        path = tmp / "journal.db"
        store = SqliteEventStore(path)
        await store.open()
        conn: sqlite3.Connection | None = None
        try:
            await populate_store(store, n)
            raw_conn = conn = raw_sqlite(path, "normal", create=False)

            async def mine() -> float:
                with stopwatch() as elapsed:
                    for _ in range(reads):
                        events = await store.read_stream(READ_STREAM)
                check_count("phalanx read_stream", len(events), n)
                return elapsed() / reads * 1e3

            async def raw() -> float:
                with stopwatch() as elapsed:
                    for _ in range(reads):
                        rows = raw_conn.execute(SQLITE_SELECT, (READ_STREAM,)).fetchall()
                        datas = [json.loads(row[4]) for row in rows]
                check_count("raw select", len(datas), n)
                return elapsed() / reads * 1e3

            samples = await interleaved({"phalanx": mine, "raw": raw}, sizes.repeats)
        finally:
            if conn is not None:
                conn.close()
            await store.close()
    return Figure.from_samples(
        "sqlite.read_stream",
        f"sqlite read_stream {n:,} events",
        "ms/read",
        samples,
        better="lower",
        limit=2.0,
    )


# -- PostgreSQL ------------------------------------------------------------------------

# The events table of phalanx's PostgreSQL migration, with the same UNIQUE index only,
# and an identity column for positions where phalanx takes a store-wide counter row
# to keep commit order: both differences are charged to phalanx, as in SQLite.
PG_EVENTS_DDL = """
CREATE TABLE events (
    position    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    epoch       BIGINT,
    recorded_at DOUBLE PRECISION NOT NULL,
    run_id      TEXT,
    agent_id    TEXT,
    parent_id   TEXT,
    trace_id    TEXT,
    span_id     TEXT,
    UNIQUE (stream_id, seq)
)
"""
PG_INSERT = (
    f"INSERT INTO events ({', '.join(_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, 12))})"
)
PG_SELECT = f"SELECT {_ALL_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY seq"


@dataclass
class PostgresResult:
    """The PostgreSQL figures, or why there are none (or fewer than planned)."""

    figures: list[Figure] = field(default_factory=list)
    reason: str | None = None
    server: str | None = None

    @property
    def status(self) -> str:
        """`ok`, `skipped` (nothing measured) or `incomplete` (failed part-way)."""
        if self.reason is None:
            return "ok"
        return "incomplete" if self.figures else "skipped"


def with_schema(dsn: str, schema: str) -> str:
    """The DSN with `schema=NAME` added to its query, as `store_from_url` reads it."""
    parts = urlsplit(dsn)
    query = f"{parts.query}&schema={schema}" if parts.query else f"schema={schema}"
    return urlunsplit(parts._replace(query=query))


def printable(dsn: str) -> str:
    """The DSN without its password."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def pg_append_latency(store: EventStore, conn: asyncpg.Connection, sizes: Sizes) -> Figure:
    """Microseconds per single-event append, against one autocommit INSERT each."""
    n, warm = sizes.pg_appends, sizes.warmup_appends
    datas = [payload(i) for i in range(warm + n)]
    events = [[NewEvent(EVENT_TYPE, data)] for data in datas]
    streams = itertools.count()

    async def mine() -> float:
        stream_id, version = f"latency-{next(streams)}", 0
        for batch in events[:warm]:
            version = (await store.append(stream_id, batch, expected_version=version)).version
        with stopwatch() as elapsed:
            for batch in events[warm:]:
                version = (await store.append(stream_id, batch, expected_version=version)).version
        check_count("phalanx append", version, warm + n)
        return elapsed() / n * 1e6

    async def raw() -> float:
        stream_id = f"latency-{next(streams)}"
        for seq, data in enumerate(datas[:warm], start=1):
            await conn.execute(PG_INSERT, *raw_row(stream_id, seq, data))
        with stopwatch() as elapsed:
            for seq, data in enumerate(datas[warm:], start=warm + 1):
                await conn.execute(PG_INSERT, *raw_row(stream_id, seq, data))
        return elapsed() / n * 1e6

    samples = await interleaved({"phalanx": mine, "raw": raw}, sizes.repeats)
    return Figure.from_samples(
        "postgres.append_latency",
        "postgres append 1 event/txn",
        "us/append",
        samples,
        better="lower",
        limit=1.5,
    )


async def pg_concurrent_writers(url: str, sizes: Sizes, writers: int = 4) -> Figure:
    """Appends/s of `writers` stores on different streams at once, against one alone.

    Each writer has its own store (its own connections) and its own stream, one event
    per append with `expected_version`, as runners do. The baseline is the same work
    by one writer, in the same run: the ratio is how far appends run in parallel.
    """
    stores = [store_from_url(url) for _ in range(writers)]
    n = max(sizes.pg_appends // 2, 20)
    streams = itertools.count()
    data = [payload(i) for i in range(n)]

    async def write(store: EventStore) -> None:
        stream_id, version = f"writer-{next(streams)}", 0
        for item in data:
            batch = [NewEvent(EVENT_TYPE, item)]
            version = (await store.append(stream_id, batch, expected_version=version)).version
        check_count("concurrent writer", version, n)

    async def rate(k: int) -> float:
        with stopwatch() as elapsed:
            await asyncio.gather(*(write(store) for store in stores[:k]))
        return k * n / elapsed()

    try:
        for store in stores:
            await store.open()
        samples = await interleaved(
            {"phalanx": lambda: rate(writers), "raw": lambda: rate(1)}, sizes.repeats
        )
    finally:
        for store in stores:
            with suppress(Exception):
                await store.close()
    return Figure.from_samples(
        "postgres.concurrent_writers",
        f"postgres {writers} writers vs 1 (appends/s)",
        "appends/s",
        samples,
        better="higher",
        limit=3.0,
    )


async def pg_batch_throughput(store: EventStore, conn: asyncpg.Connection, sizes: Sizes) -> Figure:
    """Rows per second appending 100-event batches, against executemany in a transaction."""
    size, warm = sizes.batch_size, 1
    count = warm + sizes.pg_batches
    datas = [[payload(b * size + i) for i in range(size)] for b in range(count)]
    batches = [[NewEvent(EVENT_TYPE, data) for data in batch] for batch in datas]
    rows = sizes.pg_batches * size
    streams = itertools.count()

    async def mine() -> float:
        stream_id, version = f"batch-{next(streams)}", 0
        for batch in batches[:warm]:
            version = (await store.append(stream_id, batch, expected_version=version)).version
        with stopwatch() as elapsed:
            for batch in batches[warm:]:
                version = (await store.append(stream_id, batch, expected_version=version)).version
        check_count("phalanx append", version, count * size)
        return rows / elapsed()

    async def raw() -> float:
        stream_id = f"batch-{next(streams)}"

        async def append(first_seq: int, batch: list[dict[str, Any]]) -> None:
            args = [raw_row(stream_id, first_seq + i, data) for i, data in enumerate(batch)]
            async with conn.transaction():
                await conn.executemany(PG_INSERT, args)

        for b, batch in enumerate(datas[:warm]):
            await append(b * size + 1, batch)
        with stopwatch() as elapsed:
            for b, batch in enumerate(datas[warm:], start=warm):
                await append(b * size + 1, batch)
        return rows / elapsed()

    samples = await interleaved({"phalanx": mine, "raw": raw}, sizes.repeats)
    return Figure.from_samples(
        "postgres.batch_throughput",
        f"postgres append {size}-event batches",
        "rows/s",
        samples,
        better="higher",
    )


async def pg_read_stream(store: EventStore, conn: asyncpg.Connection, sizes: Sizes) -> Figure:
    """Milliseconds to read one whole stream, each side from its own identical table."""
    n, reads = sizes.read_events, sizes.reads
    await populate_store(store, n)
    for batch in raw_rows_for_read(n):
        await conn.copy_records_to_table("events", records=batch, columns=_COLUMNS)

    async def mine() -> float:
        with stopwatch() as elapsed:
            for _ in range(reads):
                events = await store.read_stream(READ_STREAM)
        check_count("phalanx read_stream", len(events), n)
        return elapsed() / reads * 1e3

    async def raw() -> float:
        with stopwatch() as elapsed:
            for _ in range(reads):
                rows = await conn.fetch(PG_SELECT, READ_STREAM)
                datas = [json.loads(row[4]) for row in rows]
        check_count("raw select", len(datas), n)
        return elapsed() / reads * 1e3

    samples = await interleaved({"phalanx": mine, "raw": raw}, sizes.repeats)
    return Figure.from_samples(
        "postgres.read_stream",
        f"postgres read_stream {n:,} events",
        "ms/read",
        samples,
        better="lower",
    )


async def postgres_figures(dsn: str, sizes: Sizes) -> PostgresResult:
    """Measure the PostgreSQL backend in a fresh schema, the raw floor in another.

    Both schemas are dropped at the end, whatever happened.
    """
    result = PostgresResult()
    if not dsn:
        result.reason = f"${POSTGRES_ENV} is empty"
        return result
    try:
        import asyncpg
    except ImportError as exc:
        result.reason = f"asyncpg does not import: {exc}"
        return result
    schema = f"bench_{secrets.token_hex(4)}"
    raw_schema = f"{schema}_raw"
    try:
        store = store_from_url(with_schema(dsn, schema))
    except ImportError as exc:
        result.reason = f"the PostgreSQL backend does not import: {exc}"
        return result
    try:
        admin = await asyncpg.connect(dsn, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        result.reason = f"cannot connect to {printable(dsn)}: {exc}"
        return result
    conn: asyncpg.Connection | None = None
    try:
        result.server = str(await admin.fetchval("SHOW server_version"))
        await admin.execute(f'CREATE SCHEMA "{raw_schema}"')
        conn = await asyncpg.connect(dsn, server_settings={"search_path": raw_schema})
        await conn.execute(PG_EVENTS_DDL)
        await store.open()
        for name, measure in (
            ("append latency", pg_append_latency),
            ("batch throughput", pg_batch_throughput),
            ("read_stream", pg_read_stream),
        ):
            progress(f"postgres {name}")
            result.figures.append(await measure(store, conn, sizes))
        progress("postgres concurrent writers")
        result.figures.append(await pg_concurrent_writers(with_schema(dsn, schema), sizes))
    except Exception as exc:
        # The backend may be unfinished or the server may go away: report what was
        # measured and why the rest was not, rather than lose the SQLite figures.
        result.reason = f"{type(exc).__name__}: {exc}"
    finally:
        # Cleanup must reach the DROPs; a close that fails must not stop it.
        with suppress(Exception):
            await store.close()
        if conn is not None:
            with suppress(Exception):
                await conn.close()
        try:
            for name in (schema, raw_schema):
                await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        except Exception as exc:
            leak = f"could not drop schemas {schema}, {raw_schema}: {exc}"
            result.reason = f"{result.reason}; {leak}" if result.reason else leak
        finally:
            await admin.close()
    return result


# -- report ----------------------------------------------------------------------------


def progress(message: str) -> None:
    """Say what is being measured, on stderr so stdout stays the report."""
    print(f"... {message}", file=sys.stderr, flush=True)


@dataclass
class Report:
    """Everything one run measured, with the context needed to compare runs."""

    quick: bool
    environment: dict[str, Any]
    figures: list[Figure]
    postgres: PostgresResult

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: environment, figures by key, postgres status."""
        figures = [*self.figures, *self.postgres.figures]
        return {
            "benchmark": "journal",
            "quick": self.quick,
            "environment": self.environment,
            "figures": {figure.key: figure.to_json() for figure in figures},
            "postgres": {
                "status": self.postgres.status,
                "reason": self.postgres.reason,
                "server_version": self.postgres.server,
            },
            "all_targets_met": all(figure.passed is not False for figure in figures),
        }

    def render(self, file: TextIO) -> None:
        """The human-readable report: context, the table, then every MISS spelled out."""
        env = self.environment
        print(
            f"phalanx journal benchmark{' (--quick)' if self.quick else ''}: "
            f"medians of {env['repeats']} interleaved rounds, ratio = phalanx / raw "
            f"(median of per-round ratios)",
            file=file,
        )
        print(
            f"python {env['python']}, sqlite {env['sqlite']}, {env['cpus']} cpus, "
            f"{env['platform']}, scratch dir {env['scratch']}",
            file=file,
        )
        print(file=file)
        figures = [*self.figures, *self.postgres.figures]
        print_figures(figures, file=file)
        print(file=file)
        if self.postgres.status == "ok":
            print(f"postgres: {self.postgres.server} at {env['postgres']}", file=file)
        else:
            print(f"postgres: {self.postgres.status} ({self.postgres.reason})", file=file)
        for figure in figures:
            if figure.passed is False:
                print(
                    f"MISS: {figure.label}: {figure.ratio:.2f}x raw, target {figure.target}",
                    file=file,
                )


async def run(sizes: Sizes, scratch: Scratch, dsn: str, quick: bool) -> Report:
    """Measure every figure in turn."""
    figures: list[Figure] = []
    for synchronous in ("normal", "full"):
        progress(f"sqlite append latency, synchronous={synchronous.upper()}")
        figures.append(await sqlite_append_latency(scratch, sizes, synchronous))
    progress("sqlite batch throughput")
    figures.append(await sqlite_batch_throughput(scratch, sizes))
    progress("sqlite read_stream")
    figures.append(await sqlite_read_stream(scratch, sizes))
    postgres = await postgres_figures(dsn, sizes)
    environment = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "scratch": str(scratch.base),
        "postgres": printable(dsn),
        "repeats": sizes.repeats,
    }
    return Report(quick, environment, figures, postgres)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; 0 even when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: less work, noisier")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--dir", help="where the scratch SQLite files go (FULL depends on its filesystem)"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    dsn = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    report = asyncio.run(run(sizes, Scratch(args.dir), dsn, args.quick))
    report.render(sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
