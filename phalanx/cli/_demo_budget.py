"""`phalanx demo budget`: a chatty sub-agent would overflow the orchestrator; budgets hold.

The report is read back from the journal of the run and its child runs alone: the
largest input any model request carried, every summary and every refused payload.
Exit status: 0 the run completed within its budget, 1 it did not, 2 a usage error.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..demo import BUDGET_TOKENS, budget_demo
from ..durable import RunOutcome, Runtime
from ._app import _execute, _fail, err, new_run_id
from ._scenarios import DemoRequest, scenario

out = Console(highlight=False, markup=False, emoji=False, soft_wrap=True)

#: Model steps whose requests count as context sent to a model.
_MODEL_OPERATIONS = ("chat", "summarize")


@scenario("budget")
def demo_budget(request: DemoRequest) -> None:
    """A chatty sub-agent and a growing context, kept within a token budget."""
    if request.faults is not None:
        raise _fail("--fault is not an option of the budget demo", 2)
    if request.style is not None:
        raise _fail("--style is not an option of the budget demo", 2)

    async def body(runtime: Runtime) -> dict[str, Any]:
        chosen = await new_run_id(runtime, request.run_id)
        err.print(f"run {chosen} started (phalanx.demo:budget_demo, scripted model, offline)")
        return await _report(runtime, await runtime.run(budget_demo, {}, run_id=chosen))

    report = _execute(request.store, request.lease_ttl, body)
    if request.as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print(report, request.store)
    if report["status"] != "completed" or report["max_context_tokens"] > report["budget_tokens"]:
        raise typer.Exit(1)


async def _report(runtime: Runtime, outcome: RunOutcome) -> dict[str, Any]:
    """The `demo budget --json` object, counted from the run tree's journals."""
    tree = [
        r.run_id
        for r in await runtime.runs()
        if r.run_id == outcome.run_id or r.run_id.startswith(f"{outcome.run_id}.")
    ]
    largest, summaries, rejected = 0, [], 0
    for run_id in tree:
        for event in (await runtime.history(run_id)).events:
            data = event.data
            if event.type == "StepCompleted":
                tags = data.get("tags") or {}
                if tags.get("operation") in _MODEL_OPERATIONS:
                    usage = (data.get("result") or {}).get("usage") or {}
                    largest = max(largest, int(usage.get("input_tokens", 0)))
            elif event.type == "ContextSummarized":
                summaries.append(
                    {
                        "run_id": run_id,
                        "agent": data.get("agent"),
                        "turn": data.get("turn"),
                        "replaced_messages": len(data.get("replaced") or []),
                        "summary": data.get("summary"),
                    }
                )
            elif event.type == "PayloadRejected":
                rejected += 1
    result = outcome.result if isinstance(outcome.result, dict) else {}
    return {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "budget_tokens": BUDGET_TOKENS,
        "max_context_tokens": largest,
        "summaries": len(summaries),
        "rejected_payloads": rejected,
        "answer": result.get("answer"),
        "where_summarised": summaries,
        "error": None if outcome.error is None else outcome.error.get("message"),
    }


def _print(report: dict[str, Any], store: str | None) -> None:
    table = Table("", "value")
    table.add_row("context budget (tokens)", str(report["budget_tokens"]))
    table.add_row("largest context sent (tokens)", str(report["max_context_tokens"]))
    table.add_row("summaries", str(report["summaries"]))
    table.add_row("payloads refused at the sender", str(report["rejected_payloads"]))
    out.print(table)
    for summary in report["where_summarised"]:
        out.print(
            f"summarised: {summary['agent']} turn {summary['turn']} replaced "
            f"{summary['replaced_messages']} messages with: {summary['summary']}"
        )
    out.print(f"answer ({report['status']}): {report['answer'] or report['error']}")
    where = "" if store is None else f" --store {shlex.quote(store)}"
    out.print(f"inspect: phalanx events {report['run_id']}{where}   phalanx runs{where}")
