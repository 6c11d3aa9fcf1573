"""Event rows: the one encoding of events to table rows and back, for every SQL store.

Both stores keep the same columns, so building insert rows and decoding stored rows
(with the same `CorruptEventError` for a bad row) lives here once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._errors import CorruptEventError
from .._gc import cyclic_gc_paused
from ._events import (
    NO_METADATA,
    Event,
    Metadata,
    NewEvent,
    Snapshot,
    StreamAppend,
    check_names,
    encode_data,
)

#: The columns `decode_row` expects, in order.
EVENT_COLUMNS = (
    "position, stream_id, seq, type, data, epoch, recorded_at,"
    " run_id, agent_id, parent_id, trace_id, span_id"
)

Row = tuple[Any, ...]


def decode_row(row: Row) -> Event:
    """Build an `Event` from a stored row, naming the row if it is corrupt."""
    return _decode(row, {})


def decode_rows(rows: Iterable[Row]) -> list[Event]:
    """Build the `Event`s of many stored rows (a stream read back), in order.

    A read is the one place events are made by the thousand: the cyclic collector
    waits meanwhile (see `cyclic_gc_paused`), and events with the same metadata (a
    runner's) share one `Metadata`, instead of one per event.
    """
    shared: dict[Row, Metadata] = {}
    with cyclic_gc_paused():
        return [_decode(row, shared) for row in rows]


#: The C scanner behind `json.loads`, called directly: half the cost per event of
#: `json.loads`, which adds a regex match on each side of the scan in Python. (The
#: ignore: typeshed leaves out `scan_once`, which JSONDecoder sets in `__init__`.)
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _parse(text: Any) -> Any:
    """The JSON value of `text`, or the error `json.loads` raises for it."""
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError, TypeError):
        end = -1
    if end != len(text):
        value = json.loads(text)  # anything but one bare value: its verdict and message
    return value


def _decode(row: Row, shared: dict[Row, Metadata]) -> Event:
    position, stream_id, seq, type_, text, epoch, recorded_at = row[:7]
    try:
        data = _parse(text)
        if not isinstance(data, dict):
            raise ValueError(f"data is a JSON {type(data).__name__}, not an object")
        if not isinstance(type_, str) or not isinstance(recorded_at, float | int):
            raise ValueError("type or timestamp column has the wrong type")
    except (ValueError, TypeError, RecursionError) as exc:
        raise CorruptEventError(
            stream_id=str(stream_id), seq=int(seq), position=int(position), reason=str(exc)
        ) from exc
    meta = row[7:]
    metadata = shared.get(meta)
    if metadata is None:
        metadata = NO_METADATA if meta == _NO_META else Metadata(*meta)
        shared[meta] = metadata
    return Event(stream_id, seq, position, type_, data, metadata, epoch, float(recorded_at))


_NO_META = (None, None, None, None, None)


def decode_snapshot(stream_id: str, version: int, text: str, recorded_at: float) -> Snapshot:
    """Build a `Snapshot` from a stored row, naming the stream if its state is corrupt."""
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise CorruptEventError(
            stream_id=stream_id, seq=int(version), position=0, reason=f"snapshot: {exc}"
        ) from exc
    return Snapshot(stream_id, int(version), state, float(recorded_at))


def event_rows(
    stream_id: str,
    events: Sequence[NewEvent],
    first_seq: int,
    epoch: int | None,
    now: float,
    max_bytes: int,
) -> list[Row]:
    """Encode events into insert rows, refusing bad data before any SQL runs.

    Each row is (stream_id, seq, type, data, epoch, recorded_at, run_id, agent_id,
    parent_id, trace_id, span_id, indexed).
    """
    rows: list[Row] = []
    for offset, event in enumerate(events):
        text = encode_data(stream_id, event, max_bytes)
        check_names(stream_id, event)
        m = event.metadata
        rows.append(
            (
                stream_id,
                first_seq + offset,
                event.type,
                text,
                epoch,
                now,
                m.run_id,
                m.agent_id,
                m.parent_id,
                m.trace_id,
                m.span_id,
                event.indexed,
            )
        )
    return rows


def batch_rows(appends: Sequence[StreamAppend], now: float, max_bytes: int) -> list[list[Row]]:
    """Check a multi-stream append and encode each stream's rows, before any SQL runs.

    Raises:
        ValueError: no streams, a stream without events, or a stream named twice (one
            stream's events belong in one `StreamAppend`, so its version check means
            one thing).
        EventDataError: see `event_rows`.
        PayloadTooLargeError: see `event_rows`.
    """
    if not appends:
        raise ValueError("append_many needs at least one stream")
    seen: set[str] = set()
    for part in appends:
        if not part.events:
            raise ValueError(f"append_many: stream {part.stream_id!r} has no events")
        if part.stream_id in seen:
            raise ValueError(f"append_many: stream {part.stream_id!r} appears twice")
        seen.add(part.stream_id)
    return [event_rows(a.stream_id, a.events, 0, a.epoch, now, max_bytes) for a in appends]
