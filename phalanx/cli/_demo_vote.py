"""`phalanx demo vote`: three replicas answer one question; dissent is shown, a split escalates.

Exit status: 0 when the vote was decided (accepted) or escalated to a person (the run
parks `waiting`, as designed: the report says how to answer); 1 when the run failed; 2
for a bad `--fault`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._errors import UnknownRunError
from ..demo import REPLICAS, VOTE, parse_vote_faults, vote_demo
from ..durable import RunOutcome, Runtime
from ..patterns import vote_signal
from ._app import _execute, _fail, err, new_run_id
from ._scenarios import DemoRequest, scenario

out = Console(highlight=False, markup=False, emoji=False, soft_wrap=True)

#: How often the running demo is looked at for having parked (seconds).
_POLL_S = 0.05


@scenario("vote")
def demo_vote(request: DemoRequest) -> None:
    """One question, three replicas, a majority vote; a wrong replica is outvoted visibly."""
    if request.style is not None:
        raise _fail("--style is not an option of the vote demo", 2)
    try:
        faults = parse_vote_faults(request.faults)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc

    async def body(runtime: Runtime) -> dict[str, Any]:
        chosen = await new_run_id(runtime, request.run_id)
        err.print(f"run {chosen} started (phalanx.demo:vote_demo, scripted model, offline)")
        return await _run_until_decided(runtime, chosen, faults)

    report = _execute(request.store, request.lease_ttl, body)
    if request.as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print(report, request.store)
    if report["status"] not in ("completed", "waiting"):
        raise typer.Exit(1)


async def _run_until_decided(
    runtime: Runtime, run_id: str, faults: dict[str, str]
) -> dict[str, Any]:
    """Run the demo until it ends or parks waiting for a person; report from the journal.

    A parked run is handed back (its runner stops, journals `RunInterrupted`, releases
    the lease): the person's signal is for whoever resumes it, `phalanx resume RUN`.
    """
    async with asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(vote_demo, {"faults": faults}, run_id=run_id))
        while not task.done():
            await asyncio.wait([task], timeout=_POLL_S)
            if not task.done() and await _parked(runtime, run_id):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                break
    if task.cancelled():
        return await _report(runtime, RunOutcome(run_id, "waiting"))
    return await _report(runtime, task.result())


async def _parked(runtime: Runtime, run_id: str) -> bool:
    """Whether the run waits for a signal now (False before its first event is in)."""
    try:
        return (await runtime.history(run_id)).status == "waiting"
    except UnknownRunError:
        return False  # the run's task has not written `RunStarted` yet


async def _report(runtime: Runtime, outcome: RunOutcome) -> dict[str, Any]:
    """The `demo vote --json` object: the result, or the journaled decision of a parked run."""
    decided: dict[str, Any] = {}
    if outcome.status == "completed" and isinstance(outcome.result, dict):
        decided = outcome.result
    else:
        for event in (await runtime.history(outcome.run_id)).events:
            if event.type == "VoteDecided":
                decided = dict(event.data)
    votes = decided.get("votes") or {}
    return {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "decision": decided.get("decision"),
        "answer": decided.get("answer"),
        "votes": {r: votes.get(r) for r in REPLICAS},
        "agreement": decided.get("agreement"),
        "disagreement": decided.get("disagreement"),
        "dissenters": decided.get("dissenters", []),
        "reason": decided.get("reason"),
        "signal": vote_signal(VOTE) if outcome.status == "waiting" else None,
        "error": None if outcome.error is None else outcome.error.get("message"),
    }


def _print(report: dict[str, Any], store: str | None) -> None:
    table = Table("replica", "answer", "agrees")
    dissenters = set(report["dissenters"])
    for replica, answer in report["votes"].items():
        agrees = "no" if replica in dissenters else "yes"
        if answer is None or report["answer"] is None:
            agrees = "-"  # no answer of its own, or nothing decided to agree with
        style = "red" if replica in dissenters else "green"
        table.add_row(replica, str(answer), Text(agrees, style=style))
    out.print(table)
    decision = str(report["decision"])
    out.print(
        Text.assemble(
            ("decision: ", "bold"),
            (decision, "green" if decision == "accepted" else "yellow"),
            f" ({report['reason']})",
        )
    )
    if report["agreement"] is not None:
        out.print(f"agreement: {report['agreement']:.2f}   disagreement: {report['disagreement']}")
    where = "" if store is None else f" --store {shlex.quote(store)}"
    run_id = report["run_id"]
    if report["status"] == "waiting":
        out.print(
            Text.assemble(
                ("ESCALATED: ", "bold yellow"),
                "no majority; the run waits for a person. Answer, then resume it:\n",
                f"  phalanx signal {run_id} {report['signal']} --data "
                f'\'{{"answer": "...", "by": "you"}}\'{where}\n',
                f"  phalanx resume {run_id}{where}",
            )
        )
    else:
        out.print(f"answer: {report['answer']}")
    out.print(f"inspect: phalanx events {run_id}{where}   phalanx runs{where}")
