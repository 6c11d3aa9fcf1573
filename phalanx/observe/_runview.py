"""What one run did, folded from its journal alone: the pure half of the run model.

`view_run(history)` reads one run's folded journal (`RunHistory`) and says what happened
in it, as data every picture and listing renders from: its spans (model calls, tool
calls with each retry, plain steps, timers, waits for a signal, pattern operations),
its marks (stalls, late answers, deadlines, decisions, dead letters, lease takeovers,
compensations, disagreements, any event this module does not know), its fan-outs with
their policy and branch outcomes, and the child runs it referenced. No I/O: the tree
of runs is assembled in `_model.py`, which reads the children's journals.

Known pattern events are named in `_MARKS` and handled below; an operation of a kind
this module does not know (a pattern added later) is still shown, as a span named
by its `op_kind` from its first event to its last, with one tick per event, so
nothing the journal holds is dropped from a picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..tools import troubled_tool_calls

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..durable import RunHistory
    from ..durable.lowlevel import Operation
    from ..journal import Event

SpanKind = Literal["model", "tool", "step", "sleep", "wait", "fanout", "compensation", "op"]
MarkKind = Literal[
    "deadline",
    "stall",
    "late",
    "decision",
    "dead_letter",
    "takeover",
    "disagreement",
    "interrupted",
    "budget",
    "event",
]

#: Outcomes drawn as trouble: hatched and labelled, so they survive a grey-scale print.
TROUBLE = frozenset({"failed", "timed_out", "cancelled", "abandoned", "dead_lettered"})

#: Events outside any operation that are part of every run's life, not marks of their own.
_LIFECYCLE = frozenset(
    {
        "RunStarted",
        "RunCompleted",
        "RunFailed",
        "RunCancelled",
        "SignalWaiting",
        "SignalReceived",
        "SignalTimedOut",
    }
)


def _budget_label(event: Event) -> str:
    """Words for the agents' backpressure events (`phalanx.agents`: budgets, payloads)."""
    data = event.data
    if event.type == "ContextSummarized":
        replaced = len(data.get("replaced") or ())
        return f"{data.get('agent')}: context summarised ({replaced} messages replaced)"
    if event.type == "BudgetActionTaken":
        return (
            f"{data.get('agent')}: budget action {data.get('action')} "
            f"({data.get('limit')}: needed {data.get('needed')}, {data.get('available')} left)"
        )
    return (
        f"payload {data.get('sender')} → {data.get('recipient')} rejected: "
        f"{data.get('size')} {data.get('unit')} over {data.get('limit')}"
    )


#: One-event operations that are instants, not spans: drawn as marks with these words.
_INSTANTS: dict[str, Callable[[Event], str]] = {
    "ContextSummarized": _budget_label,
    "BudgetActionTaken": _budget_label,
    "PayloadRejected": _budget_label,
}

#: Pattern events shown as marks wherever they appear, with the kind of mark.
_MARKS: dict[str, MarkKind] = {
    "BranchStalled": "stall",
    "BranchLate": "late",
    "DisagreementDetected": "disagreement",
    "RunInterrupted": "interrupted",
    "VoteEscalated": "decision",
    "SagaCompensating": "decision",
}


@dataclass(frozen=True)
class Attempt:
    """One try of a span: a step's attempt, or the whole span when it has no retries."""

    start: float
    end: float | None
    outcome: str
    error: str | None = None


