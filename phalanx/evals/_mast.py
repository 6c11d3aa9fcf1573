"""Multi-agent failure modes the runtime can see, detected from the journal alone.

The MAST taxonomy (Cemri et al., "Why do multi-agent LLM systems fail?") lists the
ways multi-agent systems go wrong; these are the ones a journal shows without a judge.
Each is a built-in evaluator scoring 1 (not seen) or 0 (seen, with the evidence):

- `step_repetition`: one agent makes the same tool call (same tool, same arguments)
  `max_repeats` + 1 times or more in one run: a loop.
- `termination_unawareness`: an agent goes on after its conversation was told to stop
  (a step in a peer's run journaled after the coordinator's `ConversationStopping` or
  `ConversationEnded`, or after its parent run ended), or runs into its round bound
  (a run failed with `RoundLimitError` or `MaxTurnsExceededError`).
- `premature_termination`: an answer before the sub-results it depends on arrived:
  the run's final answer was asked of the model while a fan-out or child run it had
  started was still open, or the run ended with one still open.
- `unacknowledged_partial`: a fan-out ended partial and the run went on without a
  recorded `accept_partial` decision, or its answer does not name the missing branches.
- `ignored_tool_errors`: an agent's answer follows a failed (or unavailable) tool call
  without mentioning the tool or the failure.
- `unresolved_disagreement`: redundant agents disagreed (`DisagreementDetected`) and
  no decision followed in that run (a vote's `VoteDecided`, a person's `VoteResolved`,
  any `DecisionRecorded`), or the vote escalated and nobody answered yet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import pydantic

from ._recorded import ModelTurn, RecordedRun
from ._registry import Finding, Params, evaluator


def _verdict(problems: Iterable[str], clean: str) -> Finding:
    found = tuple(problems)
    if not found:
        return Finding(score=1.0, detail=clean)
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return Finding(score=0.0, detail=found[0] + more, evidence=found)


class RepetitionParams(Params):
    """`max_repeats`: how many repeats of one call (same tool and arguments) are fine."""

    max_repeats: int = pydantic.Field(default=1, ge=0)


@evaluator("step_repetition", RepetitionParams, kind="mast")
def step_repetition(run: RecordedRun, params: RepetitionParams) -> Finding:
    """No agent repeats the same tool call with the same arguments in a loop."""
    problems = []
    for each in run.walk():
        counts: dict[tuple[str, str, str], int] = {}
        for c in each.tool_calls:
            key = (c.agent, c.tool, json.dumps(c.arguments, sort_keys=True))
            counts[key] = counts.get(key, 0) + 1
        for (agent, tool, args), times in counts.items():
            if times > params.max_repeats + 1:
                problems.append(
                    f"run {each.run_id}: agent {agent} called {tool}({args}) {times} times"
                )
    return _verdict(problems, "no tool call repeated in a loop")


class NoParams(Params):
    """No parameters."""


#: Error types that mean an agent was stopped by a bound rather than by itself.
_BOUND_ERRORS = ("RoundLimitError", "MaxTurnsExceededError")
#: Events after which a conversation's peers must stop.
_STOP_EVENTS = ("ConversationStopping", "ConversationEnded")


@evaluator("termination_unawareness", NoParams, kind="mast")
def termination_unawareness(run: RecordedRun, params: NoParams) -> Finding:
    """Agents stop when their conversation ends and within their round bound."""
    problems = []
    for each in run.walk():
        error = each.history.error
        if error and str(error.get("type", "")).rsplit(".", 1)[-1] in _BOUND_ERRORS:
            problems.append(f"run {each.run_id} ran into its bound: {error.get('message', '')}")
        stop = next((e.position for e in each.events if e.type in _STOP_EVENTS), None)
        ended = each.events[-1].position if each.history.terminal else None
        limits = [p for p in (stop, ended) if p is not None]
        for child in each.children if limits else ():
            late = [e for e in child.events if e.type == "StepStarted" and e.position > min(limits)]
            if late:
                names = ", ".join(str(e.data.get("name")) for e in late[:3])
                problems.append(
                    f"run {child.run_id} went on after its conversation was told to stop "
                    f"({len(late)} step(s): {names})"
                )
    return _verdict(problems, "every agent stopped when told and within its bound")


#: Operation kinds that are not waiting on sub-results.
_LOCAL_KINDS = frozenset({"step", "value", "sleep", "signal", "decision"})
#: The event that closes an operation of these kinds.
_CLOSERS = {
    "gather": ("GatherCompleted",),
    "child": ("ChildCompleted", "ChildFailed"),
    "conversation": ("ConversationEnded",),
}


def _final_turn(run: RecordedRun) -> ModelTurn | None:
    finals = [t for t in run.turns if t.final]
    return finals[-1] if finals else None


@evaluator("premature_termination", NoParams, kind="mast")
def premature_termination(run: RecordedRun, params: NoParams) -> Finding:
    """No answer is written before the sub-results it depends on arrived."""
    problems = []
    for each in run.walk():
        answer = _final_turn(each)
        for op in each.operations:
            if op.kind in _LOCAL_KINDS:
                continue
            closers = _CLOSERS.get(op.kind)
            closed = op.last(*closers) if closers else op.events[-1]
            if closers and closed is None and each.history.terminal:
                problems.append(
                    f"run {each.run_id} ended ({each.status}) with {op.describe()} still open"
                )
            elif (
                answer is not None
                and op.events[0].position < answer.started
                and (closed is None or closed.position > answer.started)
            ):
                problems.append(
                    f"run {each.run_id}: agent {answer.agent} was asked for its answer before "
                    f"{op.describe()} had finished"
                )
    return _verdict(problems, "every answer came after the sub-results it waited for")


class PartialParams(Params):
    """`name_missing`: the answer must name every missing branch (default true)."""

    name_missing: bool = True


@evaluator("unacknowledged_partial", PartialParams, kind="mast")
def unacknowledged_partial(run: RecordedRun, params: PartialParams) -> Finding:
    """A partial fan-out is accepted by a recorded decision and its gaps are named."""
    problems = []
    for each in run.walk():
        partial = [e for e in each.events if e.type == "GatherCompleted" and e.data.get("partial")]
        decided = {
            str(e.data.get("name", ""))
            for e in each.events
            if partial and e.type == "DecisionRecorded"
        }
        for event in partial:
            name = str(event.data.get("name", ""))
            statuses = event.data.get("statuses") or {}
            missing = [b for b, s in statuses.items() if s != "succeeded"]
            if f"accept_partial:{name}" not in decided:
                problems.append(
                    f"run {each.run_id}: fan-out {name!r} was partial (missing "
                    f"{', '.join(missing)}) and went on without an accept_partial decision"
                )
            answer = each.answer() or ""
            unnamed = [b for b in missing if b.casefold() not in answer.casefold()]
            if params.name_missing and unnamed:
                problems.append(
                    f"run {each.run_id}: the answer built on partial fan-out {name!r} does "
                    f"not name the missing {', '.join(unnamed)}"
                )
    return _verdict(problems, "no partial result used without being accepted and named")


#: Words that acknowledge a failure in an answer (besides naming the tool).
DEFAULT_ACKNOWLEDGEMENT = (
    r"\b(fail\w*|error\w*|unavailable|not available|could ?n[o']t|can ?n[o']t|missing|"
    r"incomplete|did ?n[o']t|no result\w*|unable|timed? ?out|down)\b"
)


class ToolErrorParams(Params):
    """`acknowledgement`: a regex that counts as mentioning the failure."""

    acknowledgement: str = DEFAULT_ACKNOWLEDGEMENT


@evaluator("ignored_tool_errors", ToolErrorParams, kind="mast")
def ignored_tool_errors(run: RecordedRun, params: ToolErrorParams) -> Finding:
    """An agent's answer after a failed tool call says the tool failed."""
    problems = []
    ack = re.compile(params.acknowledgement, re.IGNORECASE)
    for each in run.walk():
        for call in each.tool_calls:
            if call.outcome not in ("failed", "unavailable"):
                continue
            answer = next(
                (
                    t
                    for t in each.turns
                    if t.agent == call.agent and t.final and t.started > call.position
                ),
                None,
            )
            if answer is None:
                continue
            text = answer.text or ""
            if call.tool.casefold() in text.casefold() or ack.search(text):
                continue
            problems.append(
                f"run {each.run_id}: agent {call.agent} answered after {call.tool} failed "
                f"({call.error}) without mentioning it: {text[:120]!r}"
            )
    return _verdict(problems, "every failed tool call is mentioned in the answer after it")


class DisagreementParams(Params):
    """`resolved_by`: event types that settle a disagreement recorded before them."""

    resolved_by: tuple[str, ...] = ("VoteDecided", "VoteResolved", "DecisionRecorded")
    #: A decision whose `decision` field is one of these leaves it open (still escalated).
    open_decisions: tuple[str, ...] = ("escalated",)


@evaluator("unresolved_disagreement", DisagreementParams, kind="mast")
def unresolved_disagreement(run: RecordedRun, params: DisagreementParams) -> Finding:
    """Disagreement between redundant agents is settled by a recorded decision."""
    problems = []
    for each in run.walk():
        for index, event in enumerate(each.events):
            if event.type != "DisagreementDetected":
                continue
            later = [e for e in each.events[index + 1 :] if e.type in params.resolved_by]
            settled = [e for e in later if e.data.get("decision") not in params.open_decisions]
            if not settled:
                name = event.data.get("name", "")
                status = "escalated, nobody answered" if later else "no decision recorded"
                problems.append(
                    f"run {each.run_id}: disagreement in {name!r} left unresolved ({status})"
                )
    return _verdict(problems, "no disagreement left unresolved")
