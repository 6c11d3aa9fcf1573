"""`phalanx runs`, `events` and `show`: reading runs back from the journal.

Apart from `_app` (running and steering runs) because reading is its own concern:
listings sized to the terminal, JSON for scripts, and a damaged row reported without
hiding the good ones around it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from .._errors import CorruptEventError
from ..durable import RunHistory, RunSummary, Runtime
from ..durable.lowlevel import TERMINAL, inbox_stream, run_stream
from ..evals import recorded_evals
from ..journal import Event, EventStore
from ..observe import view_run
from ..patterns import saga_views
from ._app import (
    JsonOption,
    StoreOption,
    _execute,
    _fail,
    _time,
    app,
    err,
    out,
)
from ._table import Column, fit_table


def store_location(runtime: Runtime) -> str:
    """Where the runtime's store is: a SQLite file's absolute path, else its URL.

    `sqlite:///var/x.db` is relative (SQLAlchemy's convention), so listings say which
    file they read.
    """
    path = getattr(runtime.store, "path", None)
    if isinstance(path, Path):
        return str(path.resolve())
    return runtime.store.url  # a PostgreSQL URL comes with its password masked


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

    async def body(runtime: Runtime) -> tuple[str, list[RunSummary]]:
        return store_location(runtime), await runtime.runs(status=status)  # type: ignore[arg-type]  # checked above

    where, summaries = _execute(store, 15.0, body)
    if as_json:
        print(json.dumps([s.to_json() for s in summaries]))
        return
    columns = [
        Column("run", whole=True),
        Column("status", whole=True),
        Column("workflow", drop=3),
        Column("parent", whole=True, drop=2),
        Column("started", drop=5),
        Column("updated", drop=4),
    ]
    rows = [
        (
            s.run_id,
            s.status,
            s.workflow,
            s.parent_run_id or "",
            _time(s.started_at),
            _time(s.updated_at),
        )
        for s in summaries
    ]
    out.print(f"store {where}")
    out.print(fit_table(out, columns, rows))


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


def describe_run(history: RunHistory) -> dict[str, Any]:
    """`phalanx show --json`: a run's steps, children, fan-outs, decisions, tool calls."""
    # Fan-outs and decisions come from the run model the pictures and the dashboard
    # draw, so `show` can never tell another story than they do.
    folded = view_run(history)
    fan_outs = [
        {
            "op": fan.op,
            "name": fan.name,
            "policy": fan.policy,
            "partial": fan.partial,
            "stalled": [b.name for b in fan.branches.values() if b.stalled],
            "branches": {
                b.name: {
                    "status": b.status,
                    "duration_s": b.duration_s,
                    "error": b.error,
                    "run_id": b.run_id,
                }
                for b in fan.branches.values()
            },
        }
        for fan in folded.fan_outs
    ]
    decisions = folded.decisions
    steps = []
    children = []
    for op in sorted(history.operations.values(), key=lambda o: o.op):
        if op.kind in ("gather", "decision"):
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
        "sagas": [view.to_json() for view in saga_views(history.events)],
        # Tool calls that failed, were retried or dead-lettered: never hidden by a result.
        "tool_calls": folded.tool_calls,
    }


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="The run to describe.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Describe a run: status, steps with durations and attempts, errors, children."""

    async def body(runtime: Runtime) -> tuple[str, RunHistory, list[dict[str, Any]]]:
        history = await runtime.history(run_id)
        return store_location(runtime), history, await recorded_evals(runtime.store, run_id)

    where, history, evals = _execute(store, 15.0, body)
    info = describe_run(history)
    info["evals"] = evals
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
        return
    out.print(f"store {where}")
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
    for saga in info["sagas"]:
        _print_saga(saga)
    for decision in info["decisions"]:
        details = {k: v for k, v in decision.items() if k != "name"}
        out.print(f"decision {decision['name']}: {json.dumps(details, ensure_ascii=False)}")
    for scored in evals:
        failing = [c["criterion"] for c in scored["criteria"] if not c["passed"]]
        verdict = f"FAILED {', '.join(failing)}" if failing else "passed"
        out.print(
            f"eval {scored['rubric']} (eval run {scored['eval_run_id']}): {verdict}, "
            f"score {scored['score']:.2f}"
        )
    if info["status"] == "completed":
        out.print(f"result: {json.dumps(info['result'], ensure_ascii=False)}")
    elif info["error"]:
        out.print(f"error: {info['error'].get('type')}: {info['error'].get('message')}")


def _print_saga(saga: dict[str, Any]) -> None:
    """A saga's status, each step's outcome, and what a waiting one waits for."""
    out.print(f"saga {saga['name']} ({saga['style']}) {saga['status']}")
    for step, outcome in saga["steps"].items():
        out.print(f"  {step} {outcome}")
    if saga["compensations"]:
        out.print(f"  compensated, in order: {', '.join(saga['compensations'])}")
    for step, entry in saga["waiting_on"].items():
        out.print(
            f"  compensation of {step} failed and waits in the dead-letter queue: "
            f"phalanx dlq show {entry}; phalanx dlq resolve {entry} --result JSON"
        )
