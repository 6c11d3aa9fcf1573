"""The dead-letter queue: tool calls that failed for good, kept for a person to act on.

The entries themselves (their streams, events and fold) are in `_dlq_entry.py`, and
making one inside the failed call's run is in `_dlq_record.py`; this module holds
what people do with entries, through the CLI or the API: list, show, retry, resolve,
discard. Its names are re-exported here, where they have always been importable.

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
import importlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import (
    ConcurrencyError,
    DeadLetterClosedError,
    DeadLetterRetryError,
    RunEndedError,
    ToolArgumentsError,
    ToolError,
    UnknownDeadLetterError,
    UnknownRunError,
)
from .._telemetry import REDACTED
from ..durable.lowlevel import inbox_stream
from ..journal import NewEvent
from . import _spans as spans
from ._attempt import run_attempts
from ._dlq_entry import DEAD_LETTERED as DEAD_LETTERED
from ._dlq_entry import INDEXED_TYPES as INDEXED_TYPES
from ._dlq_entry import DeadLetterEntry as DeadLetterEntry
from ._dlq_entry import DeadLetterReason as DeadLetterReason
from ._dlq_entry import DeadLetterStatus as DeadLetterStatus
from ._dlq_entry import dead_letter_id as dead_letter_id
from ._dlq_entry import dead_letter_signal as dead_letter_signal
from ._dlq_entry import dead_letter_stream as dead_letter_stream
from ._dlq_entry import default_actor as default_actor
from ._dlq_record import dead_letter_call as dead_letter_call
from ._tool import Tool

if TYPE_CHECKING:
    from ..durable import Runtime

logger = logging.getLogger("phalanx")


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
