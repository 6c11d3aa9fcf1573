"""A recorded run as a span tree, from its journal alone (no collector needed).

The journal already holds everything a trace would: each operation's events with
their timestamps, each attempt of each step, the journaled model responses with their
token usage, the child runs and every fan-out branch's outcome. `trace_run` folds
that into the tree an OpenTelemetry backend would show: the run, its steps, agent
turns grouped into `invoke_agent` nodes with their `chat` and `execute_tool` steps,
fan-outs with one node per branch, and child runs, recursively.

Agent grouping follows the tags the agent loop journals with its steps (`agent`,
`turn`, `operation`: `chat` or `execute_tool`, and a tool call's `tool`), never their
names: turn 1 of a model step opens a new invocation of that agent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._errors import UnknownRunError
from ..durable import occurred_at
from ..journal import Event

if TYPE_CHECKING:
    from ..durable import RunHistory, Runtime
    from ..durable.lowlevel import Operation

NodeKind = Literal[
    "run",
    "step",
    "invoke_agent",
    "chat",
    "execute_tool",
    "fanout",
    "branch",
    "sleep",
    "signal",
    "decision",
]


def _tags(op: Operation) -> dict[str, Any]:
    """The tags a step was journaled with (`lowlevel.step`), empty if none."""
    tags = op.events[0].data.get("tags")
    return tags if isinstance(tags, dict) else {}


@dataclass
class TraceNode:
    """One node of a recorded run's span tree.

    `start` and `end` are Unix seconds as the journal recorded them (`end` is None while
    the operation has not finished); `attributes` use the names spans use.
    """

    kind: NodeKind
    name: str
    status: str
    start: float | None = None
    end: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    children: list[TraceNode] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        """Wall time from start to end, if both are known."""
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)

    def tokens(self) -> tuple[int, int]:
        """Input and output tokens of every model call in this subtree."""
        if self.kind == "chat":
            return (
                int(self.attributes.get("gen_ai.usage.input_tokens", 0)),
                int(self.attributes.get("gen_ai.usage.output_tokens", 0)),
            )
        total_in = total_out = 0
        for child in self.children:
            tokens_in, tokens_out = child.tokens()
            total_in += tokens_in
            total_out += tokens_out
        return total_in, total_out

    def walk(self) -> Iterable[TraceNode]:
        """This node and all below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def to_json(self) -> dict[str, Any]:
        """The `phalanx trace --json` form of this subtree (a stable schema)."""
        tokens_in, tokens_out = self.tokens()
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "duration_s": self.duration_s,
            "tokens": {"input": tokens_in, "output": tokens_out},
            "attributes": self.attributes,
            "children": [c.to_json() for c in self.children],
        }


def _trace_id(events: Iterable[Event]) -> str | None:
    return next((e.metadata.trace_id for e in events if e.metadata.trace_id), None)


def _step_node(op: Operation) -> TraceNode:
    started = [e for e in op.events if e.type == "StepStarted"]
    failures = [e for e in op.events if e.type == "StepFailed"]
    done = op.last("StepCompleted")
    final_failure = failures[-1] if failures and failures[-1].data.get("retry_at") is None else None
    ended = done or final_failure
    status = "completed" if done else "failed" if final_failure else "running"
    attributes: dict[str, Any] = {
        "phalanx.step.name": op.name,
        "phalanx.step.op": op.op,
        "phalanx.step.attempts": len(started),
    }
    if failures:
        attributes["phalanx.step.errors"] = [
            f"#{e.data.get('attempt')} {e.data['error'].get('type')}: "
            f"{e.data['error'].get('message')}"
            for e in failures
        ]
    if ended is not None and ended.data.get("duration_s") is not None:
        attributes["phalanx.step.last_attempt_s"] = float(ended.data["duration_s"])
    node = TraceNode(
        "step",
        f"phalanx.step {op.name}",
        status,
        start=occurred_at(op.events[0]),
        end=None if ended is None else ended.recorded_at,
        attributes=attributes,
    )
    tags = _tags(op)
    operation = tags.get("operation") if "agent" in tags else None
    if operation == "chat":
        node.kind = "chat"
        result = done.data.get("result") if done is not None else None
        response = result if isinstance(result, dict) else {}
        # No answer journaled (in flight, or failed): the journal cannot name the model.
        node.name = f"chat {response['model']}" if response.get("model") else "chat"
        attributes["gen_ai.operation.name"] = "chat"
        attributes["phalanx.agent.turn"] = int(tags.get("turn", 0))
        if response:
            usage = response.get("usage") or {}
            attributes["gen_ai.provider.name"] = response.get("provider")
            attributes["gen_ai.response.model"] = response.get("model")
            attributes["gen_ai.response.finish_reasons"] = [response.get("finish_reason")]
            attributes["gen_ai.usage.input_tokens"] = int(usage.get("input_tokens", 0))
            attributes["gen_ai.usage.output_tokens"] = int(usage.get("output_tokens", 0))
            if response.get("time_to_first_token_s") is not None:
                attributes["gen_ai.response.time_to_first_chunk"] = response[
                    "time_to_first_token_s"
                ]
            attributes["phalanx.agent.tool_calls"] = [
                c.get("name") for c in response.get("tool_calls") or ()
            ]
    elif operation == "execute_tool":
        node.kind = "execute_tool"
        node.name = f"execute_tool {tags.get('tool')}"
        attributes["gen_ai.operation.name"] = "execute_tool"
        attributes["gen_ai.tool.name"] = tags.get("tool")
        attributes["phalanx.agent.turn"] = int(tags.get("turn", 0))
    return node


