"""The dead-letter queue: tool calls that failed for good, kept for a person to act on.

Each entry is a stream, `dlq:{id}`. It opens with an indexed `DeadLettered` event that
holds the call's whole context: run, agent, step, tool (and where to import it),
arguments with secrets redacted, every attempt (time, duration, error type, message,
traceback), the trace id and the dead-letter policy. What people do with it is
appended after, each with who did it and why, and indexed so `dlq list` folds every
entry's status from the type index alone, without reading each stream:

- `DeadLetterRetried`: the call was run again (by `phalanx dlq retry`) and succeeded;
- `DeadLetterRetryFailed`: it was run again and failed again (the entry stays open);
- `DeadLetterResolved`: a person supplied the result;
- `DeadLetterDiscarded`: a person gave up on the call, saying why.

Closing actions are appended with the version the actor read (compare-and-set), so
two people cannot both resolve one entry. When the call's run waits on the entry
(policy `wait`), the closing action is followed by a signal named after the entry,
which resumes the run with the outcome. The entry is closed *before* the signal is
sent; if the signal is lost (the process dies in between), acting on the entry again
sees it closed and sends the recorded outcome once more, so a waiting run is never
stranded. Signals are journaled, so the run resumes correctly even when no process
was running it at the time: `phalanx resume RUN` continues it with the outcome.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._errors import (
    CircuitOpenError,
    ConcurrencyError,
    DeadLetterClosedError,
    DeadLetterRetryError,
    RunEndedError,
    ToolArgumentsError,
    ToolAttemptError,
    ToolError,
    UnknownDeadLetterError,
    UnknownRunError,
)
from .._telemetry import REDACTED
from ..durable import lowlevel
from ..durable.lowlevel import inbox_stream, run_stream
from ..journal import Event, EventStore, Metadata, NewEvent
from . import _spans as spans
from ._attempt import run_attempts
from ._notify import Delivery, Escalation, escalate
from ._tool import Tool

if TYPE_CHECKING:
    from ..durable import Runtime, WorkflowContext

logger = logging.getLogger("phalanx")

DeadLetterStatus = Literal["open", "resolved", "discarded"]
DeadLetterReason = Literal["exhausted", "non_retryable", "circuit_open"]

DEAD_LETTERED = "DeadLettered"
#: Every indexed event type of an entry: `dlq list` reads only these.
INDEXED_TYPES = (
    DEAD_LETTERED,
    "DeadLetterRetried",
    "DeadLetterRetryFailed",
    "DeadLetterResolved",
    "DeadLetterDiscarded",
)
_CLOSING = {
    "DeadLetterRetried": ("resolved", "retried"),
    "DeadLetterResolved": ("resolved", "resolved"),
    "DeadLetterDiscarded": ("discarded", "discarded"),
}


def dead_letter_stream(entry_id: str) -> str:
    """The stream of one dead-letter entry."""
    return f"dlq:{entry_id}"


def dead_letter_signal(entry_id: str) -> str:
    """The name of the signal a run waiting on entry `entry_id` waits for."""
    return f"dlq:{entry_id}"


def dead_letter_id(key: str) -> str:
    """The entry id for the dead-lettering step with idempotency key `key`.

    Derived, not drawn: the step that dead-letters a call may run again after a
    crash, and must find the entry it made rather than make a second one.
    """
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def default_actor() -> str:
    """Who acts on an entry unless told: the operating-system user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user database entry (some containers)
        return "unknown"


