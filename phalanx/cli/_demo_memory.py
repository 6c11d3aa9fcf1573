"""`phalanx demo memory`: the lost-update scenario, naive and through phalanx, side by side."""

from __future__ import annotations

import json
import shlex
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..demo import memory_demo
from ..durable import RunOutcome, Runtime
from ._app import _execute, _fail, err, new_run_id
from ._scenarios import DemoRequest, scenario

out = Console(highlight=False, markup=False, emoji=False)


@scenario("memory")
def demo_memory(request: DemoRequest) -> None:
    """Two agents add findings to one plan: naively (lost updates), then with compare-and-set."""
    if request.faults is not None:
        raise _fail("--fault is not an option of the memory demo", 2)
    if request.style is not None:
        raise _fail("--style is not an option of the memory demo", 2)

    async def body(runtime: Runtime) -> RunOutcome:
        chosen = await new_run_id(runtime, request.run_id)
        err.print(f"run {chosen} started (phalanx.demo:memory_demo, scripted model, offline)")
        return await runtime.run(memory_demo, {}, run_id=chosen)

    outcome = _execute(request.store, request.lease_ttl, body)
    if not outcome.ok:
        message = (outcome.error or {}).get("message", outcome.status)
        raise _fail(f"memory demo run {outcome.run_id} {outcome.status}: {message}", 1)
    report = _report(outcome)
    if request.as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print(report, request.store)


def _report(outcome: RunOutcome) -> dict[str, Any]:
    result = outcome.result
    naive, phalanx = result["naive"], result["phalanx"]
    return {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "naive": {
            "writes": naive["writes"],
            "lost_updates": naive["lost_updates"],
            "lost": naive["lost"],
            "final": naive["final"],
        },
        "phalanx": {
            "writes": phalanx["writes"],
            "lost_updates": phalanx["lost_updates"],
            "conflicts": phalanx["conflicts"],
            "lost": phalanx["lost"],
            "final": phalanx["final"],
        },
    }


def _print(report: dict[str, Any], store: str | None) -> None:
    naive, phalanx = report["naive"], report["phalanx"]
    table = Table("", "naive (read, blind write)", "phalanx (compare-and-set)")
    table.add_row("updates attempted", str(naive["writes"]), str(phalanx["writes"]))
    table.add_row("lost updates", str(naive["lost_updates"]), str(phalanx["lost_updates"]))
    table.add_row("conflicts (refused, merged)", "-", str(phalanx["conflicts"]))
    table.add_row(
        "findings in the final plan", str(len(naive["final"])), str(len(phalanx["final"]))
    )
    out.print(table)
    if naive["lost"]:
        out.print(f"lost naively, and nobody was told: {', '.join(naive['lost'])}")
    where = "" if store is None else f" --store {shlex.quote(store)}"
    out.print(f"inspect: phalanx events {report['run_id']}{where}")
    if phalanx["lost_updates"]:
        raise typer.Exit(1)
