"""A recorded journal written back into a store, timestamps and epochs as recorded.

Golden fixtures (the README's pictures, tests of how a run is drawn) need a run whose
every timestamp is fixed: re-running the demo gives new ids and new times. So a run is
recorded once as the JSON lines `phalanx events --json` prints (one event a line, from
every stream of the run tree), and `load_recorded` appends them to a fresh store in
their original order, with the store's clock reading each event's own timestamp and
each stream's lease taken over up to the epoch the event carried, so the store holds
the same journal: same streams, sequence numbers, epochs and times.

What `to_json` does not carry is whether an event was in the type index; the types the
runtime, the dead-letter queue and the breakers index are listed here (`INDEXED`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .._clock import SystemClock
from ..journal import Metadata, NewEvent, store_from_url

#: Event types appended with `indexed=True` (run status, dead letters, breaker states).
INDEXED = frozenset(
    {
        "RunStarted",
        "SignalWaiting",
        "SignalReceived",
        "SignalTimedOut",
        "RunCompleted",
        "RunFailed",
        "RunCancelled",
        "DeadLettered",
        "DeadLetterRetried",
        "DeadLetterRetryFailed",
        "DeadLetterResolved",
        "DeadLetterDiscarded",
        "BreakerOpened",
        "BreakerHalfOpened",
        "BreakerClosed",
    }
)


class _RecordedClock(SystemClock):
    """Wall time is whatever the event being appended says; the rest is real."""

    def __init__(self) -> None:
        self.at = 0.0

    def now(self) -> float:
        return self.at


def read_recorded(path: Path) -> list[dict[str, Any]]:
    """The events of a recorded journal file (JSON lines), in global order."""
    lines = path.read_text("utf-8").splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    return sorted(events, key=lambda e: int(e["position"]))


async def load_recorded(url: str, events: Iterable[Mapping[str, Any]]) -> None:
    """Append recorded `events` (`Event.to_json()` dicts) to the empty store at `url`."""
    clock = _RecordedClock()
    store = store_from_url(url, clock=clock)
    await store.open()
    try:
        epochs: dict[str, int] = {}
        for event in events:
            stream = str(event["stream_id"])
            clock.at = datetime.fromisoformat(str(event["timestamp"])).timestamp()
            epoch = event.get("epoch")
            while epoch is not None and epochs.get(stream, 0) < int(epoch):
                take = store.acquire_lease if stream not in epochs else store.take_over_lease
                epochs[stream] = (await take(stream, "recorded", 3600.0)).epoch
            metadata = Metadata(**dict(event.get("metadata") or {}))
            new = NewEvent(
                str(event["type"]), event["data"], metadata, indexed=event["type"] in INDEXED
            )
            await store.append(stream, [new], expected_version=int(event["seq"]) - 1, epoch=epoch)
    finally:
        await store.close()