@dataclass
class DeadLetterEntry:
    """A dead-letter entry folded from its stream: the failed call and what was done."""

    id: str
    status: DeadLetterStatus = "open"
    data: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    resolution: dict[str, Any] | None = None
    version: int = 0

    # -- the call's context, from `DeadLettered` ---------------------------------------

    @property
    def tool(self) -> str:
        """The tool's name."""
        return str(self.data.get("tool", ""))

    @property
    def run_id(self) -> str | None:
        """The run that made the call (None for calls made outside a run)."""
        return self.data.get("run_id")

    @property
    def policy(self) -> str:
        """The tool's dead-letter policy when the call failed."""
        return str(self.data.get("policy", "fail"))

    @property
    def attempts_made(self) -> int:
        """Attempts of the call so far: the run's, then those of failed retries."""
        retried = sum(
            len(action.get("attempts") or ())
            for action in self.actions
            if action["action"] == "retry_failed"
        )
        return len(self.data.get("attempts") or ()) + retried

    @property
    def waiting(self) -> bool:
        """Whether a run waits on this entry now."""
        return self.status == "open" and self.policy == "wait"

    def apply(self, event: Event) -> None:
        """Fold one more event of the entry's stream."""
        self.version = event.seq
        data = dict(event.data)
        if event.type == DEAD_LETTERED:
            self.data = data
            return
        if event.type == "DeadLetterEscalated":
            self.escalations.append(data)
            return
        closing = _CLOSING.get(event.type)
        action = closing[1] if closing is not None else "retry_failed"
        self.actions.append({"action": action, **data})
        if closing is not None and self.status == "open":
            self.status = "resolved" if closing[0] == "resolved" else "discarded"
            self.resolution = {"action": action, **data}

    @classmethod
    def fold(cls, entry_id: str, events: Sequence[Event]) -> DeadLetterEntry:
        """Fold a whole stream."""
        entry = cls(entry_id)
        for event in events:
            entry.apply(event)
        return entry

    def summary(self) -> dict[str, Any]:
        """One line of `phalanx dlq list --json`."""
        error = self.data.get("error") or {}
        return {
            "id": self.id,
            "status": self.status,
            "tool": self.tool,
            "run_id": self.run_id,
            "agent": self.data.get("agent"),
            "step": self.data.get("step"),
            "policy": self.policy,
            "waiting": self.waiting,
            "reason": self.data.get("reason"),
            "error_type": error.get("type"),
            "message": error.get("message"),
            "attempts": len(self.data.get("attempts") or ()),
            "created_at": self.data.get("created_at"),
            "closed_by": None if self.resolution is None else self.resolution.get("by"),
        }

    def to_json(self) -> dict[str, Any]:
        """`phalanx dlq show --json`: everything recorded about the entry."""
        return {
            **self.summary(),
            "tool_ref": self.data.get("tool_ref"),
            "call_id": self.data.get("call_id"),
            "op": self.data.get("op"),
            "arguments": self.data.get("arguments"),
            "secrets": self.data.get("secrets", []),
            "idempotency_key": self.data.get("idempotency_key"),
            "trace_id": self.data.get("trace_id"),
            "error": self.data.get("error"),
            "attempts": self.data.get("attempts", []),
            "actions": self.actions,
            "escalations": self.escalations,
            "resolution": self.resolution,
        }


# -- making an entry (inside the failed call's run) ---------------------------------------


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
            started[event.data.get("attempt")] = event.recorded_at
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


# -- acting on entries (a person, through the CLI or the API) -----------------------------


def _load_tool(entry: DeadLetterEntry) -> Tool:
    ref = entry.data.get("tool_ref")
    if not ref:
        raise DeadLetterRetryError(
            dead_letter_id=entry.id,
            reason=f"tool {entry.tool!r} cannot be imported (declared inside a function or "
            "in __main__, or an MCP server's tool): retry it in code with "
            "`DeadLetterQueue.retry(..., tool=...)`, or resolve the entry by hand with "
            f"`phalanx dlq resolve {entry.id} --result JSON`",
        )
    module_name, _, qualname = str(ref).partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise DeadLetterRetryError(
            dead_letter_id=entry.id,
            reason=f"cannot import tool {entry.tool!r} from {ref}: {exc}; run this from the "
            "directory (or with the PYTHONPATH) the workers use",
        ) from exc
    if not isinstance(obj, Tool):
        raise DeadLetterRetryError(
            dead_letter_id=entry.id,
            reason=f"{ref} is no longer a tool (a {type(obj).__name__}); resolve the entry by "
            "hand with `phalanx dlq resolve`",
        )
    return obj


