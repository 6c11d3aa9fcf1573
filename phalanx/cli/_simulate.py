"""`phalanx simulate`: a workflow through seeded fault schedules on virtual time.

The JSON contract is DESIGN.md's: `seeds_run`, `faults_injected` (counts by kind,
`crash` always among them), `failures` (each `seed`, `kind`, `message`) and, with
`--seed S`, `trace_sha256`, equal on every replay of that seed. Exit 0 when no seed
failed, 1 when one did, 2 for a usage error.

Set iteration over strings follows `PYTHONHASHSEED`, so the command runs itself again
with `PYTHONHASHSEED=0` when it is not so already: a seed then replays identically in
every process, not only within one.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from .._errors import UserError
from ..durable import check_inputs, load_workflow
from ..testing import SimulationReport, simulate
from ._app import JsonOption, _fail, _parse_object, app, out

_HASH_SEED = "PYTHONHASHSEED"


@app.command(name="simulate")
def simulate_command(
    target: Annotated[
        str, typer.Argument(metavar="MODULE:FUNCTION", help="The workflow to simulate.")
    ],
    input: Annotated[
        str | None,
        typer.Option("--input", metavar="JSON", help="JSON object of keyword arguments."),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", metavar="N", help="Run seeds 0 to N-1 (default 100)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", metavar="S", help="Replay one seed; prints its trace_sha256."),
    ] = None,
    trace: Annotated[
        bool, typer.Option("--trace", help="With --seed: print the seed's event trace.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a workflow through seeded crashes, outages and model faults on virtual time.

    Every seed runs twice and the traces are compared; exit 1 if any seed failed.
    """
    if seeds is not None and seed is not None:
        raise _fail("--seeds and --seed exclude each other: run many seeds, or replay one", 2)
    if seeds is not None and seeds < 1:
        raise _fail(f"--seeds must be at least 1, not {seeds}", 2)
    if seed is not None and seed < 0:
        raise _fail(f"--seed must be 0 or more, not {seed}", 2)
    if trace and seed is None:
        raise _fail("--trace prints one seed's trace: give --seed S", 2)
    inputs = _parse_object(input, "--input")
    if os.environ.get(_HASH_SEED) != "0":
        # Before anything is imported that hashes strings into sets the run depends on.
        argv = [sys.executable, "-m", "phalanx.cli", *sys.argv[1:]]
        os.execve(sys.executable, argv, {**os.environ, _HASH_SEED: "0"})
    sys.path.insert(0, os.getcwd())
    try:
        fn = load_workflow(target)
        check_inputs(fn, inputs)
    except UserError as exc:
        raise _fail(str(exc), 2) from exc
    report = simulate(fn, inputs, seeds=100 if seeds is None else seeds, seed=seed)
    if as_json:
        data = report.to_json()
        if trace:
            data["trace"] = report.trace
        print(json.dumps(data, ensure_ascii=False))
    else:
        _print(report, target, input, trace)
    if not report.ok:
        raise typer.Exit(1)


def _print(report: SimulationReport, target: str, input: str | None, trace: bool) -> None:
    faults = ", ".join(f"{kind} {n}" for kind, n in report.faults_injected.items())
    failed = sorted({f.seed for f in report.failures})
    out.print(f"{report.seeds_run} seed(s) simulated, {len(failed)} failed; faults: {faults}")
    if report.trace_sha256 is not None:
        out.print(f"trace_sha256 {report.trace_sha256}")
    if trace and report.trace is not None:
        for line in report.trace:
            out.print(line)
    for failure in report.failures:
        out.print(f"seed {failure.seed}: {failure.kind}: {failure.message}")
    if failed:
        again = f" --input '{input}'" if input else ""
        out.print(
            f"replay a failed seed with its event trace: phalanx simulate {target}{again} "
            f"--seed {failed[0]} --trace"
        )
