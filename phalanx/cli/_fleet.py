"""`phalanx submit`, `worker` and `workers`: runs executed by a fleet of workers.

`submit` records a run for the workers and exits at once (0, its id on stdout);
`worker` claims and runs submitted runs until SIGTERM or Ctrl-C, which drain it (no
new claims; running runs get `--grace` seconds, then are handed back, journaled), and
exits 0; `workers` lists the live ones; `queue-limit` caps a queue's runs at once
across every worker; `rate-limit` declares a token bucket (`model:NAME`, `tool:NAME`)
that every worker's calls draw from. All work on SQLite (workers on one machine) and PostgreSQL
(workers on many).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Annotated

import typer

from ..durable import Runtime, Worker
from ..journal import DEFAULT_QUEUE, RateLimit, WorkerInfo
from ._app import (
    JsonOption,
    LeaseOption,
    RunIdOption,
    StoreOption,
    _execute,
    _fail,
    _time,
    app,
    checked_workflow,
    err,
    new_run_id,
    out,
)
from ._table import Column, fit_table

QueueOption = Annotated[
    str, typer.Option("--queue", metavar="NAME", help="The queue the run goes to.")
]


@app.command()
def submit(
    target: Annotated[
        str, typer.Argument(metavar="MODULE:FUNCTION", help="The workflow to submit.")
    ],
    input: Annotated[
        str | None,
        typer.Option("--input", metavar="JSON", help="JSON object of keyword arguments."),
    ] = None,
    run_id: RunIdOption = None,
    queue: QueueOption = DEFAULT_QUEUE,
    priority: Annotated[
        int, typer.Option("--priority", metavar="N", help="Higher runs are claimed first.")
    ] = 0,
    store: StoreOption = None,
) -> None:
    """Record a run for the workers (`phalanx worker`) and print its id; do not run it."""
    if not queue.strip():
        raise _fail("--queue must not be empty", 2)
    fn, inputs = checked_workflow(target, input, run_id)

    async def body(runtime: Runtime) -> str:
        chosen = await new_run_id(runtime, run_id)
        return await runtime.submit(fn, inputs, run_id=chosen, queue=queue, priority=priority)

    submitted = _execute(store, 15.0, body)
    print(submitted, flush=True)
    err.print(f"run {submitted} submitted to queue {queue!r} ({target})")


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", metavar="N", help="Runs executed at once.")
    ] = 4,
    queues: Annotated[
        list[str] | None,
        typer.Option("--queue", metavar="NAME", help="A queue to serve (repeatable)."),
    ] = None,
    poll: Annotated[
        float,
        typer.Option("--poll", metavar="SECONDS", help="Look for work at least this often."),
    ] = 1.0,
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace",
            metavar="SECONDS",
            help="On SIGTERM, how long running runs may take to end before they are "
            "handed back (default: the lease TTL).",
        ),
    ] = None,
    store: StoreOption = None,
    lease_ttl: LeaseOption = 15.0,
) -> None:
    """Claim and run submitted runs (and runs whose lease expired) until SIGTERM."""
    if concurrency < 1:
        raise _fail(f"--concurrency must be at least 1, got {concurrency}", 2)
    if poll <= 0 or (grace is not None and grace < 0) or lease_ttl <= 0:
        raise _fail("--poll and --lease-ttl must be positive, --grace not negative", 2)
    chosen = [q for q in queues or [DEFAULT_QUEUE]]
    if any(not q.strip() for q in chosen):
        raise _fail("--queue must not be empty", 2)
    sys.path.insert(0, os.getcwd())

    async def body(runtime: Runtime) -> Worker:
        fleet = Worker(runtime, queues=chosen, concurrency=concurrency, poll=poll, grace=grace)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, fleet.shutdown)
        err.print(
            f"worker {fleet.worker_id} serving {', '.join(chosen)} "
            f"(concurrency {concurrency}) on {runtime.store.url}"
        )
        await fleet.run()
        return fleet

    done = _execute(store, lease_ttl, body)
    err.print(f"worker {done.worker_id} stopped; it ended {done.finished} run(s)")


@app.command()
def workers(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """List live workers: id, host, pid, queues, runs held now, last heartbeat."""

    async def body(runtime: Runtime) -> list[WorkerInfo]:
        return await (await runtime.work_queue()).workers()

    found = _execute(store, 15.0, body)
    if as_json:
        print(json.dumps([w.to_json() for w in found]))
        return
    columns = [
        Column("worker", whole=True),
        Column("host", drop=2),
        Column("pid", whole=True),
        Column("queues", drop=1),
        Column("runs", whole=True),
        Column("last seen", whole=True),
    ]
    rows = [
        (w.worker_id, w.host, str(w.pid), ",".join(w.queues), str(w.runs), _time(w.last_seen))
        for w in found
    ]
    out.print(fit_table(out, columns, rows) if rows else "no live workers")


@app.command("queue-limit")
def queue_limit(
    queue: Annotated[
        str | None, typer.Argument(help="The queue (leave out to list every limit).")
    ] = None,
    max_running: Annotated[
        int | None, typer.Argument(metavar="N", help="At most N of its runs at once.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the queue's limit.")] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Limit how many runs of a queue run at once, across every worker; or list limits."""
    if queue is not None and not queue.strip():
        raise _fail("the queue name must not be empty", 2)
    if queue is not None and (max_running is None) == (not clear):
        raise _fail("give the queue a limit N, or --clear, not both", 2)
    if max_running is not None and max_running < 1:
        raise _fail(f"N must be at least 1, got {max_running} (--clear removes a limit)", 2)

    async def body(runtime: Runtime) -> dict[str, int]:
        work = await runtime.work_queue()
        if queue is not None:
            await work.set_limit(queue, None if clear else max_running)
        return await work.limits()

    limits = _execute(store, 15.0, body)
    if as_json:
        print(json.dumps(limits, sort_keys=True))
    else:
        for name, limit in sorted(limits.items()):
            out.print(f"{name}: at most {limit} at once")
        if not limits:
            out.print("no queue limits")


@app.command("rate-limit")
def rate_limit(
    key: Annotated[
        str | None,
        typer.Argument(help="model:NAME or tool:NAME (leave out to list every limit)."),
    ] = None,
    rate: Annotated[
        float | None, typer.Argument(metavar="RATE", help="Calls a second, across workers.")
    ] = None,
    burst: Annotated[
        float,
        typer.Option("--burst", metavar="N", help="Calls that may go at once after a lull."),
    ] = 1.0,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the key's limit.")] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Limit how often a model or tool is called, across every worker; or list limits."""
    if key is not None and not key.strip():
        raise _fail("the key must not be empty (model:NAME or tool:NAME)", 2)
    if key is not None and (rate is None) == (not clear):
        raise _fail("give the key a RATE, or --clear, not both", 2)
    if rate is not None and not (0 < rate < float("inf")):
        raise _fail(f"RATE must be a positive number of calls a second, got {rate}", 2)
    if not (1 <= burst < float("inf")):
        raise _fail(f"--burst must be at least 1, got {burst}", 2)

    async def body(runtime: Runtime) -> list[RateLimit]:
        work = await runtime.work_queue()
        if key is not None:
            await work.set_rate(key, None if clear else rate, burst)
        return await work.rates()

    limits = _execute(store, 15.0, body)
    if as_json:
        print(json.dumps({r.key: {"rate": r.rate, "burst": r.burst} for r in limits}))
    else:
        for r in limits:
            out.print(f"{r.key}: {r.rate:g} a second, burst {r.burst:g}")
        if not limits:
            out.print("no rate limits")