def _agent_of(op: Operation) -> tuple[str, bool] | None:
    """The agent a step belongs to, and whether it opens a new invocation (turn 1)."""
    tags = _tags(op)
    agent = tags.get("agent")
    if agent is None or tags.get("operation") not in ("chat", "execute_tool"):
        return None
    return str(agent), tags["operation"] == "chat" and tags.get("turn") == 1


def _close_agent(node: TraceNode) -> None:
    chats = [c for c in node.children if c.kind == "chat"]
    tools = [c for c in node.children if c.kind == "execute_tool"]
    node.start = min((c.start for c in node.children if c.start is not None), default=None)
    ends = [c.end for c in node.children]
    node.end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
    last = node.children[-1]
    finished = (
        last.kind == "chat"
        and last.status == "completed"
        and not last.attributes.get("phalanx.agent.tool_calls")
    )
    node.status = "failed" if last.status == "failed" else "completed" if finished else last.status
    tokens_in, tokens_out = node.tokens()
    node.attributes.update(
        {
            "phalanx.agent.turns": len(chats),
            "phalanx.agent.tool_calls": len(tools),
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
        }
    )


async def _fanout_node(runtime: Runtime, op: Operation, depth: int, seen: set[str]) -> TraceNode:
    opening = op.events[0].data
    done = op.last("GatherCompleted")
    finished = {e.data["branch"]: e for e in op.events if e.type == "BranchFinished"}
    stalled = {e.data["branch"] for e in op.events if e.type == "BranchStalled"}
    node = TraceNode(
        "fanout",
        f"phalanx.fanout {op.name}",
        "completed" if done is not None else "running",
        start=op.events[0].recorded_at,
        end=None if done is None else done.recorded_at,
        attributes={
            "phalanx.fanout.name": op.name,
            "phalanx.fanout.policy": opening.get("policy"),
            "phalanx.step.op": op.op,
        },
    )
    if done is not None:
        node.attributes["phalanx.fanout.satisfied"] = bool(done.data.get("satisfied"))
        node.attributes["phalanx.fanout.partial"] = bool(done.data.get("partial"))
    for branch, run_id in dict(opening.get("branches") or {}).items():
        result = finished.get(branch)
        data = {} if result is None else result.data
        branch_node = TraceNode(
            "branch",
            f"branch {branch}",
            str(data.get("status", "running")),
            start=op.events[0].recorded_at,
            end=None if result is None else result.recorded_at,
            attributes={
                "phalanx.branch.name": branch,
                "phalanx.run.id": run_id,
                "phalanx.branch.stalled": branch in stalled or bool(data.get("stalled")),
            },
        )
        if data.get("error"):
            branch_node.attributes["phalanx.branch.error"] = data["error"]
        child = await _child_node(runtime, str(run_id), depth, seen)
        if child is not None:
            branch_node.children.append(child)
        node.children.append(branch_node)
    return node


async def _child_node(
    runtime: Runtime, run_id: str, depth: int, seen: set[str]
) -> TraceNode | None:
    if run_id in seen:
        return None
    try:
        history = await runtime.history(run_id)
    except UnknownRunError:
        return None  # never started (the parent crashed, or the fan-out ended first)
    return await _run_node(runtime, history, depth + 1, seen)


