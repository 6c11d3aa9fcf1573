"""The budget scenario (`phalanx demo budget`): a chatty sub-agent meets backpressure.

Without budgets, a verbose sub-agent's report lands whole in the orchestrator's
context, the orchestrator's own tool results pile on, and its last requests are mostly
noise. Here the run has a budget (`open_budget`) whose context limit every agent
inherits, split into reserved shares for the two sub-agents (`concise`, `chatty`):

1. each sub-agent reads its sources within its share and sends its report to the
   orchestrator through a payload limit checked at the sender: the chatty report is
   refused (`PayloadRejected`, never truncated), so the sub-agent condenses it and
   sends that;
2. the orchestrator checks sources turn after turn; when its next request would pass
   the context budget, older turns are summarised (`ContextSummarized`, with exactly
   what was replaced) and it goes on, ending with its answer within budget.

Offline, with the scripted model (labelled as such); `max_context_tokens` is read back
from the journal: the largest input any model request of the run carried.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import workflow
from .._errors import MessageTooLargeError
from ..agents import (
    Agent,
    Budget,
    Model,
    PayloadLimit,
    Rule,
    Script,
    ScriptedModel,
    Turn,
    Usage,
    check_payload,
    open_budget,
)
from ..durable import RetryPolicy, WorkflowContext
from ..patterns import Branch, gather
from ..tools import tool
from ._limits import SCRIPTED_CALL_TIMEOUT_S

#: The context budget: no model request of the run may carry more input tokens.
BUDGET_TOKENS = 640
SUB_AGENTS = ("concise", "chatty")
#: The largest report a sub-agent may send the orchestrator.
REPORT_LIMIT = PayloadLimit(max_tokens=250, max_bytes=2000)
QUESTION = "How do leases with fencing tokens keep a paused orchestrator from corrupting a run?"

_EXCERPT = (
    "A lease gives one runner the right to write a run's journal for a while; each new "
    "holder gets a strictly larger epoch, and the store refuses appends that carry an "
    "older one, so a runner that was paused and resumed finds itself fenced out. "
)
_RAMBLE = (
    "To be thorough, let me restate the background at length before the findings, as "
    "every detail might matter to somebody at some point, including the history of "
    "distributed locks, clock skew anecdotes and several tangents about lease renewal. "
)

SCRIPT = Script(
    rules=(
        Rule(
            r"You summarise the earlier part",
            (
                Turn(
                    text="Earlier checks: leases give one writer; epochs grow; stale appends fail."
                ),
            ),
        ),
        Rule(
            r"You are the editor",
            (Turn(text="Condensed: fencing epochs make the store refuse a paused runner."),),
        ),
        Rule(
            r"You are concise",
            (
                Turn(tool_calls=(("read_source", {"source": "lease-paper"}),)),
                Turn(text="Leases plus growing epochs: the store fences stale writers."),
            ),
        ),
        Rule(
            r"You are chatty",
            (
                Turn(tool_calls=(("read_source", {"source": "ops-wiki"}),)),
                Turn(text="Report. " + _RAMBLE * 6 + "Finding: epochs fence stale writers."),
            ),
        ),
        Rule(
            r"You are the orchestrator",
            (
                *(
                    Turn(tool_calls=(("check_source", {"claim": n}),))
                    for n in ("epochs", "renewal", "takeover", "fencing", "replay")
                ),
                Turn(
                    text="A lease names one writer; every takeover raises the epoch and the "
                    "store rejects older epochs, so a paused orchestrator cannot write again."
                ),
            ),
        ),
    )
)

INSTRUCTIONS = {
    "concise": "You are concise, a research sub-agent. Read one source, report briefly.",
    "chatty": "You are chatty, a research sub-agent. Read one source and report.",
    "editor": "You are the editor. Condense the report to its findings, in two sentences.",
    "orchestrator": (
        "You are the orchestrator. Check each claim of the reports with check_source, "
        "then answer the question."
    ),
}


@tool
def read_source(source: str) -> str:
    """Read a source (an offline excerpt)."""
    return f"{source}: {_EXCERPT}"


@tool
def check_source(claim: str) -> str:
    """Check a claim against the sources (an offline excerpt, long on purpose)."""
    return f"claim {claim}: {_EXCERPT * 2}"


@functools.cache
def _model() -> Model:
    return ScriptedModel(SCRIPT, latency=0.02, seconds_per_token=0.0005)


def _agent(name: str, *, tools: tuple[Any, ...] = (), max_turns: int = 4) -> Agent[str]:
    return Agent(
        name,
        role=name,
        model=_model(),
        instructions=INSTRUCTIONS[name],
        tools=tools,
        max_turns=max_turns,
        model_retry=RetryPolicy(max_attempts=2, initial_interval=0.2, max_interval=1.0),
        timeout=SCRIPTED_CALL_TIMEOUT_S,
    )


@workflow
async def budget_sub_agent(
    ctx: WorkflowContext, agent: str, question: str, share: dict[str, Any]
) -> dict[str, Any]:
    """A sub-agent within its reserved share; its report passes the payload limit."""
    ledger = open_budget(ctx, share)
    report = (await _agent(agent, tools=(read_source,)).run(ctx, question)).text
    rejected = 0
    try:
        await check_payload(ctx, REPORT_LIMIT, report, sender=agent, recipient="orchestrator")
    except MessageTooLargeError:
        rejected += 1  # refused at the sender, never truncated: condense it, then send
        report = (await _agent("editor").run(ctx, report)).text
        await check_payload(ctx, REPORT_LIMIT, report, sender=agent, recipient="orchestrator")
    usage = Usage(input_tokens=ledger.input_used, output_tokens=ledger.output_used)
    return {"agent": agent, "report": report, "rejected": rejected, "usage": usage.model_dump()}


@workflow
async def budget_demo(ctx: WorkflowContext, question: str = QUESTION) -> dict[str, Any]:
    """Fan out within reserved shares, then synthesise within the context budget."""
    ledger = open_budget(
        ctx,
        Budget(
            input_tokens=40_000,
            output_tokens=8_000,
            context_tokens=BUDGET_TOKENS,
            actions=("summarize", "compact", "final_answer", "fail"),
        ),
    )
    shares = ledger.split(SUB_AGENTS, keep=0.5)
    branches = {
        name: Branch(
            budget_sub_agent, {"agent": name, "question": question, "share": shares[name].to_json()}
        )
        for name in SUB_AGENTS
    }
    result = await gather(ctx, "research", branches, deadline=30.0)
    values = result.values if not result.partial else await result.accept_partial("go on")
    for name in SUB_AGENTS:
        used = values.get(name, {}).get("usage") or {}
        ledger.settle(name, Usage(**used))
    reports = "\n".join(f"- {name}: {v['report']}" for name, v in values.items())
    final = await _agent("orchestrator", tools=(check_source,), max_turns=10).run(
        ctx, f"Question: {question}\n\nReports:\n{reports}"
    )
    return {
        "answer": final.text,
        "budget_tokens": BUDGET_TOKENS,
        "rejected_payloads": sum(v.get("rejected", 0) for v in values.values()),
        "reports": {name: v["report"] for name, v in values.items()},
    }
