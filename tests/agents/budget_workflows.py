"""Workflows the budget tests run (module level: `resume` and subprocesses import them).

`Counting` is a fake `Model` around the scripted one that records each request it
really answered (in memory, and in the file `BUDGET_CALLS` names, for a subprocess);
the `fetch` tool returns a long page each call, so the context grows turn by turn.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import phalanx
from phalanx.agents import (
    Agent,
    Budget,
    ModelRequest,
    ModelResponse,
    PayloadLimit,
    Prices,
    Rule,
    Script,
    ScriptedModel,
    StreamChunk,
    Turn,
    check_payload,
    open_budget,
)
from phalanx.patterns import Branch, gather
from phalanx.tools import tool

PAGE = "Leases fence stale writers; epochs only grow. " * 12  # ~560 characters


class Counting:
    """The scripted model, recording every request it answers (and slow on demand)."""

    def __init__(self, script: Script, *, delay_after: int | None = None) -> None:
        self.inner = ScriptedModel(script, latency=0.0, seconds_per_token=0.0)
        self.provider = self.inner.provider
        self.name = self.inner.name
        self.requests: list[ModelRequest] = []
        self.delay_after = delay_after

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        _note(request)
        if self.delay_after is not None and len(self.requests) > self.delay_after:
            await asyncio.sleep(30)  # a slow call: time for the test to SIGKILL us
        return await self.inner.complete(request)

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        return self.inner.stream(request)


def _note(request: ModelRequest) -> None:
    """Append the request's system message to the file BUDGET_CALLS names (if any)."""
    path = os.environ.get("BUDGET_CALLS")
    if path:
        system = next((m.content or "" for m in request.messages if m.role == "system"), "")
        with open(path, "a") as calls:
            calls.write(json.dumps({"system": system[:40]}) + "\n")


@tool
def fetch(page: int) -> str:
    """A long page of notes."""
    return f"page {page}: {PAGE}"


def script(turns: int = 4) -> Script:
    """A reader that fetches `turns` pages, then answers; summaries are short."""
    calls = tuple(Turn(tool_calls=(("fetch", {"page": n}),)) for n in range(1, turns + 1))
    return Script(
        rules=(
            Rule(r"You summarise the earlier part", (Turn(text="Pages 1+ say: leases fence."),)),
            Rule(r"You are the reader", (*calls, Turn(text="Answer: leases fence writers."))),
        )
    )


MODELS: dict[str, Counting] = {}


def model(key: str, *, turns: int = 4, delay_after: int | None = None) -> Counting:
    """One shared Counting model per key (a test reads its requests afterwards)."""
    if key not in MODELS:
        MODELS[key] = Counting(script(turns), delay_after=delay_after)
    return MODELS[key]


def reader(key: str, budget: Budget | None, **options: Any) -> Agent[str]:
    return Agent(
        "reader",
        model=model(key, **options),
        instructions="You are the reader. Fetch pages, then answer.",
        tools=[fetch],
        max_turns=8,
        budget=budget,
    )


@phalanx.workflow
async def read(
    ctx: phalanx.WorkflowContext,
    key: str,
    budget: dict[str, Any] | None = None,
    run_budget: dict[str, Any] | None = None,
    turns: int = 4,
    delay_after: int | None = None,
) -> dict[str, Any]:
    """One reader under an agent budget (and a run budget); its result and usage."""
    if run_budget is not None:
        open_budget(ctx, run_budget)
    agent = reader(
        key,
        None if budget is None else Budget.from_json(budget),
        turns=turns,
        delay_after=delay_after,
    )
    result = await agent.run(ctx, "Read about leases.")
    return {"text": result.text, "usage": result.usage.model_dump(), "turns": result.turns}


@phalanx.workflow
async def two_readers(ctx: phalanx.WorkflowContext, key: str, run_budget: dict[str, Any]) -> Any:
    """Two agents in one run draw from one run budget; the second may be refused."""
    open_budget(ctx, run_budget)
    first = await reader(f"{key}-1", None, turns=1).run(ctx, "Read about leases.")
    try:
        await reader(f"{key}-2", None, turns=1).run(ctx, "Read about leases.")
    except phalanx.BudgetExceededError as exc:
        return {"first": first.usage.model_dump(), "refused": str(exc)}
    return {"first": first.usage.model_dump(), "refused": None}


@phalanx.workflow
async def child_reader(ctx: phalanx.WorkflowContext, key: str, share: dict[str, Any]) -> Any:
    """A fan-out branch: opens the share its parent reserved, reads, reports usage."""
    ledger = open_budget(ctx, share)
    try:
        result = await reader(key, None, turns=1).run(ctx, "Read about leases.")
    except phalanx.BudgetExceededError as exc:
        return {"share": ledger.budget.to_json(), "usage": None, "refused": str(exc)}
    return {"share": ledger.budget.to_json(), "usage": result.usage.model_dump(), "refused": None}


@phalanx.workflow
async def fan_out_budget(
    ctx: phalanx.WorkflowContext, key: str, run_budget: dict[str, Any], keep: float = 0.5
) -> Any:
    """Split the run's budget into reserved shares for two branches; settle what they used."""
    ledger = open_budget(ctx, run_budget)
    names = ["left", "right"]
    shares = ledger.split(names, keep=keep)
    branches = {
        n: Branch(child_reader, {"key": f"{key}-{n}", "share": shares[n].to_json()}) for n in names
    }
    result = await gather(ctx, "readers", branches)
    for name, value in result.values.items():
        ledger.settle(name, phalanx.agents.Usage(**(value["usage"] or {})))
    return {
        "shares": {n: s.to_json() for n, s in shares.items()},
        "branches": result.values,
        "left_after": ledger.left("input_tokens"),
    }


@phalanx.workflow
async def send_report(ctx: phalanx.WorkflowContext, report: str, max_tokens: int) -> Any:
    """Check a report against a payload limit at the sender; return what happened."""
    limit = PayloadLimit(max_tokens=max_tokens, max_bytes=10_000)
    try:
        await check_payload(ctx, limit, {"report": report}, sender="chatty", recipient="boss")
    except phalanx.MessageTooLargeError as exc:
        return {"sent": False, "error": str(exc), "size": exc.size}
    return {"sent": True}


PRICED = Prices(input_per_mtok=1_000_000.0, output_per_mtok=2_000_000.0)  # $1 / $2 a token


@phalanx.workflow
async def tell_report(ctx: phalanx.WorkflowContext, to: str, report: str, max_bytes: int) -> Any:
    """Tell an actor a report under a payload limit; return what happened."""
    try:
        await phalanx.tell(ctx, to, {"report": report}, limit=PayloadLimit(max_bytes=max_bytes))
    except phalanx.MessageTooLargeError as exc:
        return {"sent": False, "unit": exc.unit}
    return {"sent": True}
