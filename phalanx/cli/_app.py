"""The `phalanx` command: run, resume, inspect and steer durable runs.

Exit status: 0 the operation succeeded (a run completed), 1 it did not (a run failed,
was cancelled, diverged from its journal, or this runner was fenced out), 2 a usage or
configuration error (unknown run, unimportable workflow, bad --input, store that
cannot be opened). Results and `--json` output go to stdout; diagnostics to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._errors import (
    ConfigError,
    CorruptEventError,
    FencedError,
    LeaseLostError,
    NonDeterminismError,
    PhalanxError,
    StoreCorruptError,
    StoreUnavailableError,
    UserError,
)
from ..durable import RunHistory, RunOutcome, Runtime, load_workflow, open_runtime
from ..durable.lowlevel import TERMINAL, inbox_stream, run_stream
from ..journal import Event, EventStore
from ..observe import configure_from_env
from ..tools import troubled_tool_calls

T = TypeVar("T")

app = typer.Typer(
    name="phalanx",
    help="A durable, observable runtime for multi-agent LLM systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup or emoji codes: run ids, paths, errors and results are printed verbatim
# (a "[/x]" in a message would otherwise be eaten, or crash the print).
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="PHALANX_STORE",
        help="Store URL: sqlite:///path.db (default ./.phalanx/phalanx.db) or postgresql://...",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
LeaseOption = Annotated[
    float,
    typer.Option("--lease-ttl", envvar="PHALANX_LEASE_TTL", help="Lease time-to-live, seconds."),
]


def _fail(message: str, code: int) -> typer.Exit:
    err.print(Text.assemble(("error:", "bold red"), f" {message}"))
    return typer.Exit(code)


def _execute(store: str | None, lease_ttl: float, body: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open the runtime, run `body`, and map phalanx errors to exit statuses."""

    async def main() -> T:
        async with open_runtime(store, lease_ttl=lease_ttl) as runtime:
            return await body(runtime)

    try:
        return _run(main())
    except FencedError as exc:
        raise _fail(f"fenced out: {exc}", 1) from exc
    except (NonDeterminismError, StoreCorruptError, LeaseLostError) as exc:
        # LeaseLostError: a runner gave up on a store outage; its run stays resumable.
        raise _fail(str(exc), 1) from exc
    except (UserError, StoreUnavailableError) as exc:
        raise _fail(str(exc), 2) from exc
    except PhalanxError as exc:
        raise _fail(str(exc), 1) from exc


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        err.print("interrupted; the run stays resumable")
        raise typer.Exit(130) from None


def _parse_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(character {exc.pos})",
            2,
        ) from exc
    if not isinstance(value, dict):
        raise _fail(
            f"{option} must be a JSON object of keyword arguments, not {type(value).__name__}", 2
        )
    return value


def _report(outcome: RunOutcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome.to_json(), ensure_ascii=False))
    else:
        out.print(f"run {outcome.run_id} {outcome.status}")
        if outcome.status == "completed":
            out.print(f"result: {json.dumps(outcome.result, ensure_ascii=False)}")
        elif outcome.error is not None:
            out.print(f"error: {outcome.error.get('type')}: {outcome.error.get('message')}")
    if not outcome.ok:
        raise typer.Exit(1)


@app.command()
def run(
    target: Annotated[str, typer.Argument(metavar="MODULE:FUNCTION", help="The workflow to run.")],
    input: Annotated[
        str | None, typer.Option("--input", help="JSON object of keyword arguments.")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Use this run id.")] = None,
    store: StoreOption = None,
    lease_ttl: LeaseOption = 15.0,
    as_json: JsonOption = False,
) -> None:
    """Start a workflow run; print its id and result; exit 1 if it failed."""
    inputs = _parse_object(input, "--input")
    sys.path.insert(0, os.getcwd())
    try:
        fn = load_workflow(target)
    except UserError as exc:
        raise _fail(str(exc), 2) from exc

    async def body(runtime: Runtime) -> RunOutcome:
        chosen = run_id or runtime.entropy.token(8)
        err.print(f"run {chosen} started ({target})")
        return await runtime.run(fn, inputs, run_id=chosen)

    _report(_execute(store, lease_ttl, body), as_json)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    force: Annotated[
        bool, typer.Option("--force", help="Take the lease over now (fences the old runner).")
    ] = False,
    store: StoreOption = None,
    lease_ttl: LeaseOption = 15.0,
    as_json: JsonOption = False,
) -> None:
    """Continue a crashed run from its journal, without repeating finished steps."""
    sys.path.insert(0, os.getcwd())
    _report(_execute(store, lease_ttl, lambda rt: rt.resume(run_id, force=force)), as_json)


@app.command()
def recover(
    store: StoreOption = None,
    lease_ttl: LeaseOption = 15.0,
    as_json: JsonOption = False,
) -> None:
    """Resume every unfinished run whose lease has expired."""
    sys.path.insert(0, os.getcwd())
    outcomes = _execute(store, lease_ttl, lambda rt: rt.recover())
    if as_json:
        print(json.dumps([o.to_json() for o in outcomes]))
    else:
        for outcome in outcomes:
            out.print(f"run {outcome.run_id} {outcome.status}")
        out.print(f"{len(outcomes)} run(s) recovered")
    if any(not o.ok for o in outcomes):
        raise typer.Exit(1)


