"""`phalanx demo`: the research scenario, with a live view of the fan-out."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._errors import ConfigError
from ..agents import model_from_env
from ..demo import AGENTS, DEFAULT_QUESTION, parse_faults, real_model_configured, research
from ..durable import RunOutcome, Runtime
from ..durable.lowlevel import run_stream
from ._app import (
    JsonOption,
    LeaseOption,
    RunIdOption,
    StoreOption,
    _check_run_id,
    _execute,
    _fail,
    app,
    err,
    new_run_id,
)
from ._inspect import describe_run
from ._scenarios import RESEARCH, DemoRequest, lookup, names

#: Overrides the sub-agents' deadline (seconds), e.g. for tests against a local server.
DEADLINE_ENV = "PHALANX_DEMO_DEADLINE"

# Word-wrapped, unlike the command's line-oriented console; no markup parsing, so
# answers and errors print verbatim.
out = Console(highlight=False, markup=False, emoji=False)

_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "stalled": "yellow",
    "running": "cyan",
    "waiting": "dim",
}


async def _branch_states(
    runtime: Runtime, run_id: str, started: float
) -> dict[str, dict[str, Any]]:
    """Read the fan-out's progress from the journal alone."""
    states = {a: {"status": "waiting", "detail": "", "elapsed": 0.0} for a in AGENTS}
    events = await runtime.store.read_stream(run_stream(run_id))
    children: dict[str, str] = {}
    for event in events:
        data = event.data
        if event.type == "GatherStarted":
            children = dict(data.get("branches", {}))
            for branch in children:
                states[branch]["status"] = "running"
        elif event.type == "BranchStalled":
            states[data["branch"]]["status"] = "stalled"
            states[data["branch"]]["detail"] = f"silent for {data['silent_for']:.1f}s"
        elif event.type == "BranchFinished":
            states[data["branch"]].update(
                status=data["status"], detail=data.get("error") or "", final=data["duration_s"]
            )
    now = time.monotonic()
    for branch, child in children.items():
        state = states[branch]
        if "final" in state:
            state["elapsed"] = state["final"]
            continue
        state["elapsed"] = now - started
        tail = await runtime.store.read_stream(run_stream(child))
        if tail and state["status"] != "stalled":
            state["detail"] = f"{tail[-1].type} {tail[-1].data.get('name', '')}".strip()
    return states


def _view(run_id: str, states: dict[str, dict[str, Any]], policy: str) -> Panel:
    table = Table("branch", "status", "elapsed", "last seen", expand=True)
    for branch, state in states.items():
        status = state["status"]
        table.add_row(
            branch,
            Text(status, style=_STYLE.get(status, "white")),
            f"{state['elapsed']:.1f}s",
            str(state["detail"])[:70],
        )
    return Panel(table, title=f"research run {run_id}", subtitle=policy)


