"""A recorded run as evaluators see it: its journal, its child runs, its agents' turns.

Evaluators never re-run anything: they read what the journal holds. A run's own
stream gives its status, inputs, result and operations; its child runs (fan-out
branches, conversation peers, delegations) are found through their `RunStarted`
events' `parent_run_id`, so every pattern's children are found the same way. Agent
turns come from the tags the agent loop journals with its steps (`agent`, `turn`,
`operation`: `chat` or `execute_tool`, a tool call's `tool` and `index`), never from
step names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import UnknownRunError
from ..durable import RunHistory, Runtime
from ..durable.lowlevel import Operation, run_id_of, run_stream
from ..journal import Event, EventStore, safe_text, text_problem

ToolOutcome = Literal["ok", "failed", "unavailable", "running"]


# The two below are made for every model and tool call of every run read back: slots,
# not frozen (whose __init__ costs three times as much). Treat them as read-only.
@dataclass(kw_only=True, slots=True)
class ToolCallSeen:
    """One tool call an agent asked for, and what became of it."""

    agent: str
    turn: int
    index: int
    tool: str
    arguments: Mapping[str, Any]
    #: `ok`, `failed` (the step failed for good), `unavailable` (the agent got a typed
    #: "unavailable" result instead) or `running` (no outcome journaled).
    outcome: ToolOutcome
    error: str | None = None
    position: int = 0


@dataclass(kw_only=True, slots=True)
class ModelTurn:
    """One model call of an agent: its answer text or its tool calls, and its usage."""

    agent: str
    turn: int
    text: str | None
    tool_calls: tuple[tuple[str, Mapping[str, Any]], ...]
    input_tokens: int
    output_tokens: int
    #: Global positions of the step's first and last event (journal order across runs).
    started: int
    ended: int

    @property
    def final(self) -> bool:
        """Whether this turn is an answer (no tool calls), ending the agent's loop."""
        return not self.tool_calls


def _tags(op: Operation) -> Mapping[str, Any]:
    tags = op.events[0].data.get("tags")
    return tags if isinstance(tags, dict) else {}


def _arguments(raw: Any) -> Mapping[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}


def _error_text(event: Event) -> str:
    error = event.data.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return str(error or "failed")


