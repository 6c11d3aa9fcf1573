"""The research scenario: an orchestrator fans out to three sub-agents, one hangs.

Sub-agents (their names are also their branch names): `vector_db` (retrieval over a
small corpus shipped in the package), `web_search` (an offline snapshot, never the
internet) and `synthesis` (condenses the conversation so far). Offline the scripted
model plays every agent; with `PHALANX_MODEL` set, that model does, and each agent's
requests start with its own instructions. A fault can be injected into one agent
(`hang`, `error`, `slow`) to show the runtime catching it.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from importlib import resources
from typing import Any

from .. import workflow
from ..agents import (
    MODEL_ENV,
    Agent,
    Budget,
    Fault,
    FaultyModel,
    Model,
    Rule,
    Script,
    ScriptedModel,
    Turn,
    model_from_env,
)
from ..durable import RetryPolicy, WorkflowContext
from ..patterns import Branch, Policy, gather
from ..tools import tool
from ._limits import SCRIPTED_CALL_TIMEOUT_S

AGENTS = ("vector_db", "web_search", "synthesis")
#: Each demo model request's output-token limit (see `make_agent`).
DEMO_MAX_TOKENS = 256
FAULT_KINDS = ("hang", "error", "slow", "none")

DEFAULT_QUESTION = (
    "Why do multi-agent LLM pipelines produce confident answers from partial data, "
    "and which distributed-systems patterns prevent it?"
)

INSTRUCTIONS = {
    "vector_db": (
        "You are vector_db, the retrieval agent. Call search_vectors with a focused query "
        "to find passages relevant to the question, then answer with the key points, "
        "citing document ids like [doc-1]. Be brief."
    ),
    "web_search": (
        "You are web_search, the web search agent. Call web_search (an offline snapshot) "
        "to find pages relevant to the question, then answer with the key points, citing "
        "their URLs. Be brief."
    ),
    "synthesis": (
        "You are synthesis, the context-synthesis agent. Call load_context to read the "
        "notes from the conversation so far, then condense what the user needs from this "
        "answer in two sentences."
    ),
    "orchestrator": (
        "You are the orchestrator of a research team. Write the final answer to the "
        "question from the findings given. If a source is listed as missing, say plainly "
        "that the answer is incomplete and which source is missing; never present partial "
        "findings as complete."
    ),
}

SCRIPT = Script(
    rules=(
        Rule(
            r"You are vector_db",
            (
                Turn(
                    tool_calls=(("search_vectors", {"query": "fan-out deadline partial", "k": 3}),)
                ),
                Turn(text="Retrieved passages: {tool_results}"),
            ),
        ),
        Rule(
            r"You are web_search",
            (
                Turn(tool_calls=(("web_search", {"query": "supervision structured concurrency"}),)),
                Turn(text="From the web snapshot: {tool_results}"),
            ),
        ),
        Rule(
            r"You are synthesis",
            (
                Turn(tool_calls=(("load_context", {"topic": "silent failures"}),)),
                Turn(
                    text="The user wants failures to be visible and policies explicit. "
                    "Context: {tool_results}"
                ),
            ),
        ),
        Rule(
            r"You are the orchestrator",
            (
                Turn(
                    text="Pipelines answer confidently from partial data when a fan-out drops "
                    "a branch that never answered. The fix is to treat agents as a "
                    "distributed system: declare a completion policy with a deadline, "
                    "record every branch's outcome, detect stalls by heartbeat, and make "
                    "using partial results an explicit, journaled decision."
                ),
            ),
        ),
    )
)


@functools.cache
def _data(name: str) -> Any:
    return json.loads(resources.files("phalanx.demo").joinpath("data", name).read_text("utf-8"))


@functools.lru_cache(maxsize=256)
def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z]+", text.lower()))


@tool
def search_vectors(query: str, k: int = 3) -> str:
    """Find the k passages of the local corpus most similar to `query`."""
    wanted = _words(query)

    def score(doc: dict[str, str]) -> float:
        have = _words(doc["title"] + " " + doc["text"])
        dot = sum(wanted[w] * have[w] for w in wanted)
        norm = math.sqrt(sum(v * v for v in have.values())) or 1.0
        return dot / norm

    ranked = sorted(_data("corpus.json"), key=score, reverse=True)[: max(1, min(k, 8))]
    return " ".join(f"[{d['id']}] {d['title']}: {d['text'][:140]}" for d in ranked)


@tool
def web_search(query: str) -> str:
    """Search an offline snapshot of web pages (no network access)."""
    wanted = set(_words(query))
    pages = [p for p in _data("web_snapshot.json") if wanted & set(_words(p["text"] + p["title"]))]
    return " ".join(f"{p['url']}: {p['text']}" for p in pages[:3]) or "no results"


@tool
def load_context(topic: str) -> str:
    """Read the notes kept from the conversation so far."""
    return " ".join(_data("context.json")["notes"])


TOOLS = {"vector_db": [search_vectors], "web_search": [web_search], "synthesis": [load_context]}


def parse_faults(spec: str | None) -> dict[str, str]:
    """`AGENT=KIND[,AGENT=KIND]` to a mapping; `none` clears.

    Raises:
        ValueError: an unknown agent or fault kind (the message lists the valid ones).
    """
    faults: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        agent, sep, kind = part.partition("=")
        agent, kind = agent.strip(), kind.strip()
        if not sep or agent not in AGENTS or kind not in FAULT_KINDS:
            raise ValueError(
                f"bad fault {part!r}: use AGENT=KIND with AGENT one of {', '.join(AGENTS)} "
                f"and KIND one of {', '.join(FAULT_KINDS)}"
            )
        if kind != "none":
            faults[agent] = kind
    return faults


def real_model_configured() -> bool:
    """Whether `PHALANX_MODEL` names a real model (not the scripted default)."""
    import os

    return os.environ.get(MODEL_ENV, "scripted").strip() not in ("", "scripted")


@functools.cache
def _base_model() -> Model:
    if real_model_configured():
        return model_from_env()
    return ScriptedModel(SCRIPT, latency=0.15, seconds_per_token=0.004)


def model_for(faults: tuple[tuple[str, str], ...]) -> Model:
    """The model every agent uses, with the chosen faults injected per agent."""
    # `slow` delays every model call, and a sub-agent makes two (a tool call, then its
    # answer): the delays must add up to clearly slow yet within the deadline (4 s
    # scripted, 60 s real), or `slow` would look exactly like `hang`.
    slow = 3.0 if real_model_configured() else 1.0
    injected = {
        rf"^You are {agent}\b": Fault(kind, delay=slow, status=503)  # type: ignore[arg-type]  # kinds checked by parse_faults
        for agent, kind in faults
    }
    base = _base_model()
    return FaultyModel(base, injected) if injected else base


def make_agent(name: str, faults: tuple[tuple[str, str], ...]) -> Agent[str]:
    """One of the scenario's agents."""
    return Agent(
        name,
        role=name,
        model=model_for(faults),
        instructions=INSTRUCTIONS[name],
        tools=TOOLS.get(name, ()),
        max_turns=4,
        # Fail fast: the fan-out's deadline, not the model retry, bounds a branch.
        model_retry=RetryPolicy(max_attempts=2, initial_interval=0.2, max_interval=1.0),
        # Brief answers, and a bound on each generation: a small local model asked with
        # no limit once generated past the 60 s deadline (a tool call needs ~50 tokens).
        budget=Budget(max_tokens=DEMO_MAX_TOKENS),
        # The fan-out bounds the sub-agents; this bounds the final answer, which a
        # hanging model would otherwise hold forever (found by `phalanx simulate`).
        timeout=(50.0 if real_model_configured() else SCRIPTED_CALL_TIMEOUT_S)
        if name == "orchestrator"
        else None,
    )


