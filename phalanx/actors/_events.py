"""Lifecycle events: what happened to which actor, for people and for the journal.

The runtime reports every lifecycle change as an `ActorEvent` to the `on_event` hook
given to `open_actor_system`. Today that is for logs, tests and dashboards; the
durable layer will append them to the journal, so an event carries only plain,
JSON-friendly fields (the error's type and message, not the exception object).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

EventKind = Literal[
    "started",
    "stopped",
    "failed",
    "restarted",
    "stalled",
    "recovered",
    "escalated",
    "message_rejected",
    "deadline_exceeded",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorEvent:
    """One lifecycle event of one actor (or supervisor).

    Kinds: `started` (an incarnation finished `on_start`), `stopped` (for good; the
    reason says why), `failed` (an incarnation raised), `restarted` (by its
    supervisor; the reason names the strategy and the failed sibling), `stalled` (no
    heartbeat within the timeout while busy), `recovered` (a heartbeat after a stall),
    `escalated` (a supervisor gave up; the path is the supervisor's, `/` for the
    system's root), `message_rejected` (refused: mailbox full or actor stopped) and
    `deadline_exceeded`.

    Attributes:
        kind: What happened.
        path: The actor's path, e.g. `/research/web_search`.
        time: Wall-clock time from the system's clock.
        incarnation: Which incarnation (1 for the first, +1 per restart).
        reason: A short human-readable explanation.
        error_type: The exception's type name, for `failed` and `escalated`.
        error_message: The exception's message.
        message_id: The message concerned, for `message_rejected`.
        progress: The last progress reported by `heartbeat`, for `stalled`.
    """

    kind: EventKind
    path: str
    time: float
    incarnation: int = 0
    reason: str = ""
    error_type: str | None = None
    error_message: str | None = None
    message_id: str | None = None
    progress: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The event as a dict of its fields (JSON-ready if `progress` is)."""
        return asdict(self)


#: Receives every event, synchronously; it must not block (hand off to a queue).
EventHook = Callable[[ActorEvent], None]
