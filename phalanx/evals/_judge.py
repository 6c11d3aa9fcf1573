"""LLM-as-judge inside an eval run: journaled prompt, raw output, score and reasoning.

A judge is an `Agent` with a structured output type (a score bounded by the criterion's
scale, and its reasoning), so its answer is validated and repaired like any agent's:
an answer that is not that JSON is sent back with the validation errors, once; still
invalid, it is a `JudgeError` carrying the raw output. The judge runs under a deadline
(a hanging model is a `JudgeError` too, never a hung eval).

Journal (in the eval run's stream, one operation per question asked):
`JudgeStarted` {judge, criterion, run_id, prompt} before the model is asked, then
`JudgeVerdict` {score, reasoning, raw_output, error}. A resumed eval run answers from
them without asking again.

Pairwise comparison (`compare`) asks twice, with the two answers in both orders, and
keeps a preference only when both orders agree: a judge that prefers whatever comes
first (position bias) gives a tie, recorded as such (`JudgeCompared`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from .._errors import (
    AgentTimeoutError,
    ConfigError,
    JudgeError,
    MaxTurnsExceededError,
    ModelError,
    OutputValidationError,
)
from ..agents import Agent, Model, model_from_env, model_from_spec
from ..durable import RetryPolicy, WorkflowContext, lowlevel
from ._rubric import Criterion

JUDGE_INSTRUCTIONS = (
    "You are an impartial evaluator. You score one output against one criterion. Reply "
    "with only a JSON object with the keys `score` (a number on the scale given) and "
    "`reasoning` (one or two sentences that justify the score). Judge only what is "
    "asked; do not reward length or confidence."
)
COMPARE_INSTRUCTIONS = (
    "You are an impartial evaluator. You compare two outputs, A and B, against one "
    'criterion. Reply with only a JSON object with the keys `better` ("A", "B" or '
    '"tie") and `reasoning` (one or two sentences). The order of A and B means nothing.'
)
#: A judge's model calls retry transient errors briefly: the deadline bounds the whole.
_JUDGE_RETRY = RetryPolicy(
    max_attempts=2, initial_interval=0.2, max_interval=1.0, retry_on=(ModelError,)
)


def judge_model(spec: str | None) -> Model:
    """The model a judge spec names: a `PHALANX_MODEL` form, or `python:MODULE:NAME`.

    Raises:
        ConfigError: the spec names no usable model.
    """
    if spec is None:
        return model_from_env()
    if not spec.startswith("python:"):
        return model_from_spec(spec)
    module_name, _, name = spec[len("python:") :].rpartition(":")
    try:
        found: Any = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            setting="judge model",
            value=spec,
            reason=f"cannot import it ({exc}); use python:MODULE:NAME",
        ) from exc
    model = found() if callable(found) and not hasattr(found, "complete") else found
    if not hasattr(model, "complete") or not hasattr(model, "stream"):
        raise ConfigError(setting="judge model", value=spec, reason="does not name a Model")
    return model  # type: ignore[no-any-return]  # checked for the Model protocol's methods above


@dataclass(frozen=True, kw_only=True)
class JudgeVerdict:
    """One judge's answer about one run: a score on the scale and why, or the error."""

    judge: str
    score: float | None
    reasoning: str
    raw_output: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (as journaled)."""
        return {
            "judge": self.judge,
            "score": self.score,
            "reasoning": self.reasoning,
            "raw_output": self.raw_output,
            "error": self.error,
        }


def _verdict_type(criterion: Criterion) -> type[pydantic.BaseModel]:
    low, high = criterion.scale
    return pydantic.create_model(
        "Verdict",
        score=(float, pydantic.Field(ge=low, le=high)),
        reasoning=(str, ...),
    )


class _Preference(pydantic.BaseModel):
    better: Literal["A", "B", "tie"]
    reasoning: str


def judge_prompt(criterion: Criterion, instructions: str, question: str, text: str) -> str:
    """What the judge is asked: the criterion, its scale and examples, then the output."""
    low, high = criterion.scale
    parts = [
        f"Criterion: {criterion.name}",
        criterion.description,
        f"What to judge: {instructions}",
        f"Scale: from {low:g} (worst) to {high:g} (best); {criterion.threshold:g} passes.",
    ]
    parts += [f"Example of a good output: {g}" for g in criterion.good]
    parts += [f"Example of a bad output: {b}" for b in criterion.bad]
    if question:
        parts.append(f"The task given to the system:\n{question}")
    parts.append(f"The output to judge:\n{text}")
    return "\n\n".join(p for p in parts if p)


async def _ask(
    ctx: WorkflowContext,
    *,
    judge: str,
    criterion: str,
    instructions: str,
    prompt: str,
    output: type[Any],
    deadline_s: float,
) -> tuple[Any, str, str | None]:
    """Ask the judge; (parsed output or None, raw output, error or None)."""
    try:
        agent: Agent[Any] = Agent(
            "judge",
            role="judge",
            model=judge_model(judge if judge != "PHALANX_MODEL" else None),
            instructions=instructions,
            output_type=output,
            output_retries=1,
            max_turns=3,
            timeout=deadline_s,
            model_retry=_JUDGE_RETRY,
        )
        result = await agent.run(ctx, prompt)
    except OutputValidationError as exc:
        return (
            None,
            exc.last_output,
            str(
                JudgeError(
                    judge=judge,
                    criterion=criterion,
                    reason=f"invalid after repair: {exc.errors}",
                    raw_output=exc.last_output,
                )
            ),
        )
    except AgentTimeoutError:
        reason = f"no verdict within its deadline ({deadline_s:g}s)"
        return None, "", str(JudgeError(judge=judge, criterion=criterion, reason=reason))
    except (ModelError, ConfigError, MaxTurnsExceededError) as exc:
        return None, "", str(JudgeError(judge=judge, criterion=criterion, reason=str(exc)))
    return result.output, result.text, None


async def score(
    ctx: WorkflowContext,
    *,
    judge: str,
    criterion: Criterion,
    instructions: str,
    run_id: str,
    question: str,
    text: str,
    deadline_s: float,
) -> JudgeVerdict:
    """Ask `judge` to score `text` on `criterion`, journaled as one operation."""
    name = f"{run_id}/{criterion.name}/{judge}"
    op, recorded = lowlevel.claim(ctx, "judge", name)
    if recorded is not None and (done := recorded.last("JudgeVerdict")) is not None:
        data = done.data
        return JudgeVerdict(
            judge=judge,
            score=data.get("score"),
            reasoning=str(data.get("reasoning", "")),
            raw_output=str(data.get("raw_output", "")),
            error=data.get("error"),
        )
    prompt = judge_prompt(criterion, instructions, question, text)
    if recorded is None:
        base = {"op": op, "name": name, "judge": judge, "criterion": criterion.name}
        await lowlevel.record(ctx, "JudgeStarted", {**base, "run_id": run_id, "prompt": prompt})
    output, raw, error = await _ask(
        ctx,
        judge=judge,
        criterion=criterion.name,
        instructions=JUDGE_INSTRUCTIONS,
        prompt=prompt,
        output=_verdict_type(criterion),
        deadline_s=deadline_s,
    )
    verdict = JudgeVerdict(
        judge=judge,
        score=None if output is None else float(output.score),
        reasoning="" if output is None else str(output.reasoning),
        raw_output=raw,
        error=error,
    )
    await lowlevel.record(ctx, "JudgeVerdict", {"op": op, "name": name, **verdict.to_json()})
    return verdict


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """A pairwise preference asked in both orders: `first`, `second` or `tie`."""

    judge: str
    preferred: Literal["first", "second", "tie"]
    orders: tuple[str, str]
    reasoning: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (as journaled)."""
        return {
            "judge": self.judge,
            "preferred": self.preferred,
            "orders": list(self.orders),
            "reasoning": self.reasoning,
            "error": self.error,
        }