@dataclass
class Span:
    """Something that took time in a run: a bar on the timeline.

    `agent` is the agent the step belongs to (from the tags the agent loop journals),
    `ticks` the times and types of the events inside it (pattern operations).
    """

    kind: SpanKind
    name: str
    start: float
    end: float | None
    outcome: str
    op: int | None = None
    agent: str | None = None
    detail: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    #: Never finished: its run ended (cancelled, failed) while it was still going.
    cut_off: bool = False
    #: A model call's journaled response (text, tool calls, usage), as captured.
    response: dict[str, Any] | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, if it ended."""
        return None if self.end is None else max(0.0, self.end - self.start)


@dataclass(frozen=True)
class Mark:
    """Something that happened at one instant: a point on the timeline."""

    kind: MarkKind
    at: float
    label: str
    branch: str | None = None


@dataclass
class BranchView:
    """One branch of a fan-out, as the fan-out recorded it."""

    name: str
    run_id: str
    status: str = "running"
    duration_s: float | None = None
    error: str | None = None
    stalled: bool = False
    late: bool = False


@dataclass
class FanOutView:
    """A fan-out: its policy, deadline, branches and what was decided about them."""

    op: int
    name: str
    policy: str
    started_at: float
    deadline_at: float | None
    ended_at: float | None = None
    partial: bool | None = None
    satisfied: bool | None = None
    branches: dict[str, BranchView] = field(default_factory=dict)
    decision: str | None = None

    @property
    def status(self) -> str:
        """`partial`, `complete` or `running`."""
        if self.ended_at is None:
            return "running"
        return "partial" if self.partial else "complete"


@dataclass
class RunView:
    """What one run did, from its own journal (its children are separate views)."""

    run_id: str
    workflow: str
    status: str
    parent_run_id: str | None
    start: float | None
    end: float | None
    deadline_at: float | None
    error: str | None
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    fan_outs: list[FanOutView] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    children: dict[str, str] = field(default_factory=dict)  # child run id -> its name here
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    event_count: int = 0

    @property
    def agents(self) -> list[str]:
        """The agents that made model or tool calls in this run, in order of appearance."""
        return list(dict.fromkeys(s.agent for s in self.spans if s.agent is not None))

    @property
    def tools(self) -> dict[str, list[Span]]:
        """Tool name to its calls in this run."""
        calls: dict[str, list[Span]] = {}
        for span in self.spans:
            if span.kind == "tool":
                calls.setdefault(span.name, []).append(span)
        return calls


def _error_text(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None if error is None else str(error)
    kind = str(error.get("type", "")).rpartition(".")[2]
    return f"{kind}: {error.get('message', '')}" if kind else str(error.get("message", ""))


def _failure_outcome(error: Any) -> str:
    kind = str(error.get("type", "")) if isinstance(error, dict) else ""
    return "timed_out" if "Timeout" in kind else "failed"


def _attempts(op: Operation) -> list[Attempt]:
    """Each attempt of a step, from its `StepStarted` to the event that ended it."""
    attempts: list[Attempt] = []
    open_at: float | None = None
    for event in op.events:
        if event.type == "StepStarted":
            if open_at is not None:  # a try cut off by a crash, retried by a new runner
                attempts.append(Attempt(open_at, event.recorded_at, "abandoned"))
            open_at = event.recorded_at
        elif event.type in ("StepCompleted", "StepFailed") and open_at is not None:
            error = event.data.get("error")
            outcome = "completed" if event.type == "StepCompleted" else _failure_outcome(error)
            attempts.append(Attempt(open_at, event.recorded_at, outcome, _error_text(error)))
            open_at = None
    if open_at is not None:
        attempts.append(Attempt(open_at, None, "running"))
    return attempts


def _step_span(op: Operation) -> Span:
    data = op.events[0].data
    raw_tags = data.get("tags")
    tags: dict[str, Any] = raw_tags if isinstance(raw_tags, dict) else {}
    attempts = _attempts(op)
    last = attempts[-1]
    failed = op.last("StepFailed")
    final = op.last("StepCompleted") is None and failed is not None
    final = final and failed is not None and failed.data.get("retry_at") is None
    outcome = last.outcome if last.end is not None else "running"
    if not final and outcome != "completed" and last.end is not None:
        outcome = "retrying"
    agent = tags.get("agent")
    operation = tags.get("operation")
    response: dict[str, Any] | None = None
    if operation == "chat":
        kind: SpanKind = "model"
        name = f"model turn {tags.get('turn', '?')}"
        done = op.last("StepCompleted")
        result = done.data.get("result") if done is not None else None
        response = result if isinstance(result, dict) else None
        if isinstance(result, dict):
            usage = result.get("usage") or {}
            calls = [c.get("name") for c in result.get("tool_calls") or ()]
            detail = f"{usage.get('input_tokens', 0)}→{usage.get('output_tokens', 0)} tokens"
            detail += f", calls {', '.join(map(str, calls))}" if calls else ""
        else:
            detail = ""
    elif operation == "execute_tool":
        kind, name, detail = "tool", str(tags.get("tool")), ""
    else:
        kind, name, detail = "step", op.name, ""
    if len(attempts) > 1:
        detail = f"{len(attempts)} attempts" + (f", {detail}" if detail else "")
    return Span(
        kind,
        name,
        attempts[0].start,
        last.end,
        outcome,
        op=op.op,
        agent=None if agent is None else str(agent),
        detail=detail,
        attempts=attempts,
        response=response,
    )


def _fan_out(op: Operation, view: RunView) -> None:
    opening = op.events[0].data
    fan = FanOutView(
        op.op,
        op.name,
        str(opening.get("policy")),
        float(opening.get("started_at") or op.events[0].recorded_at),
        opening.get("deadline_at"),
    )
    for branch, run_id in dict(opening.get("branches") or {}).items():
        fan.branches[branch] = BranchView(branch, str(run_id))
        view.children[str(run_id)] = str(branch)
    for event in op.events[1:]:
        data = event.data
        branch = fan.branches.get(str(data.get("branch")))
        if event.type == "BranchFinished" and branch is not None:
            branch.status = str(data.get("status"))
            branch.duration_s = data.get("duration_s")
            branch.error = data.get("error")
            branch.stalled = branch.stalled or bool(data.get("stalled"))
        elif event.type == "BranchStalled" and branch is not None:
            branch.stalled = True
            silent = float(data.get("silent_for") or 0.0)
            label = f"{branch.name} stalled: no progress for {silent:.1f}s (heartbeat)"
            view.marks.append(Mark("stall", event.recorded_at, label, branch.name))
        elif event.type == "BranchLate" and branch is not None:
            branch.late = True
            label = f"{branch.name} answered late (not used)"
            view.marks.append(Mark("late", event.recorded_at, label, branch.name))
        elif event.type == "GatherCompleted":
            fan.ended_at = event.recorded_at
            fan.partial = bool(data.get("partial"))
            fan.satisfied = bool(data.get("satisfied"))
    if fan.deadline_at is not None:
        missed = [b.name for b in fan.branches.values() if b.status == "timed_out"]
        label = f"deadline of fan-out {fan.name}"
        if missed:
            label += f": {', '.join(missed)} timed out"
        view.marks.append(Mark("deadline", float(fan.deadline_at), label))
    end = fan.ended_at
    outcome = fan.status
    view.spans.append(
        Span("fanout", f"fan-out {fan.name} [{fan.policy}]", fan.started_at, end, outcome, op.op)
    )
    view.fan_outs.append(fan)


def _decision(op: Operation, view: RunView) -> None:
    event = op.events[0]
    data = {k: v for k, v in event.data.items() if k not in ("op", "op_kind")}
    view.decisions.append(data)
    name = str(data.get("name", op.name))
    reason = data.get("reason")
    label = f"decision {name}" + (f": {reason}" if reason else "")
    view.marks.append(Mark("decision", event.recorded_at, label))
    target = name.partition(":")[2]
    for fan in view.fan_outs:
        if fan.name == target and fan.decision is None:
            fan.decision = str(reason) if reason else name


def _wait_span(op: Operation) -> Span:
    first = op.events[0]
    if first.type == "TimerStarted":
        fired = op.last("TimerFired")
        seconds = first.data.get("seconds")
        return Span(
            "sleep",
            f"sleep {seconds}s" if seconds is not None else "sleep",
            first.recorded_at,
            None if fired is None else fired.recorded_at,
            "completed" if fired else "waiting",
            op.op,
        )
    answer = op.last("SignalReceived", "SignalTimedOut")
    outcome = (
        "waiting"
        if answer is None
        else "completed"
        if answer.type == "SignalReceived"
        else "timed_out"
    )
    return Span(
        "wait",
        f"wait for signal {op.name}",
        first.recorded_at,
        None if answer is None else answer.recorded_at,
        outcome,
        op.op,
    )


def _compensations(op: Operation, view: RunView) -> bool:
    """Compensation spans (`CompensationStarted/Completed/Failed`, by `data.name`)."""
    found = False
    open_: dict[str, Span] = {}
    for event in op.events:
        name = str(event.data.get("name", op.name))
        step = str(event.data.get("step", name))
        if event.type == "CompensationStarted":
            span = Span("compensation", f"compensate {step}", event.recorded_at, None, "running")
            span.op = op.op
            open_[step] = span
            view.spans.append(span)
            found = True
        elif event.type in ("CompensationCompleted", "CompensationFailed"):
            opened = open_.pop(step, None)
            span = opened or Span(
                "compensation", f"compensate {step}", event.recorded_at, None, "running", op.op
            )
            if span not in view.spans:
                view.spans.append(span)
            span.end = event.recorded_at
            span.outcome = "compensated" if event.type == "CompensationCompleted" else "failed"
            found = True
    return found


def _pattern_op(op: Operation, view: RunView) -> None:
    """An operation of a kind named only by its `op_kind`: a span with a tick per event."""
    for event in op.events:
        kind = _MARKS.get(event.type)
        if kind is not None:
            label = f"{event.type} in {op.name}"
            dissenters = event.data.get("dissenters")
            if isinstance(dissenters, list) and dissenters:
                label += f": dissenters {', '.join(map(str, dissenters))}"
            view.marks.append(Mark(kind, event.recorded_at, label))
    if _compensations(op, view):
        return
    first, last = op.events[0], op.events[-1]
    view.spans.append(
        Span(
            "op",
            f"{op.kind or first.type} {op.name}".strip(),
            first.recorded_at,
            last.recorded_at,
            _op_outcome(op),
            op.op,
            ticks=[(e.recorded_at, e.type) for e in op.events],
        )
    )


def _op_outcome(op: Operation) -> str:
    """A pattern operation's outcome: the `status` its last event states, else its type.

    The span ends at its last event: a run that ends with the operation unfinished cuts
    it off there (`_settle` does not apply), since the journal cannot say more.
    """
    last = op.events[-1]
    status = last.data.get("status")
    if isinstance(status, str) and status:
        return status
    if last.type.endswith("Failed"):
        return "failed"
    if last.type.endswith(("Escalated", "Waiting")):
        return "waiting"
    return "recorded"


def _takeovers(events: list[Event], view: RunView) -> None:
    previous: int | None = None
    for event in events:
        if event.epoch is None:
            continue
        if previous is not None and event.epoch > previous:
            label = f"lease taken over: runner epoch {previous} → {event.epoch}"
            view.marks.append(Mark("takeover", event.recorded_at, label))
        previous = event.epoch if previous is None else max(previous, event.epoch)
    view.epochs = sorted({e.epoch for e in events if e.epoch is not None})


def view_run(history: RunHistory) -> RunView:
    """Fold one run's journal into what happened in it (pure; no children read)."""
    error = history.error
    view = RunView(
        history.run_id,
        history.workflow,
        history.status,
        history.parent_run_id,
        history.started_at,
        history.ended_at,
        history.deadline_at,
        None if error is None else _error_text(error),
        event_count=len(history.events),
    )
    for op in sorted(history.operations.values(), key=lambda o: o.op):
        opening = op.events[0].type
        if opening == "StepStarted":
            view.spans.append(_step_span(op))
        elif opening == "GatherStarted":
            _fan_out(op, view)
        elif opening == "DecisionRecorded":
            _decision(op, view)
        elif opening in ("TimerStarted", "SignalWaiting"):
            view.spans.append(_wait_span(op))
        elif opening in _INSTANTS and len(op.events) == 1:
            event = op.events[0]
            view.marks.append(Mark("budget", event.recorded_at, _INSTANTS[opening](event)))
        elif opening == "ChildStarted":
            child = op.events[0].data.get("child_run_id")
            if child is not None:
                view.children.setdefault(str(child), op.name)
        elif opening != "ValueRecorded":
            _pattern_op(op, view)
    for event in history.events:
        if "op" in event.data or event.type in _LIFECYCLE:
            continue
        kind = _MARKS.get(event.type, "event")
        view.marks.append(Mark(kind, event.recorded_at, event.type))
    view.tool_calls = troubled_tool_calls(history.events)
    for call in view.tool_calls:
        dead = call.get("dead_letter")
        if dead is None:
            continue
        at = _op_end(history, call.get("op")) or history.started_at or 0.0
        label = f"{call.get('tool')} dead-lettered {dead.get('id')} ({dead.get('outcome')})"
        view.marks.append(Mark("dead_letter", at, label))
    _takeovers(history.events, view)
    _settle(view)
    view.marks.sort(key=lambda m: m.at)
    return view


def _op_end(history: RunHistory, op: Any) -> float | None:
    found = history.operations.get(op) if isinstance(op, int) else None
    return None if found is None else found.events[-1].recorded_at


def _settle(view: RunView) -> None:
    """Spans a finished run left open ended with it: cancelled, or cut off."""
    if view.status not in ("completed", "failed", "cancelled") or view.end is None:
        return
    cut = "cancelled" if view.status == "cancelled" else "abandoned"
    for span in view.spans:
        if span.end is None:
            span.end = view.end
            span.outcome = cut
            span.cut_off = True
            if span.attempts and span.attempts[-1].end is None:
                span.attempts[-1] = Attempt(span.attempts[-1].start, view.end, cut)
