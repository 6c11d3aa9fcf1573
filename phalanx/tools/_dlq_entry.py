"""A dead-letter entry: its stream, its events and the state folded from them.

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

Kept apart from making entries (`_dlq_record.py`) and acting on them (`_dlq.py`):
this is the pure model both sides share (names, event types, the fold), with no I/O.
"""

from __future__ import annotations

import getpass
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..journal import Event

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