@app.command()
def demo(
    scenario: Annotated[
        str,
        typer.Argument(
            metavar="[SCENARIO]",
            help="Which demo: research (the default), or another listed by `phalanx demo --help`.",
            show_default=False,
        ),
    ] = RESEARCH,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            metavar="AGENT=MODE",
            help="Inject a fault (repeatable). research: AGENT=hang|error|slow|none, "
            "default web_search=hang, `--fault none` runs without faults; other "
            "scenarios name their own.",
        ),
    ] = None,
    style: Annotated[
        str | None,
        typer.Option("--style", metavar="STYLE", help="The scenario's variant, where it has one."),
    ] = None,
    question: Annotated[str, typer.Option("--question", help="What to research.")] = (
        DEFAULT_QUESTION
    ),
    run_id: RunIdOption = None,
    deadline: Annotated[
        float | None,
        typer.Option(
            "--deadline",
            envvar=DEADLINE_ENV,
            metavar="SECONDS",
            help="Each sub-agent's deadline, in seconds. Default: 4 with the scripted "
            "model, 60 with a real one (PHALANX_MODEL); the whole demo still ends within "
            "its own limit (60 s scripted, 115 s real).",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
    lease_ttl: LeaseOption = 15.0,
    as_json: JsonOption = False,
) -> None:
    """Run a demo; research (the default): three sub-agents, one silently hangs."""
    if scenario != RESEARCH:
        other = lookup(scenario)
        if other is None:
            raise _fail(
                f"unknown demo scenario {scenario!r}; choose one of {', '.join(names())}", 2
            )
        _check_run_id(run_id)
        request = DemoRequest(
            faults=fault,
            style=style,
            run_id=run_id,
            store=store,
            lease_ttl=lease_ttl,
            as_json=as_json,
        )
        other(request)
        return
    if style is not None:
        raise _fail("--style is not an option of the research demo", 2)
    specs = fault if fault is not None else ["web_search=hang"]
    try:
        faults = {} if specs == ["none"] else parse_faults(",".join(specs))
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    _check_run_id(run_id)
    real = real_model_configured()
    if real:
        try:
            # Checked now, not when the first sub-agent calls it: a typo or a missing
            # key must not leave a failed run and three child runs behind.
            model_from_env()
        except ConfigError as exc:
            raise _fail(str(exc), 2) from exc
    # A real model needs real time: each sub-agent gets a minute, the demo under two.
    deadline_s, heartbeat_s, overall_s = (60.0, 20.0, 115.0) if real else (4.0, 1.5, 60.0)
    if deadline is not None:
        if not 0 < deadline < overall_s:
            raise _fail(
                f"--deadline ({DEADLINE_ENV}) must be more than 0 and less than the demo's "
                f"own limit of {overall_s:g} s, got {deadline:g}",
                2,
            )
        # Stall reports stay ahead of the deadline they warn about.
        deadline_s, heartbeat_s = deadline, min(heartbeat_s, deadline / 2)
    inputs = {
        "question": question,
        "faults": faults,
        "deadline_s": deadline_s,
        "heartbeat_s": heartbeat_s,
    }

    async def body(runtime: Runtime) -> tuple[RunOutcome, dict[str, Any]]:
        chosen = await new_run_id(runtime, run_id)
        err.print(
            f"run {chosen} started (phalanx.demo:research, "
            f"{'model from PHALANX_MODEL' if real else 'scripted model, offline'})"
        )
        deadline_at = runtime.clock.now() + overall_s
        work = runtime.run(research, inputs, run_id=chosen, deadline_at=deadline_at)
        if as_json:
            return await _with_branches(runtime, await work)
        policy = f"policy: all within {deadline_s:g}s, heartbeat {heartbeat_s:g}s"
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            task = group.create_task(work)
            with Live(console=out, refresh_per_second=8, transient=False) as live:
                while not task.done():
                    states = await _branch_states(runtime, chosen, started)
                    live.update(_view(chosen, states, policy))
                    await asyncio.wait([task], timeout=0.15)
                live.update(_view(chosen, await _branch_states(runtime, chosen, started), policy))
            out.print()
        return await _with_branches(runtime, task.result())

    outcome, branches = _execute(store, lease_ttl, body)
    if as_json:
        print(json.dumps(_summary(outcome, branches), ensure_ascii=False))
    else:
        _print_report(outcome, branches, store)
    if not outcome.ok:
        raise typer.Exit(1)


async def _with_branches(
    runtime: Runtime, outcome: RunOutcome
) -> tuple[RunOutcome, dict[str, Any]]:
    """The outcome and its fan-out's branches, read from the journal.

    A run that failed has no result to carry them, yet its branches ran and ended:
    the report must list them either way.
    """
    history = await runtime.history(outcome.run_id)
    branches: dict[str, Any] = {}
    for fan_out in describe_run(history)["fan_outs"]:
        stalled = set(fan_out["stalled"])
        for name, branch in fan_out["branches"].items():
            branches[name] = {**branch, "stalled": name in stalled}
    return outcome, branches


def _summary(outcome: RunOutcome, journaled: dict[str, Any]) -> dict[str, Any]:
    result = outcome.result or {}
    branches = {
        name: {
            "status": b["status"],
            "duration_s": b["duration_s"],
            "error": b["error"],
            "stalled": b.get("stalled", False),
            "run_id": b.get("run_id"),
        }
        for name, b in (result.get("branches") or journaled).items()
    }
    return {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "partial": result.get("partial"),
        "policy": result.get("policy"),
        "answer": result.get("answer"),
        "missing": result.get("missing", []),
        "branches": branches,
        "model": result.get("model"),
        "error": None if outcome.error is None else outcome.error.get("message"),
    }


def _print_report(outcome: RunOutcome, branches: dict[str, Any], store: str | None) -> None:
    summary = _summary(outcome, branches)
    table = Table("branch", "outcome", "duration", "error")
    for name, branch in summary["branches"].items():
        status = branch["status"] + (" (stalled)" if branch["stalled"] else "")
        table.add_row(
            name,
            Text(status, style=_STYLE.get(branch["status"], "white")),
            "" if branch["duration_s"] is None else f"{branch['duration_s']:.2f}s",
            branch["error"] or "",
        )
    out.print(table)
    out.print(Text.assemble(("policy: ", "bold"), str(summary["policy"])))
    out.print(Text.assemble(("model: ", "bold"), str(summary["model"])))
    if summary["partial"]:
        out.print(
            Text.assemble(
                ("PARTIAL: ", "bold yellow"),
                f"no result from {', '.join(summary['missing'])}; the answer below says so, "
                "and accepting it was journaled as a decision",
            )
        )
    answer = Text(str(summary["answer"] or summary["error"]))
    out.print(Panel(answer, title=f"answer ({outcome.status})"))
    where = "" if store is None else f" --store {shlex.quote(store)}"
    out.print(
        f"inspect: phalanx show {outcome.run_id}{where}   "
        f"phalanx events {outcome.run_id}{where}   phalanx runs{where}"
    )
