"""`phalanx eval RUBRIC --run RUN ... | --replay RUN`: score recorded runs against a rubric.

Exit status: 0 every run passed, 1 a run failed a criterion (or the eval run itself
failed), 2 a usage error (no rubric file, a rubric with errors, an unknown run, neither
or both of --run and --replay).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .._errors import RubricError
from ..durable import Runtime
from ..evals import EvalReport, evaluate, junit_xml, load_rubric
from ._app import JsonOption, StoreOption, _execute, _fail, app, out
from ._table import Column, fit_table


def _print(report: EvalReport) -> None:
    for run in report.runs:
        verdict = "PASSED" if run.passed else "FAILED"
        out.print(f"run {run.run_id} ({run.status}): {verdict}  score {run.score:.2f}")
        columns = [
            Column("criterion", whole=True),
            Column("result", whole=True),
            Column("score", whole=True),
            Column("needs", whole=True, drop=2),
            Column("evaluator", whole=True, drop=1),
            Column("detail"),
        ]
        rows = [
            (
                r.criterion,
                "pass" if r.passed else "FAIL",
                "-" if r.score is None else f"{r.score:g}",
                f"{r.threshold:g}",
                r.evaluator,
                r.detail,
            )
            for r in run.results
        ]
        table = fit_table(out, columns, rows)
        out.print(table)
    for a in report.agreement:
        kappa = "undefined" if a.kappa is None else f"{a.kappa:.2f}"
        out.print(
            f"judges {a.judges[0]} and {a.judges[1]} on {a.criterion}: agreed on "
            f"{a.agreed} of {a.count} ({a.rate:.0%}), Cohen's kappa {kappa}"
        )
    if report.replay is not None:
        out.print(f"replay of {report.replay['original']} as {report.replay['replay']}:")
        table = Table("criterion", "before", "after", "delta", "pairwise (both orders)")
        for row in report.replay["criteria"]:
            delta = row["delta"]
            pairwise = "; ".join(
                f"{p['judge']}: {p['preferred']} ({'/'.join(p['orders'])})"
                for p in row.get("pairwise", ())
            )
            table.add_row(
                row["criterion"],
                "-" if row["before"] is None else f"{row['before']:g}",
                "-" if row["after"] is None else f"{row['after']:g}",
                "-" if delta is None else f"{delta:+g}",
                pairwise,
            )
        out.print(table)
    if report.eval_run_id:
        out.print(f"eval run {report.eval_run_id}")


@app.command("eval")
def eval_command(
    rubric: Annotated[str, typer.Argument(metavar="RUBRIC", help="The rubric file (YAML/JSON).")],
    run: Annotated[
        list[str] | None,
        typer.Option("--run", metavar="RUN", help="A recorded run to score (repeatable)."),
    ] = None,
    replay: Annotated[
        str | None,
        typer.Option(
            "--replay",
            metavar="RUN",
            help="Re-run this run's inputs with the current code and model; score both.",
        ),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", metavar="FILE", help="Also write JUnit XML here.")
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score recorded runs against a rubric (exit 0 all pass, 1 any fails)."""
    if bool(run) == (replay is not None):
        raise _fail("give either --run RUN (one or more) or --replay RUN", 2)
    try:
        chosen = load_rubric(rubric)
    except RubricError as exc:
        raise _fail(str(exc), 2) from exc
    # A replayed workflow is imported by name, as `phalanx run` imports it.
    sys.path.insert(0, os.getcwd())

    async def body(runtime: Runtime) -> EvalReport:
        return await evaluate(runtime, chosen, list(run or ()), replay_of=replay)

    report = _execute(store, 15.0, body)
    if junit is not None:
        try:
            junit.write_text(junit_xml(report), "utf-8")
        except OSError as exc:
            raise _fail(f"cannot write --junit {junit}: {exc}", 2) from exc
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        _print(report)
    if not report.passed:
        raise typer.Exit(1)