class DeadLetterQueue:
    """The dead-letter entries of a runtime's store, and what people do with them.

    Example::

        async with phalanx.open_runtime() as runtime:
            queue = DeadLetterQueue(runtime)
            for entry in await queue.entries(tool="charge"):
                await queue.resolve(entry.id, {"status": "refunded"}, reason="done by hand")

    Every action is journaled with who did it (`by`, default the OS user) and why.

    Raises (from the actions):
        UnknownDeadLetterError: no entry with that id.
        DeadLetterClosedError: the entry was already resolved or discarded.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store

    async def entries(
        self,
        *,
        tool: str | None = None,
        run_id: str | None = None,
        status: DeadLetterStatus | None = "open",
    ) -> list[DeadLetterEntry]:
        """Entries, oldest first, filtered by tool, run and status (None: every status)."""
        entries: dict[str, DeadLetterEntry] = {}
        after = 0
        while page := await self.store.read_indexed(INDEXED_TYPES, after=after, limit=5000):
            for event in page:
                entry_id = event.stream_id.removeprefix("dlq:")
                entry = entries.get(entry_id)
                if entry is None:
                    entry = entries[entry_id] = DeadLetterEntry(entry_id)
                entry.apply(event)
            after = page[-1].position
        return [
            e
            for e in entries.values()
            if e.data
            and (tool is None or e.tool == tool)
            and (run_id is None or e.run_id == run_id)
            and (status is None or e.status == status)
        ]

    async def get(self, entry_id: str) -> DeadLetterEntry:
        """One entry with everything recorded about it."""
        events = await self.store.read_stream(dead_letter_stream(entry_id))
        if not events or events[0].type != DEAD_LETTERED:
            raise UnknownDeadLetterError(dead_letter_id=entry_id, store=self.store.url)
        return DeadLetterEntry.fold(entry_id, events)

    async def resolve(
        self, entry_id: str, result: Any, *, by: str | None = None, reason: str | None = None
    ) -> DeadLetterEntry:
        """Close the entry with a result a person supplies; a waiting run gets it."""
        _json(result)
        return await self._close(
            entry_id,
            "DeadLetterResolved",
            {"by": by or default_actor(), "reason": reason, "result": result},
        )

    async def discard(
        self, entry_id: str, *, reason: str, by: str | None = None
    ) -> DeadLetterEntry:
        """Give up on the call; a waiting run goes on with the tool marked unavailable."""
        return await self._close(
            entry_id, "DeadLetterDiscarded", {"by": by or default_actor(), "reason": reason}
        )

    async def retry(
        self,
        entry_id: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        tool: Tool | None = None,
    ) -> DeadLetterEntry:
        """Run the call again here, under the tool's timeout and retry policy.

        On success the entry is resolved with the result (and a waiting run resumes
        with it); on failure the attempts are recorded and the entry stays open.
        Secret arguments were redacted when the call was recorded: give them again in
        `arguments` (merged over the recorded ones). The breaker is not consulted: a
        person asked for this call. The tool is imported from where it was declared,
        unless given as `tool` (as it must be for one that cannot be imported, such
        as an MCP server's from `open_mcp_tools`).

        Raises:
            DeadLetterRetryError: the tool cannot be imported here (or `tool` is another
                tool), or secrets are missing.
            ToolError: the call failed again (recorded on the entry).
        """
        entry = await self.get(entry_id)
        if entry.status != "open":
            await self._redeliver(entry)
            raise _closed(entry)
        if tool is None:
            tool = _load_tool(entry)
        elif tool.name != entry.tool:
            raise DeadLetterRetryError(
                dead_letter_id=entry_id,
                reason=f"it is a call of tool {entry.tool!r}, not of {tool.name!r}",
            )
        merged = {**(entry.data.get("arguments") or {}), **(arguments or {})}
        missing = [k for k in entry.data.get("secrets", []) if merged.get(k) == REDACTED]
        if missing:
            raise DeadLetterRetryError(
                dead_letter_id=entry_id,
                reason=f"its secret argument(s) {', '.join(missing)} were redacted when the "
                "call was recorded; give them again with --arguments '{\"NAME\": VALUE}'",
            )
        try:
            parsed = tool.parse(merged)
        except ToolArgumentsError as exc:
            raise DeadLetterRetryError(dead_letter_id=entry_id, reason=str(exc)) from exc
        actor = by or default_actor()
        records: list[dict[str, Any]] = []
        runtime = self.runtime
        try:
            value, _ = await run_attempts(
                tool,
                dict(parsed),
                clock=runtime.clock,
                entropy=lambda: runtime.entropy,
                breaker=None,
                step=str(entry.data.get("step", "")),
                call_id=str(entry.data.get("call_id") or entry.data.get("step") or ""),
                key=entry.data.get("idempotency_key"),
                records=records,
                first_attempt=entry.attempts_made + 1,
            )
            result = _json(value)
        except (ToolError, TypeError) as exc:
            failed = {
                "by": actor,
                "reason": reason,
                "attempts": records,
                "error": {"type": type(exc).__name__, "message": str(exc)},
                "at": runtime.clock.now(),
                "tool": entry.tool,
            }
            await self.store.append(
                dead_letter_stream(entry_id),
                [NewEvent("DeadLetterRetryFailed", failed, indexed=True)],
            )
            if isinstance(exc, TypeError):
                raise DeadLetterRetryError(dead_letter_id=entry_id, reason=str(exc)) from exc
            raise
        return await self._close(
            entry_id,
            "DeadLetterRetried",
            {"by": actor, "reason": reason, "result": result, "attempts": records},
        )

    async def _close(self, entry_id: str, event_type: str, data: dict[str, Any]) -> DeadLetterEntry:
        stream = dead_letter_stream(entry_id)
        while True:
            entry = await self.get(entry_id)
            if entry.status != "open":
                await self._redeliver(entry)
                raise _closed(entry)
            full = {**data, "at": self.runtime.clock.now(), "tool": entry.tool}
            try:
                await self.store.append(
                    stream,
                    [NewEvent(event_type, full, indexed=True)],
                    expected_version=entry.version,
                )
            except ConcurrencyError:
                continue  # someone appended meanwhile: read again, decide again
            spans.dead_lettered(entry.tool, -1)
            break
        entry = await self.get(entry_id)
        await self._signal(entry)
        return entry

    async def _signal(self, entry: DeadLetterEntry) -> None:
        if entry.policy != "wait" or entry.resolution is None or entry.run_id is None:
            return
        payload = {"dead_letter_id": entry.id, **entry.resolution}
        # A run that ended meanwhile (e.g. cancelled) waits for nothing any more.
        with contextlib.suppress(RunEndedError):
            await self.runtime.signal(entry.run_id, dead_letter_signal(entry.id), payload)

    async def _redeliver(self, entry: DeadLetterEntry) -> None:
        """Send a closed entry's outcome again if its run still waits and has none."""
        if entry.policy != "wait" or entry.resolution is None or entry.run_id is None:
            return
        name = dead_letter_signal(entry.id)
        try:
            history = await self.runtime.history(entry.run_id)
        except UnknownRunError:
            return
        if history.terminal:
            return
        waits = [
            o
            for o in history.operations.values()
            if o.kind == "signal" and o.name == name and o.last("SignalReceived") is None
        ]
        if not waits:
            return
        consumed = {e.data.get("inbox_seq") for e in history.events if e.type == "SignalReceived"}
        inbox = await self.store.read_stream(inbox_stream(entry.run_id))
        if any(
            e.type == "SignalSent" and e.data.get("name") == name and e.seq not in consumed
            for e in inbox
        ):
            return
        logger.info(
            "dead-letter entry %s: sending its outcome to run %s again", entry.id, entry.run_id
        )
        await self._signal(entry)


def _closed(entry: DeadLetterEntry) -> DeadLetterClosedError:
    by = "" if entry.resolution is None else str(entry.resolution.get("by", ""))
    return DeadLetterClosedError(dead_letter_id=entry.id, status=entry.status, by=by or "unknown")


def _json(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a dead-letter result must be JSON-serialisable: {exc}") from exc
