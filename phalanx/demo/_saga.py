"""The saga scenario (`phalanx demo saga`): a content pipeline that rolls back visibly.

Five agents in a row, each on the scripted model (offline): `research` gathers
sources, `outline` structures them, `draft` writes, `fact_check` validates the claims,
`edit` polishes. Each step has a compensating action declared before it runs
(discard the sources, the outline, the draft...). `--fault fact_check=error` makes the
fact-checker's model fail: retrying only that step cannot help, restarting from the
top is waste and leaving the first three steps half-committed is worse, so the saga
undoes draft, outline and research, in that order, each durably and idempotently, and
says so in the journal (`CompensationStarted` / `CompensationCompleted`).

The orchestrated style runs the saga as a durable coordinator (`Saga`); the
choreographed one has no coordinator (see `_saga_choreo`). Both end the same way.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from .. import workflow
from ..agents import (
    Fault,
    FaultyModel,
    Message,
    Model,
    ModelRequest,
    Rule,
    Script,
    ScriptedModel,
    Turn,
)
from ..durable import RetryPolicy, Runtime, WorkflowContext
from ..patterns import Choreography, Saga, SagaState, SagaStep, saga_views
from ._limits import SCRIPTED_CALL_TIMEOUT_S

#: The pipeline's agents, in order; each is also its step's name.
STEPS = ("research", "outline", "draft", "fact_check", "edit")
TOPIC = "why agent pipelines need sagas"
FAULT_KINDS = ("error", "none")

INSTRUCTIONS = {
    "research": "You are research. Gather three sources on the topic, one line each.",
    "outline": "You are outline. Structure the sources into a three-part outline.",
    "draft": "You are draft. Write a short draft from the outline.",
    "fact_check": "You are fact_check. Check every claim of the draft against the sources.",
    "edit": "You are edit. Polish the draft into the final text.",
}
ANSWERS = {
    "research": "Sources: Garcia-Molina & Salem 1987 (sagas); Temporal Saga docs; "
    "the Akka saga pattern.",
    "outline": "1. Half-done pipelines. 2. Compensating actions. 3. Durable rollback.",
    "draft": "An agent pipeline that fails at step four must not leave steps one to three "
    "half-committed: each step declares how to undo itself.",
    "fact_check": "All three claims are supported by the sources.",
    "edit": "Agent pipelines fail half-way; sagas undo the finished steps, in reverse, "
    "durably, so nothing is left half-done.",
}
#: What each compensation does, as it reports it.
UNDONE = {
    "research": "discarded the gathered sources",
    "outline": "discarded the outline",
    "draft": "retracted the draft",
    "fact_check": "withdrew the fact-check report",
    "edit": "unpublished the edited text",
}

SCRIPT = Script(
    rules=tuple(Rule(rf"You are {name}\.", (Turn(text=ANSWERS[name]),)) for name in STEPS)
)

#: Model errors are worth one quick retry; the saga takes over after that.
STEP_RETRY = RetryPolicy(max_attempts=2, initial_interval=0.05, max_interval=0.1)
UNDO_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.05, max_interval=0.2)


def parse_saga_faults(specs: list[str] | None) -> dict[str, str]:
    """`STEP=error[,STEP=error]` (repeatable) to {step: "error"}; `none` clears.

    Raises:
        ValueError: an unknown step or fault kind (the message lists the valid ones).
    """
    faults: dict[str, str] = {}
    for part in ",".join(specs or []).split(","):
        if not part.strip() or part.strip() == "none":
            continue
        step, sep, kind = (p.strip() for p in part.partition("="))
        if not sep or step not in STEPS or kind not in FAULT_KINDS:
            raise ValueError(
                f"bad fault {part.strip()!r}: use STEP=KIND with STEP one of "
                f"{', '.join(STEPS)} and KIND one of {', '.join(FAULT_KINDS)}"
            )
        if kind == "none":
            faults.pop(step, None)
        else:
            faults[step] = kind
    return faults


@functools.cache
def _model(failing: tuple[str, ...]) -> Model:
    base = ScriptedModel(SCRIPT, latency=0.02, seconds_per_token=0.0005)
    if not failing:
        return base
    return FaultyModel(
        base, {rf"^You are {step}\.": Fault("error", status=503) for step in failing}
    )


def prompt_for(step: str, results: dict[str, Any]) -> str:
    """What an agent is asked: the topic, and what the step before it produced."""
    earlier = [r["text"] for r in results.values() if isinstance(r, dict) and "text" in r]
    return f"Topic: {TOPIC}\n\n" + (f"Input:\n{earlier[-1]}" if earlier else "Start.")


async def run_agent(step: str, results: dict[str, Any], faults: dict[str, str]) -> dict[str, Any]:
    """One agent's turn: its instructions and its input to the (scripted) model."""
    request = ModelRequest(
        messages=(Message.system(INSTRUCTIONS[step]), Message.user(prompt_for(step, results)))
    )
    # The loop's timer, so virtual under simulation; a timeout fails the step and the
    # saga compensates.
    async with asyncio.timeout(SCRIPTED_CALL_TIMEOUT_S):
        response = await _model(tuple(sorted(faults))).complete(request)
    return {"agent": step, "text": response.text or ""}