@dataclass
class RecordedRun:
    """A run read back from the journal, with its child runs (recursively).

    Example::

        async with phalanx.open_runtime(url) as runtime:
            run = await load_run(runtime, "17806b1b723c9665")
            print(run.status, run.answer(), [c.run_id for c in run.children])
    """

    history: RunHistory
    children: list[RecordedRun] = field(default_factory=list)
    #: The run's operations in the order the workflow asked for them.
    operations: tuple[Operation, ...] = field(init=False, repr=False)
    #: This run's model calls (not its children's), in order.
    turns: tuple[ModelTurn, ...] = field(init=False, repr=False)
    #: This run's tool calls (not its children's), with the arguments the model gave.
    tool_calls: tuple[ToolCallSeen, ...] = field(init=False, repr=False)
    _descendants: tuple[RecordedRun, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once, here: every detector reads them, and `functools.cached_property`
        # takes a lock on each access (Python 3.11), a fifth of the scoring time.
        self.operations = tuple(sorted(self.history.operations.values(), key=lambda o: o.op))
        self.turns = _turns(self.operations)
        self.tool_calls = _tool_calls(self.operations, self.turns)
        # Not `self` too: a run holding itself would be a cycle, and cycles keep every
        # loaded journal alive until the garbage collector's slow full pass.
        self._descendants = tuple(run for child in self.children for run in child.walk())

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.history.run_id

    @property
    def status(self) -> str:
        """`running`, `waiting`, `completed`, `failed` or `cancelled`."""
        return self.history.status

    @property
    def result(self) -> Any:
        """The run's result (None unless it completed)."""
        return self.history.result

    @property
    def events(self) -> Sequence[Event]:
        """The run's own events, in order."""
        return self.history.events

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, None while it has not ended."""
        started, ended = self.history.started_at, self.history.ended_at
        return None if started is None or ended is None else max(0.0, ended - started)

    def walk(self) -> tuple[RecordedRun, ...]:
        """This run, then its descendants, depth first."""
        return (self, *self._descendants)

    def answers(self, agent: str | None = None) -> list[str]:
        """The final answers of this run's agents (of `agent` only, if given), in order."""
        return [
            t.text or ""
            for t in self.turns
            if t.final and t.text is not None and (agent is None or t.agent == agent)
        ]

    def answer(self, agent: str | None = None) -> str | None:
        """The text evaluators judge by default.

        With `agent`: that agent's last final answer anywhere in the run tree. Without:
        the run's result (its `answer` or `text` field when it is an object), or the last
        final answer of its own agents.
        """
        if agent is not None:
            found = [a for run in self.walk() for a in run.answers(agent)]
            return found[-1] if found else None
        result = self.result
        if isinstance(result, str):
            return result
        if isinstance(result, dict):
            for key in ("answer", "text", "output"):
                if isinstance(result.get(key), str):
                    return str(result[key])
        own = self.answers()
        return own[-1] if own else None

    def usage(self) -> tuple[int, int]:
        """Input and output tokens of every model call in the run tree."""
        tokens_in = tokens_out = 0
        for run in self.walk():
            for turn in run.turns:
                tokens_in += turn.input_tokens
                tokens_out += turn.output_tokens
        return tokens_in, tokens_out


def _turns(operations: Sequence[Operation]) -> tuple[ModelTurn, ...]:
    turns = []
    for op in operations:
        tags = _tags(op)
        done = op.last("StepCompleted")
        if tags.get("operation") != "chat" or done is None:
            continue
        response = done.data.get("result") or {}
        usage = response.get("usage") or {}
        calls = tuple(
            (str(c.get("name", "")), _arguments(c.get("arguments")))
            for c in response.get("tool_calls") or ()
        )
        turns.append(
            ModelTurn(
                agent=str(tags.get("agent", "")),
                turn=int(tags.get("turn", 0)),
                text=response.get("text"),
                tool_calls=calls,
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
                started=op.events[0].position,
                ended=done.position,
            )
        )
    return tuple(turns)


def _tool_calls(
    operations: Sequence[Operation], turns: Sequence[ModelTurn]
) -> tuple[ToolCallSeen, ...]:
    asked = {(t.agent, t.turn, i): call for t in turns for i, call in enumerate(t.tool_calls)}
    calls = []
    for op in operations:
        tags = _tags(op)
        if tags.get("operation") != "execute_tool":
            continue
        agent, turn = str(tags.get("agent", "")), int(tags.get("turn", 0))
        index = int(tags.get("index", 0))
        name, arguments = asked.get((agent, turn, index), (str(tags.get("tool", "")), {}))
        end = op.last("StepCompleted", "StepFailed")
        outcome: ToolOutcome = "running"
        error = None
        if end is not None and end.type == "StepCompleted":
            value = (end.data.get("result") or {}).get("result")
            outcome = "ok"
            if isinstance(value, dict) and value.get("status") == "unavailable":
                outcome, error = "unavailable", str(value.get("message", ""))
        elif end is not None and end.data.get("retry_at") is None:
            outcome, error = "failed", _error_text(end)
        calls.append(
            ToolCallSeen(
                agent=agent,
                turn=turn,
                index=index,
                tool=name,
                arguments=arguments,
                outcome=outcome,
                error=error,
                position=(end or op.events[-1]).position,
            )
        )
    return tuple(calls)


class ChildIndex:
    """Which runs each run started, from the store's `RunStarted` events (read once)."""

    def __init__(self, children: Mapping[str, list[str]]) -> None:
        self._children = children

    @classmethod
    async def read(cls, source: Runtime | EventStore) -> ChildIndex:
        """Read every `RunStarted` once (by type index, in pages)."""
        store = source.store if isinstance(source, Runtime) else source
        children: dict[str, list[str]] = {}
        after = 0
        while page := await store.read_indexed(["RunStarted"], after=after, limit=5000):
            for event in page:
                parent = event.data.get("parent_run_id")
                run_id = run_id_of(event.stream_id)
                if isinstance(parent, str) and run_id is not None:
                    children.setdefault(parent, []).append(run_id)
            after = page[-1].position
        return cls(children)

    def of(self, run_id: str) -> list[str]:
        """The runs `run_id` started, oldest first."""
        return self._children.get(run_id, [])


async def load_run(
    source: Runtime | EventStore, run_id: str, *, children: ChildIndex | None = None
) -> RecordedRun:
    """Read a run and its descendants back from the journal (a runtime's, or a store).

    Pass a `ChildIndex` read once to load many runs without re-reading it.

    Raises:
        UnknownRunError: no such run.
    """
    store = source.store if isinstance(source, Runtime) else source
    if text_problem(run_id) is not None:
        # No run can have it, and no store can look it up.
        raise UnknownRunError(run_id=safe_text(run_id), store=store.url)
    index = children or await ChildIndex.read(store)
    return await _load(store, run_id, index)


async def _load(store: EventStore, run_id: str, index: ChildIndex) -> RecordedRun:
    history = RunHistory.fold(run_id, await store.read_stream(run_stream(run_id)))
    if not history.exists:
        raise UnknownRunError(run_id=run_id, store=store.url)
    return RecordedRun(history, [await _load(store, child, index) for child in index.of(run_id)])