async def compare(
    ctx: WorkflowContext,
    *,
    judge: str,
    criterion: Criterion,
    instructions: str,
    first: str,
    second: str,
    deadline_s: float,
) -> Comparison:
    """Which of two outputs better meets `criterion`, asked in both orders (journaled)."""
    name = f"compare/{criterion.name}/{judge}"
    op, recorded = lowlevel.claim(ctx, "judge", name)
    if recorded is not None and (done := recorded.last("JudgeCompared")) is not None:
        data = done.data
        return Comparison(
            judge=judge,
            preferred=data["preferred"],
            orders=(str(data["orders"][0]), str(data["orders"][1])),
            reasoning=str(data.get("reasoning", "")),
            error=data.get("error"),
        )
    if recorded is None:
        await lowlevel.record(
            ctx,
            "JudgeStarted",
            {"op": op, "name": name, "judge": judge, "criterion": criterion.name},
        )
    said: list[str] = []
    reasons: list[str] = []
    error = None
    for a, b, a_is in ((first, second, "first"), (second, first, "second")):
        prompt = (
            f"Criterion: {criterion.name}\n{criterion.description}\nWhat to judge: {instructions}"
            f"\n\nOutput A:\n{a}\n\nOutput B:\n{b}"
        )
        output, _, error = await _ask(
            ctx,
            judge=judge,
            criterion=criterion.name,
            instructions=COMPARE_INSTRUCTIONS,
            prompt=prompt,
            output=_Preference,
            deadline_s=deadline_s,
        )
        if output is None:
            said.append("tie")
            continue
        other = "second" if a_is == "first" else "first"
        said.append({"A": a_is, "B": other, "tie": "tie"}[output.better])
        reasons.append(output.reasoning)
    agreed = said[0] if said[0] == said[1] else "tie"
    comparison = Comparison(
        judge=judge,
        preferred=agreed,  # type: ignore[arg-type]  # one of first/second/tie by construction
        orders=(said[0], said[1]),
        reasoning=" | ".join(reasons),
        error=error,
    )
    await lowlevel.record(ctx, "JudgeCompared", {"op": op, "name": name, **comparison.to_json()})
    return comparison