def _time(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def runs(
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only runs with this status: running, waiting, completed, failed, cancelled.",
        ),
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List runs with their status."""
    if status is not None and status not in ("running", "waiting", *TERMINAL):
        raise _fail(f"unknown status {status!r}", 2)
    summaries = _execute(store, 15.0, lambda rt: rt.runs(status=status))  # type: ignore[arg-type]  # checked above
    if as_json:
        print(json.dumps([s.to_json() for s in summaries]))
        return
    table = Table("run", "status", "workflow", "parent", "started", "updated")
    for s in summaries:
        table.add_row(
            s.run_id,
            s.status,
            s.workflow,
            s.parent_run_id or "",
            _time(s.started_at),
            _time(s.updated_at),
        )
    out.print(table)


def _event_line(event: Event, as_json: bool) -> None:
    if as_json:
        print(json.dumps(event.to_json(), ensure_ascii=False), flush=True)
    else:
        data = json.dumps(event.data, ensure_ascii=False)
        if len(data) > 160:
            data = data[:157] + "..."
        out.print(f"{event.seq:>5}  {_time(event.recorded_at)}  {event.type:<16} {data}")


@app.command()
def events(
    run_id: Annotated[str, typer.Argument(help="The run whose journal to print.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")
    ] = False,
    inbox: Annotated[bool, typer.Option("--inbox", help="Print the run's inbox instead.")] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a run's events (one JSON object a line with --json)."""

    async def body(runtime: Runtime) -> int:
        if await runtime.store.stream_version(run_stream(run_id)) == 0:
            await runtime.history(run_id)  # raises UnknownRunError
        stream = inbox_stream(run_id) if inbox else run_stream(run_id)
        next_seq = 1
        broken = 0
        while True:
            batch, corrupt = await _read_good_rows(runtime.store, stream, next_seq)
            for event in batch:
                _event_line(event, as_json)
                next_seq = event.seq + 1
            if corrupt is not None:
                err.print(Text.assemble(("error:", "bold red"), f" {corrupt}"))
                broken += 1
                next_seq = corrupt.seq + 1
                continue
            if not follow:
                return broken
            if not inbox and (await runtime.history(run_id)).terminal and not batch:
                return broken
            await runtime.clock.sleep(0.2)

    if _execute(store, 15.0, body):
        raise typer.Exit(1)


async def _read_good_rows(
    store: EventStore, stream: str, from_seq: int
) -> tuple[list[Event], CorruptEventError | None]:
    """The events from `from_seq`, stopping before a corrupt row, and that row's error."""
    try:
        return await store.read_stream(stream, from_seq=from_seq), None
    except CorruptEventError as exc:
        good = await store.read_stream(stream, from_seq=from_seq, limit=exc.seq - from_seq)
        return good, exc


def _show(history: RunHistory) -> dict[str, Any]:
    steps = []
    children = []
    fan_outs = []
    decisions = []
    for op in sorted(history.operations.values(), key=lambda o: o.op):
        if op.kind == "gather":
            started = op.events[0].data
            branches = {
                e.data["branch"]: {
                    "status": e.data["status"],
                    "duration_s": e.data.get("duration_s"),
                    "error": e.data.get("error"),
                    "run_id": e.data.get("run_id"),
                }
                for e in op.events
                if e.type == "BranchFinished"
            }
            for branch, child_id in started.get("branches", {}).items():
                branches.setdefault(
                    branch,
                    {"status": "running", "duration_s": None, "error": None, "run_id": child_id},
                )
            done = op.last("GatherCompleted")
            fan_outs.append(
                {
                    "op": op.op,
                    "name": op.name,
                    "policy": started.get("policy"),
                    "partial": None if done is None else done.data.get("partial"),
                    "stalled": [e.data["branch"] for e in op.events if e.type == "BranchStalled"],
                    "branches": branches,
                }
            )
            continue
        if op.kind == "decision":
            data = op.events[0].data
            decisions.append({k: v for k, v in data.items() if k != "op"})
            continue
        if op.kind == "child":
            done = op.last("ChildCompleted", "ChildFailed")
            children.append(
                {
                    "op": op.op,
                    "workflow": op.name,
                    "run_id": op.events[0].data.get("child_run_id"),
                    "status": "running"
                    if done is None
                    else (
                        "completed"
                        if done.type == "ChildCompleted"
                        else done.data["failure"]["status"]
                    ),
                }
            )
            continue
        if op.kind != "step":
            continue
        done = op.last("StepCompleted")
        failures = [e for e in op.events if e.type == "StepFailed"]
        final_failure = (
            failures[-1] if failures and failures[-1].data.get("retry_at") is None else None
        )
        ended = done or final_failure
        state = "completed" if done else ("failed" if final_failure else "running")
        steps.append(
            {
                "op": op.op,
                "name": op.name,
                "status": state,
                "attempts": sum(1 for e in op.events if e.type == "StepStarted"),
                "duration_s": None if ended is None else ended.data.get("duration_s"),
                "errors": [
                    {
                        "attempt": e.data.get("attempt"),
                        "type": e.data["error"].get("type"),
                        "message": e.data["error"].get("message"),
                    }
                    for e in failures
                ],
            }
        )
    return {
        "run_id": history.run_id,
        "status": history.status,
        "workflow": history.workflow,
        "parent_run_id": history.parent_run_id,
        "inputs": history.inputs,
        "started_at": history.started_at,
        "ended_at": history.ended_at,
        "result": history.result,
        "error": None
        if history.error is None
        else {k: v for k, v in history.error.items() if k != "traceback"},
        "steps": steps,
        "children": children,
        "fan_outs": fan_outs,
        "decisions": decisions,
        # Tool calls that failed, were retried or dead-lettered: never hidden by a result.
        "tool_calls": troubled_tool_calls(history.events),
    }


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="The run to describe.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Describe a run: status, steps with durations and attempts, errors, children."""
    info = _show(_execute(store, 15.0, lambda rt: rt.history(run_id)))
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
        return
    out.print(
        Text.assemble(
            "run ", (info["run_id"], "bold"), f" {info['status']}  workflow {info['workflow']}"
        )
    )
    if info["parent_run_id"]:
        out.print(f"parent {info['parent_run_id']}")
    out.print(f"started {_time(info['started_at'])}  ended {_time(info['ended_at'])}")
    table = Table("op", "step", "status", "attempts", "duration", "errors")
    for step in info["steps"]:
        duration = step["duration_s"]
        table.add_row(
            str(step["op"]),
            step["name"],
            step["status"],
            str(step["attempts"]),
            "" if duration is None else f"{duration * 1000:.1f} ms",
            "; ".join(f"#{e['attempt']} {e['type']}: {e['message']}" for e in step["errors"]),
        )
    out.print(table)
    for call in info["tool_calls"]:
        dead = call["dead_letter"]
        dlq = "" if dead is None else f"; dead-lettered {dead['id']} ({dead['outcome']})"
        errors = "; ".join(f"#{e['attempt']} {e['type']}: {e['message']}" for e in call["errors"])
        out.print(
            f"tool {call['tool']} ({call['step']}) {call['status']} after {call['attempts']} "
            f"attempt(s){dlq}: {errors}"
        )
    for child in info["children"]:
        out.print(f"child {child['run_id']} ({child['workflow']}) {child['status']}")
    for fan_out in info["fan_outs"]:
        partial = {None: "in progress", True: "PARTIAL", False: "complete"}[fan_out["partial"]]
        out.print(f"fan-out {fan_out['name']} [{fan_out['policy']}] {partial}")
        for branch, outcome in fan_out["branches"].items():
            stalled = " (stalled)" if branch in fan_out["stalled"] else ""
            error = f": {outcome['error']}" if outcome["error"] else ""
            out.print(f"  {branch} {outcome['status']}{stalled}{error}  run {outcome['run_id']}")
    for decision in info["decisions"]:
        details = {k: v for k, v in decision.items() if k != "name"}
        out.print(f"decision {decision['name']}: {json.dumps(details, ensure_ascii=False)}")
    if info["status"] == "completed":
        out.print(f"result: {json.dumps(info['result'], ensure_ascii=False)}")
    elif info["error"]:
        out.print(f"error: {info['error'].get('type')}: {info['error'].get('message')}")


@app.command()
def signal(
    run_id: Annotated[str, typer.Argument(help="The run to signal.")],
    name: Annotated[str, typer.Argument(help="The signal's name (what the run waits for).")],
    data: Annotated[str | None, typer.Option("--data", help="JSON payload.")] = None,
    store: StoreOption = None,
) -> None:
    """Send a signal (e.g. a human's answer) to a waiting run."""
    try:
        payload = None if data is None else json.loads(data)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"--data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", 2
        ) from exc
    _execute(store, 15.0, lambda rt: rt.signal(run_id, name, payload))
    err.print(f"signal {name!r} sent to run {run_id}")


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why; journaled.")
    ] = "cancelled from the command line",
    store: StoreOption = None,
) -> None:
    """Cancel a run (and its children) at its next await; its cleanup still runs."""
    sent = _execute(store, 15.0, lambda rt: rt.cancel(run_id, reason=reason))
    if sent:
        err.print(f"cancel requested for run {run_id}")
    else:
        err.print(f"run {run_id} had already ended; nothing to cancel")


def main() -> None:
    """Entry point of the `phalanx` console script."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("phalanx")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        # Exports only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) says so.
        telemetry = configure_from_env()
    except ConfigError as exc:
        err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
        sys.exit(2)
    try:
        app()
    finally:
        if telemetry is not None:
            telemetry.shutdown()  # flush the batch before the process ends
