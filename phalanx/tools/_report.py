"""Reading tool calls back from a run's journal: which failed, were retried, dead-lettered.

A reliable call's step is recognised by what it journals, not by its name (a
workflow may name it anything): its `StepCompleted` result is `{"tool", "attempt",
"result"}`, and its `StepFailed` errors are `ToolAttemptError` / `ToolTimeoutError` /
`CircuitOpenError` with the tool's name among their fields. Its dead-letter step is
named `{step}/dead-letter` and returns the entry id and the call's op; a run that
waits on the entry waits for the signal `dlq:{id}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..journal import Event

_TOOL_ERRORS = frozenset({"ToolAttemptError", "ToolTimeoutError", "CircuitOpenError"})
_RESULT_KEYS = frozenset({"tool", "attempt", "result"})


def completed_tool(data: Mapping[str, Any]) -> tuple[str, int] | None:
    """(tool, attempt) if `data` is a reliable call's `StepCompleted`, else None."""
    result = data.get("result")
    if isinstance(result, dict) and result.keys() == _RESULT_KEYS:
        return str(result["tool"]), int(result["attempt"])
    return None


def failed_tool(data: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(tool, error class, its fields) if `data` is a reliable call's `StepFailed`."""
    error = data.get("error")
    if not isinstance(error, dict):
        return None
    kind = str(error.get("type", "")).rpartition(".")[2]
    fields = error.get("fields")
    if kind not in _TOOL_ERRORS or not isinstance(fields, dict) or "tool" not in fields:
        return None
    return str(fields["tool"]), kind, fields


def troubled_tool_calls(events: Iterable[Event]) -> list[dict[str, Any]]:
    """The run's tool calls that failed, were retried or went to the dead-letter queue.

    Each is `{op, step, tool, status, attempts, errors, dead_letter}` where `status`
    is `ok` (after retries), `failed` or `running`, `errors` lists each failed
    attempt, and `dead_letter` is None or `{id, outcome, by}` with `outcome` one of
    `waiting`, `retried`, `resolved`, `discarded` (a person acted; `by` says who), or,
    for a call nobody waited on, `continued` (the caller got `ToolUnavailable`) or
    `failed` (the caller got `ToolDeadLetteredError`).
    """
    calls: dict[int, dict[str, Any]] = {}
    entries: dict[str, dict[str, Any]] = {}
    waits: dict[str, dict[str, Any]] = {}
    for event in events:
        op = event.data.get("op")
        if not isinstance(op, int):
            continue
        name = str(event.data.get("name", ""))
        if event.type == "StepStarted" and op not in calls:
            calls[op] = {
                "op": op,
                "step": name,
                "tool": None,
                "status": "running",
                "attempts": 0,
                "errors": [],
                "dead_letter": None,
            }
        call = calls.get(op)
        if event.type in ("StepStarted", "StepFailed", "StepCompleted") and call is not None:
            call["attempts"] = max(call["attempts"], int(event.data.get("attempt", 1)))
        if event.type == "StepCompleted" and call is not None:
            done = completed_tool(event.data)
            if done is not None:
                call["tool"], call["status"] = done[0], "ok"
            elif name.endswith("/dead-letter"):
                result = event.data.get("result") or {}
                entries[str(result.get("dead_letter_id"))] = {
                    "op": result.get("op"),
                    "policy": result.get("policy"),
                }
        elif event.type == "StepFailed" and call is not None:
            failed = failed_tool(event.data)
            if failed is None:
                continue
            tool, kind, fields = failed
            call["tool"] = tool
            call["errors"].append(
                {
                    "attempt": event.data.get("attempt"),
                    "type": fields.get("error_type") or kind,
                    "message": fields.get("message") or event.data["error"].get("message"),
                }
            )
            if event.data.get("retry_at") is None:
                call["status"] = "failed"
        elif event.type == "SignalWaiting" and name.startswith("dlq:"):
            waits[name[4:]] = {"outcome": "waiting", "by": None}
        elif event.type == "SignalReceived" and name.startswith("dlq:"):
            data = event.data.get("data") or {}
            waits[name[4:]] = {"outcome": data.get("action"), "by": data.get("by")}
    for entry_id, entry in entries.items():
        call = calls.get(entry["op"]) if isinstance(entry["op"], int) else None
        if call is None:
            continue
        # Not waited on: the run went on without a result (`continue`) or failed (`fail`).
        went_on = "failed" if entry["policy"] == "fail" else "continued"
        wait = waits.get(entry_id, {"outcome": went_on, "by": None})
        call["dead_letter"] = {"id": entry_id, **wait}
    return [
        c
        for c in sorted(calls.values(), key=lambda c: c["op"])
        if c["tool"] is not None
        and (c["status"] != "ok" or c["attempts"] > 1 or c["dead_letter"] is not None)
    ]