def undo(step: str, result: Any) -> dict[str, Any]:
    """A step's compensation: what it undid (a real one would call the system it changed)."""
    return {"agent": step, "undone": UNDONE[step]}


def _action(step: str) -> Any:
    async def act(state: SagaState) -> dict[str, Any]:
        return await run_agent(step, dict(state.results), dict(state.inputs.get("faults", {})))

    act.__name__ = step
    return act


def _compensation(step: str) -> Any:
    def compensate(result: Any, idempotency_key: str) -> dict[str, Any]:
        return {**undo(step, result), "key": idempotency_key}

    return compensate


_STEPS = [
    SagaStep(
        name,
        _action(name),
        compensation=_compensation(name),
        retry=STEP_RETRY,
        compensation_retry=UNDO_RETRY,
        compensation_timeout=SCRIPTED_CALL_TIMEOUT_S,
    )
    for name in STEPS
]
#: The orchestrated style: a durable coordinator runs the steps.
PIPELINE = Saga("content", _STEPS)
#: The choreographed style: a participant per step, reacting to the others' events.
CHOREOGRAPHY = Choreography("content", _STEPS)


@workflow
async def saga_demo(ctx: WorkflowContext, faults: dict[str, str] | None = None) -> dict[str, Any]:
    """The content pipeline as an orchestrated saga."""
    return (await PIPELINE.run(ctx, {"faults": dict(faults or {})})).to_json()


@workflow
async def choreographed_saga_demo(
    ctx: WorkflowContext, faults: dict[str, str] | None = None
) -> dict[str, Any]:
    """The content pipeline choreographed: this run starts it and keeps its journal."""
    return (await CHOREOGRAPHY.run(ctx, {"faults": dict(faults or {})})).to_json()


async def run_choreographed(runtime: Runtime, run_id: str, faults: dict[str, str]) -> None:
    """Run every participant here while the saga runs, then stop them."""
    async with asyncio.TaskGroup() as group:
        participants = group.create_task(
            CHOREOGRAPHY.serve(runtime.store, clock=runtime.clock, entropy=runtime.entropy)
        )
        try:
            await runtime.run(choreographed_saga_demo, {"faults": faults}, run_id=run_id)
        finally:
            participants.cancel()


async def saga_report(runtime: Runtime, run_id: str, style: str) -> dict[str, Any]:
    """The `demo saga --json` object, read from the run's journal alone."""
    history = await runtime.history(run_id)
    views = saga_views(history.events)
    view = views[0] if views else None
    steps = dict.fromkeys(STEPS, "not_run")
    if view is not None:
        steps.update({k: v for k, v in view.steps.items() if v != "running"})
    status = "failed" if view is None or history.status == "failed" else view.status
    return {
        "run_id": run_id,
        "style": style,
        "status": status,
        "steps": steps,
        "compensations": [] if view is None else list(view.compensations),
        "saga_id": None if view is None else view.saga_id,
        "error": None if history.error is None else history.error.get("message"),
    }


async def run_saga_demo(
    runtime: Runtime, run_id: str, style: str, faults: dict[str, str]
) -> dict[str, Any]:
    """Run the pipeline in `style` under `run_id`; report it from the journal."""
    if style == "choreographed":
        await run_choreographed(runtime, run_id, faults)
    else:
        await runtime.run(saga_demo, {"faults": faults}, run_id=run_id)
    return await saga_report(runtime, run_id, style)
