"""`phalanx demo saga`: a five-agent pipeline whose failure is undone step by step, visibly.

`--style orchestrated` (the default) runs it as a durable coordinator;
`--style choreographed` as participants reacting to each other's events. `--fault
STEP=error` makes that agent fail. Exit status: 0 when the saga completed or was
compensated (a rollback is the designed outcome of a fault), 1 when the run or the
saga failed, 2 for a bad `--fault` or `--style`.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..demo import STEPS, parse_saga_faults, run_saga_demo
from ..durable import Runtime
from ._app import _execute, _fail, err, new_run_id
from ._scenarios import DemoRequest, scenario

out = Console(highlight=False, markup=False, emoji=False, soft_wrap=True)

STYLES = ("orchestrated", "choreographed")

_COLOUR = {"completed": "green", "compensated": "yellow", "failed": "red", "not_run": "dim"}


@scenario("saga")
def demo_saga(request: DemoRequest) -> None:
    """Five agents in a row; with a fault, the finished steps are compensated in reverse."""
    style = request.style or "orchestrated"
    if style not in STYLES:
        raise _fail(f"--style must be one of {', '.join(STYLES)}, not {style!r}", 2)
    try:
        faults = parse_saga_faults(request.faults)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc

    async def body(runtime: Runtime) -> dict[str, Any]:
        chosen = await new_run_id(runtime, request.run_id)
        err.print(f"run {chosen} started (saga demo, {style}, scripted model, offline)")
        return await run_saga_demo(runtime, chosen, style, faults)

    report = _execute(request.store, request.lease_ttl, body)
    if request.as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print(report, request.store)
    if report["status"] not in ("completed", "compensated"):
        raise typer.Exit(1)


def _print(report: dict[str, Any], store: str | None) -> None:
    table = Table("step", "outcome")
    for step in STEPS:
        status = report["steps"].get(step, "not_run")
        table.add_row(step, Text(status, style=_COLOUR.get(status, "white")))
    out.print(table)
    status = report["status"]
    out.print(
        Text.assemble(
            ("saga: ", "bold"),
            (status, _COLOUR.get(status, "white")),
            f" ({report['style']})",
        )
    )
    if report["compensations"]:
        out.print(f"compensated, in order: {', '.join(report['compensations'])}")
    where = "" if store is None else f" --store {shlex.quote(store)}"
    run_id = report["run_id"]
    out.print(f"inspect: phalanx show {run_id}{where}   phalanx events {run_id}{where}")