@workflow
async def sub_agent(
    ctx: WorkflowContext, agent: str, question: str, faults: dict[str, str]
) -> dict[str, Any]:
    """One sub-agent's branch: its own durable run."""
    result = await make_agent(agent, tuple(sorted(faults.items()))).run(ctx, question)
    return {"agent": agent, "text": result.text, "usage": result.usage.model_dump()}


@workflow
async def research(
    ctx: WorkflowContext,
    question: str = DEFAULT_QUESTION,
    faults: dict[str, str] | None = None,
    deadline_s: float = 4.0,
    heartbeat_s: float = 1.5,
) -> dict[str, Any]:
    """Fan out to the three sub-agents, apply the policy, answer (visibly partial)."""
    faults = dict(faults or {})
    branches = {
        name: Branch(sub_agent, {"agent": name, "question": question, "faults": faults})
        for name in AGENTS
    }
    policy = Policy.all()
    result = await gather(
        ctx,
        "research",
        branches,
        policy=policy,
        deadline=deadline_s,
        heartbeat_timeout=heartbeat_s,
    )
    described = f"{result.policy} within {deadline_s:g}s; on a missing branch: degrade visibly"
    if result.partial:
        missing = ", ".join(f"{b} ({result.outcomes[b].status})" for b in result.missing)
        values = await result.accept_partial(
            f"degrade visibly: answer from {len(AGENTS) - len(result.missing)} of "
            f"{len(AGENTS)} sources; missing {missing}"
        )
    else:
        values = result.values
    findings = "\n".join(f"- {name}: {value['text']}" for name, value in values.items())
    missing_note = "\n".join(
        f"- {b}: MISSING ({result.outcomes[b].status}: {result.outcomes[b].error})"
        for b in result.missing
    )
    prompt = f"Question: {question}\n\nFindings:\n{findings}" + (
        f"\n\nMissing sources:\n{missing_note}" if missing_note else ""
    )
    final = await make_agent("orchestrator", ()).run(ctx, prompt)
    answer = final.text
    if result.partial:
        answer = f"[PARTIAL ANSWER: no result from {', '.join(result.missing)}] {answer}"
    return {
        "answer": answer,
        "partial": result.partial,
        "policy": described,
        "missing": result.missing,
        "branches": {name: o.to_json() for name, o in result.outcomes.items()},
        "model": f"{final_model_label()}",
    }


def final_model_label() -> str:
    """How the model is shown: the scripted one is always labelled as such."""
    model = _base_model()
    if model.provider == "scripted":
        return f"scripted ({model.name}, offline; not a real model)"
    return f"{model.provider}:{model.name}"
