"""Events: the immutable facts everything in phalanx is folded from.

`NewEvent` is what a caller appends; `Event` is what the store recorded, with the
stream sequence number, global position, lease epoch and timestamp it assigned.
Data is a JSON object, encoded once here so both stores refuse the same inputs with
the same errors before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._errors import EventDataError, PayloadTooLargeError
from ._json import Unjournalable, encode_json, safe_text, text_problem

#: Default cap on one event's encoded data, in bytes (1 MiB).
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who and what an event belongs to; every field is optional.

    `trace_id` and `span_id` carry the OpenTelemetry context so one trace can span
    agents, processes and a crash-resume.
    """

    run_id: str | None = None
    agent_id: str | None = None
    parent_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None


NO_METADATA = Metadata()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: a type name and a JSON object of data.

    `indexed` events can be found by type across the whole store (`read_indexed`);
    mark the few that projections look for (a run's start and end), not every event:
    the index costs every indexed append a little.
    """

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    metadata: Metadata = NO_METADATA
    indexed: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """An event as the store recorded it.

    `seq` counts from 1 within its stream without gaps; `position` orders every event
    of the store and increases in commit order; `epoch` is the lease epoch the append
    carried (None for an unleased stream); `recorded_at` is Unix seconds (UTC).
    """

    stream_id: str
    seq: int
    position: int
    type: str
    data: dict[str, Any]
    metadata: Metadata
    epoch: int | None
    recorded_at: float

    @property
    def timestamp(self) -> datetime:
        """`recorded_at` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.recorded_at, tz=UTC)

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (the `phalanx events --json` line)."""
        meta = {k: getattr(self.metadata, k) for k in Metadata.__slots__}
        return {
            "stream_id": self.stream_id,
            "seq": self.seq,
            "position": self.position,
            "type": self.type,
            "data": self.data,
            "epoch": self.epoch,
            "timestamp": self.timestamp.isoformat(),
            "metadata": {k: v for k, v in meta.items() if v is not None},
        }


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed: the stream's new version and its last global position."""

    version: int
    position: int


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of an atomic multi-stream append (`EventStore.append_many`).

    The fields mean what `EventStore.append`'s arguments mean, checked per stream.
    """

    stream_id: str
    events: Sequence[NewEvent]
    expected_version: int | None = None
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stream's folded state as of `version` (the last event it covers)."""

    stream_id: str
    version: int
    state: dict[str, Any]
    recorded_at: float


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to write a stream, proven by its epoch (a fencing token).

    Every new holder gets a strictly larger epoch than any before it, and the store
    rejects appends carrying an older one.
    """

    stream_id: str
    owner: str
    epoch: int
    expires_at: float


def encode_data(stream_id: str, event: NewEvent, max_bytes: int) -> str:
    """Encode one event's data as compact JSON, refusing what cannot be journaled.

    Raises:
        EventDataError: data that is not a JSON object of values every store holds
            (see `_json`), naming the path of the first bad value; or a bad type.
        PayloadTooLargeError: encoded data above `max_bytes`.
    """
    if not isinstance(event.type, str) or not event.type or text_problem(event.type):
        raise EventDataError(
            stream_id=safe_text(stream_id),
            event_type=safe_text(str(event.type)),
            reason="the type must be a non-empty string without NUL or lone surrogates",
        )
    # `type is dict` first: the ABC check alone costs a tenth of encoding a step's event.
    if type(event.data) is not dict and not isinstance(event.data, Mapping):
        raise EventDataError(
            stream_id=stream_id,
            event_type=event.type,
            reason=f"data must be a JSON object (a mapping), not {type(event.data).__name__}",
        )
    try:
        text, size = encode_json(event.data)
    except Unjournalable as exc:
        raise EventDataError(
            stream_id=stream_id, event_type=event.type, reason=exc.reason, path=exc.path
        ) from exc
    if size > max_bytes:
        raise PayloadTooLargeError(
            stream_id=stream_id, event_type=event.type, size=size, limit=max_bytes
        )
    return text


def check_names(stream_id: str, event: NewEvent) -> None:
    """Refuse a stream id or metadata value no store can keep as text.

    PostgreSQL text cannot hold NUL and no UTF-8 column can hold a lone surrogate;
    both stores refuse them here, alike, before anything is written.
    """
    m = event.metadata
    # One joined string checked at C speed: this runs for every event appended.
    joined = (
        stream_id
        if m is NO_METADATA
        else f"{stream_id}{m.run_id}{m.agent_id}{m.parent_id}{m.trace_id}{m.span_id}"
    )
    if joined.isascii() and "\x00" not in joined:
        return
    fields = [("stream id", stream_id)]
    fields += [(f"metadata {n}", getattr(m, n)) for n in Metadata.__slots__ if getattr(m, n)]
    for what, text in fields:
        problem = text_problem(text)
        if problem is not None:
            raise EventDataError(
                stream_id=safe_text(stream_id),
                event_type=safe_text(str(event.type)),
                reason=f"the {what} {problem}",
            )


def encode_state(stream_id: str, state: Mapping[str, Any], max_bytes: int) -> str:
    """Encode a snapshot's state with the same rules as event data."""
    return encode_data(stream_id, NewEvent("Snapshot", state), max_bytes)