async def _run_node(runtime: Runtime, history: RunHistory, depth: int, seen: set[str]) -> TraceNode:
    seen.add(history.run_id)
    events = history.events
    epochs = sorted({e.epoch for e in events if e.epoch is not None})
    end = history.ended_at
    node = TraceNode(
        "run",
        f"phalanx.run {history.workflow}",
        history.status,
        start=history.started_at,
        end=end,
        attributes={
            "phalanx.run.id": history.run_id,
            "phalanx.run.workflow": history.workflow,
            "phalanx.run.runners": len(epochs),
        },
    )
    trace_id = _trace_id(events)
    if trace_id is not None:
        node.attributes["trace_id"] = trace_id
    if history.parent_run_id is not None:
        node.attributes["phalanx.run.parent_id"] = history.parent_run_id
    if history.error is not None:
        node.attributes["error.type"] = history.error.get("type")
        node.attributes["error.message"] = history.error.get("message")
    if depth > _MAX_DEPTH:
        node.attributes["phalanx.trace.truncated"] = True
        return node
    agents: dict[str, TraceNode] = {}
    for op in sorted(history.operations.values(), key=lambda o: o.op):
        opening = op.events[0].type
        if opening == "StepStarted":
            step = _step_node(op)
            owner = _agent_of(op)
            if owner is None:
                node.children.append(step)
                continue
            agent, opens = owner
            group = agents.get(agent)
            if group is None or opens:
                if group is not None:
                    _close_agent(group)
                group = agents[agent] = TraceNode(
                    "invoke_agent",
                    f"invoke_agent {agent}",
                    "running",
                    attributes={
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": agent,
                    },
                )
                node.children.append(group)
            group.children.append(step)
        elif opening == "ChildStarted":
            child_id = str(op.events[0].data.get("child_run_id"))
            child = await _child_node(runtime, child_id, depth, seen)
            if child is not None:
                child.attributes["phalanx.step.op"] = op.op
                node.children.append(child)
        elif opening == "GatherStarted":
            node.children.append(await _fanout_node(runtime, op, depth, seen))
        elif opening in ("TimerStarted", "SignalWaiting", "DecisionRecorded"):
            node.children.append(_wait_node(op))
    for group in agents.values():
        _close_agent(group)
    if history.terminal:
        _settle(node, history.status, end)
    tokens_in, tokens_out = node.tokens()
    node.attributes["gen_ai.usage.input_tokens"] = tokens_in
    node.attributes["gen_ai.usage.output_tokens"] = tokens_out
    return node


def _settle(node: TraceNode, status: str, end: float | None) -> None:
    """Operations a finished run left unfinished ended with it (cancelled, or cut off)."""
    for child in node.children:
        if child.kind == "run":
            continue  # a child run has its own journal and says for itself
        if child.end is None:
            child.end = end
            child.status = "cancelled" if status == "cancelled" else "abandoned"
        _settle(child, status, end)


def _wait_node(op: Operation) -> TraceNode:
    first = op.events[0]
    last = op.events[-1]
    if first.type == "DecisionRecorded":
        data = {k: v for k, v in first.data.items() if k not in ("op", "name")}
        attributes = {f"phalanx.decision.{k}": v for k, v in data.items()}
        return TraceNode(
            "decision", op.name, "recorded", first.recorded_at, first.recorded_at, attributes
        )
    if first.type == "TimerStarted":
        fired = op.last("TimerFired")
        return TraceNode(
            "sleep",
            "sleep",
            "fired" if fired else "waiting",
            first.recorded_at,
            None if fired is None else fired.recorded_at,
            {"phalanx.sleep.seconds": first.data.get("seconds")},
        )
    answered = op.last("SignalReceived", "SignalTimedOut")
    status = (
        "waiting"
        if answered is None
        else ("received" if answered.type == "SignalReceived" else "timed_out")
    )
    return TraceNode(
        "signal",
        f"signal {op.name}",
        status,
        first.recorded_at,
        None if answered is None else last.recorded_at,
        {"phalanx.signal.name": op.name},
    )


#: Child runs nest at most this deep in one tree (a guard against runaway recursion).
_MAX_DEPTH = 32


async def trace_run(runtime: Runtime, run_id: str) -> TraceNode:
    """The span tree of recorded run `run_id` and its child runs, read from the journal.

    Raises:
        UnknownRunError: no such run.
    """
    history = await runtime.history(run_id)
    return await _run_node(runtime, history, 0, set())
