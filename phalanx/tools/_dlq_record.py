"""Making a dead-letter entry, inside the failed call's run, and escalating it once.

Kept apart from the entry model (`_dlq_entry.py`) and from what people do with entries
(`_dlq.py`): this side runs as a durable step of the call's run, so it must be safe to
run again after a crash (the entry id is derived from the step's idempotency key, and
the first event is appended at expected version 0), and it reads the run's journal to
gather every attempt of the failed step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import CircuitOpenError, ConcurrencyError, ToolAttemptError, ToolError
from ..durable import lowlevel, occurred_at
from ..durable.lowlevel import run_stream
from ..journal import Event, EventStore, Metadata, NewEvent
from . import _spans as spans
from ._dlq_entry import DEAD_LETTERED, DeadLetterReason, dead_letter_id, dead_letter_stream
from ._notify import Delivery, Escalation, escalate
from ._tool import Tool

if TYPE_CHECKING:
    from ..durable import WorkflowContext


def _attempts_of(events: Sequence[Event], failure: ToolError, step: str) -> tuple[Any, list[Any]]:
    """The failed step's op and its attempts, from the run's journal."""
    key = getattr(failure, "key", None)
    ops = [
        e.data.get("op")
        for e in events
        if e.type == "StepStarted"
        and (e.data.get("key") == key if key else e.data.get("name") == step)
    ]
    if not ops:
        return None, []
    op = ops[-1]
    attempts: list[dict[str, Any]] = []
    started: dict[Any, float] = {}
    for event in events:
        if event.data.get("op") != op:
            continue
        if event.type == "StepStarted":
            started[event.data.get("attempt")] = occurred_at(event)
        elif event.type == "StepFailed":
            error = event.data.get("error") or {}
            fields = error.get("fields") or {}
            number = event.data.get("attempt")
            attempts.append(
                {
                    "attempt": number,
                    "started_at": started.get(number),
                    "duration_s": event.data.get("duration_s"),
                    "error_type": fields.get("error_type")
                    or str(error.get("type", "")).rpartition(".")[2],
                    "message": fields.get("message", error.get("message")),
                    "traceback": fields.get("traceback") or error.get("traceback"),
                    "status": fields.get("status"),
                    "retry_at": event.data.get("retry_at"),
                    "trace_id": event.metadata.trace_id,
                }
            )
    return op, attempts


def _reason(failure: ToolError) -> DeadLetterReason:
    if isinstance(failure, CircuitOpenError):
        return "circuit_open"
    if isinstance(failure, ToolAttemptError) and not failure.retryable:
        return "non_retryable"
    return "exhausted"


def _error(failure: ToolError) -> dict[str, Any]:
    if isinstance(failure, ToolAttemptError):
        return {"type": failure.error_type, "message": failure.message, "status": failure.status}
    return {"type": type(failure).__name__, "message": str(failure), "status": None}


async def dead_letter_call(
    ctx: WorkflowContext,
    tool: Tool,
    arguments: dict[str, Any],
    failure: ToolError,
    step: str,
    agent: str | None,
    call_id: str | None,
) -> dict[str, Any]:
    """The body of a call's dead-letter step: make the entry (once), then escalate (once).

    `arguments` are already redacted. Returns what the run needs to go on: the
    entry's id, the failed step's op, the attempt count and the final error.
    """
    entry_id = dead_letter_id(ctx.idempotency_key)
    store = lowlevel.store(ctx)
    op, attempts = _attempts_of(await store.read_stream(run_stream(ctx.run_id)), failure, step)
    trace_id = next((a["trace_id"] for a in attempts if a.get("trace_id")), None)
    error = _error(failure)
    now = ctx.clock.now()
    data = {
        "id": entry_id,
        "tool": tool.name,
        "tool_ref": tool.ref,
        "run_id": ctx.run_id,
        "agent": agent,
        "step": step,
        "call_id": call_id,
        "op": op,
        "arguments": arguments,
        "secrets": sorted(tool.secrets),
        "idempotent": tool.idempotent,
        "idempotency_key": getattr(failure, "key", None),
        "policy": tool.dead_letter,
        "reason": _reason(failure),
        "error": error,
        "attempts": attempts,
        "trace_id": trace_id,
        "created_at": now,
    }
    stream = dead_letter_stream(entry_id)
    metadata = Metadata(run_id=ctx.run_id, agent_id=agent, trace_id=trace_id)
    # Already there if an earlier attempt of this very step made it, before a crash.
    with contextlib.suppress(ConcurrencyError):
        await store.append(
            stream, [NewEvent(DEAD_LETTERED, data, metadata, indexed=True)], expected_version=0
        )
        spans.dead_lettered(tool.name, +1)
    recorded = await store.read_stream(stream)
    if not any(e.type == "DeadLetterEscalated" for e in recorded):
        count = len(attempts) or 1
        summary = (
            f"tool {tool.name!r} call {step!r} of run {ctx.run_id} is dead-lettered as "
            f"{entry_id} after {count} attempt(s): {error['type']}: {error['message']}"
            + (
                f"; the run waits: `phalanx dlq retry {entry_id}` or `phalanx dlq resolve "
                f"{entry_id} --result JSON`"
                if tool.dead_letter == "wait"
                else f"; see `phalanx dlq show {entry_id}`"
            )
        )
        deliveries = await escalate(
            tool.notifiers,
            Escalation(
                "dead_lettered",
                tool.name,
                summary,
                now,
                data,
                dead_letter_id=entry_id,
                run_id=ctx.run_id,
            ),
        )
        await _record_escalation(store, stream, now, deliveries)
    return {
        "dead_letter_id": entry_id,
        "op": op,
        "attempts": len(attempts),
        "error_type": error["type"],
        "message": error["message"],
        "reason": data["reason"],
        "policy": tool.dead_letter,
    }


async def _record_escalation(
    store: EventStore, stream: str, now: float, deliveries: list[Delivery]
) -> None:
    event = NewEvent(
        "DeadLetterEscalated", {"at": now, "deliveries": [d.to_json() for d in deliveries]}
    )
    await store.append(stream, [event])
