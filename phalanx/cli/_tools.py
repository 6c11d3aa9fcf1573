"""`phalanx dlq ...` and `phalanx tools stats`: the dead-letter queue and per-tool metrics.

Exit status as for every command: 0 done; 1 the action failed (a retried call failed
again, the entry was already closed); 2 a usage or configuration error (unknown entry,
invalid JSON, a tool that cannot be imported here, secrets to supply).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from ..durable import Runtime
from ..tools import DeadLetterEntry, DeadLetterQueue, tool_stats
from ._app import JsonOption, StoreOption, _execute, _fail, _time, app, err, out
from ._table import Column, fit_table

dlq_app = typer.Typer(
    name="dlq",
    help="The dead-letter queue: tool calls that failed for good, to retry, resolve or discard.",
    no_args_is_help=True,
)
tools_app = typer.Typer(name="tools", help="Tools: per-tool metrics.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(tools_app, name="tools")

ByOption = Annotated[
    str | None,
    typer.Option(
        "--by", help="Who does this (journaled); default: the OS user.", show_default=False
    ),
]
_STATUSES = ("open", "resolved", "discarded", "all")


def _parse_json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", 2
        ) from exc


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False))


def _after_action(entry: DeadLetterEntry, verb: str, as_json: bool) -> None:
    if as_json:
        _print_json(entry.to_json())
    by = "" if entry.resolution is None else f" by {entry.resolution.get('by')}"
    err.print(f"dead-letter entry {entry.id} {verb}{by}")
    if entry.policy == "wait" and entry.run_id:
        err.print(
            f"run {entry.run_id} was sent the outcome: it goes on where it waits (if no "
            f"process is running it, continue it with `phalanx resume {entry.run_id}`)"
        )


@dlq_app.command("list")
def list_entries(
    tool: Annotated[str | None, typer.Option("--tool", help="Only this tool's entries.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run's entries.")] = None,
    status: Annotated[
        str, typer.Option("--status", help="open, resolved, discarded or all.")
    ] = "open",
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List dead-letter entries (open ones unless --status says otherwise)."""
    if status not in _STATUSES:
        raise _fail(f"unknown status {status!r}; use one of {', '.join(_STATUSES)}", 2)
    wanted: Any = None if status == "all" else status

    async def body(runtime: Runtime) -> list[DeadLetterEntry]:
        return await DeadLetterQueue(runtime).entries(tool=tool, run_id=run, status=wanted)

    entries = _execute(store, 15.0, body)
    if as_json:
        _print_json([e.summary() for e in entries])
        return
    columns = [
        Column("id", whole=True),
        Column("status", whole=True),
        Column("tool", whole=True),
        Column("run", whole=True, drop=1),
        Column("step", drop=3),
        Column("policy", drop=2),
        Column("attempts", drop=4),
        Column("error"),
        Column("created", drop=5),
    ]
    rows = []
    for entry in entries:
        row = entry.summary()
        rows.append(
            (
                row["id"],
                # The status is the JSON's; a run waiting on the entry is said besides.
                row["status"] + (" (run waits)" if row["waiting"] else ""),
                row["tool"],
                row["run_id"] or "",
                row["step"] or "",
                row["policy"],
                str(row["attempts"]),
                f"{row['error_type']}: {row['message']}",
                _time(row["created_at"]),
            )
        )
    out.print(fit_table(out, columns, rows))


@dlq_app.command("show")
def show_entry(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="The entry to describe.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Describe an entry: the call, every attempt, escalations, and what people did."""
    entry = _execute(store, 15.0, lambda rt: DeadLetterQueue(rt).get(entry_id))
    info = entry.to_json()
    if as_json:
        _print_json(info)
        return
    state = "waiting (the run waits on it)" if info["waiting"] else info["status"]
    out.print(
        f"dead-letter entry {info['id']} {state}  tool {info['tool']}  policy {info['policy']}"
    )
    out.print(f"run {info['run_id']}  agent {info['agent'] or '-'}  step {info['step']}")
    out.print(f"created {_time(info['created_at'])}  reason {info['reason']}")
    out.print(f"arguments {json.dumps(info['arguments'], ensure_ascii=False)}")
    if info["trace_id"]:
        out.print(f"trace {info['trace_id']}")
    table = Table("attempt", "started", "duration", "error")
    for attempt in info["attempts"]:
        duration = attempt.get("duration_s")
        table.add_row(
            str(attempt.get("attempt")),
            _time(attempt.get("started_at")),
            "" if duration is None else f"{duration * 1000:.1f} ms",
            f"{attempt.get('error_type')}: {attempt.get('message')}",
        )
    out.print(table)
    for escalation in info["escalations"]:
        for delivery in escalation.get("deliveries", []):
            verdict = "ok" if delivery.get("ok") else f"FAILED: {delivery.get('error')}"
            out.print(f"escalated to {delivery.get('notifier')}: {verdict}")
    for action in info["actions"]:
        why = f" ({action['reason']})" if action.get("reason") else ""
        out.print(f"{_time(action.get('at'))} {action['action']} by {action.get('by')}{why}")
    if info["attempts"]:
        last = info["attempts"][-1].get("traceback")
        if last:
            out.print("last traceback:")
            out.print(str(last).rstrip())


@dlq_app.command("retry")
def retry_entry(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="The entry to run again.")],
    by: ByOption = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (journaled).")] = None,
    arguments: Annotated[
        str | None,
        typer.Option(
            "--arguments",
            help="JSON object merged over the recorded arguments (to give redacted secrets).",
        ),
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run the call again here; on success resolve the entry and resume a waiting run."""
    overrides = None if arguments is None else _parse_json(arguments, "--arguments")
    if overrides is not None and not isinstance(overrides, dict):
        raise _fail("--arguments must be a JSON object", 2)
    sys.path.insert(0, os.getcwd())  # the tool is imported the way `phalanx run` imports

    async def body(runtime: Runtime) -> DeadLetterEntry:
        return await DeadLetterQueue(runtime).retry(
            entry_id, by=by, reason=reason, arguments=overrides
        )

    _after_action(_execute(store, 15.0, body), "retried and resolved", as_json)


@dlq_app.command("resolve")
def resolve_entry(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="The entry to resolve.")],
    result: Annotated[
        str, typer.Option("--result", help="The call's result, as JSON.", show_default=False)
    ],
    by: ByOption = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (journaled).")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close the entry with a result you supply; a waiting run continues with it."""
    value = _parse_json(result, "--result")

    async def body(runtime: Runtime) -> DeadLetterEntry:
        return await DeadLetterQueue(runtime).resolve(entry_id, value, by=by, reason=reason)

    _after_action(_execute(store, 15.0, body), "resolved", as_json)


@dlq_app.command("discard")
def discard_entry(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="The entry to give up on.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled).", show_default=False)],
    by: ByOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give up on the call; a waiting run continues with the tool marked unavailable."""

    async def body(runtime: Runtime) -> DeadLetterEntry:
        return await DeadLetterQueue(runtime).discard(entry_id, reason=reason, by=by)

    _after_action(_execute(store, 15.0, body), "discarded", as_json)


@tools_app.command("stats")
def stats(
    tool: Annotated[str | None, typer.Option("--tool", help="Only this tool.")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per-tool metrics from the journal: calls, failures, retries, latency, breaker, DLQ."""
    figures = _execute(store, 15.0, lambda rt: tool_stats(rt.store)).to_json(tool)
    if as_json:
        _print_json(figures)
        return
    columns = [
        Column("tool", whole=True),
        Column("calls"),
        Column("ok", drop=2),
        Column("failed"),
        Column("retries", drop=3),
        Column("rejected", drop=4),
        Column("p50/p95/p99 ms", drop=5),
        Column("breaker"),
        Column("dlq"),
        Column("failures by type", drop=1),
    ]
    rows = []
    for name, m in figures["tools"].items():
        latency = m["latency_s"]
        quantiles = "/".join(
            "-" if latency[q] is None else f"{latency[q] * 1000:.1f}" for q in ("p50", "p95", "p99")
        )
        rows.append(
            (
                name,
                str(m["calls"]),
                str(m["successes"]),
                str(m["failures"]),
                str(m["retries"]),
                str(m["rejected"]),
                quantiles,
                m["breaker"]["state"],
                str(m["dlq_depth"]),
                ", ".join(f"{k.rpartition('.')[2]} {v}" for k, v in m["attempt_failures"].items()),
            )
        )
    out.print(fit_table(out, columns, rows))
