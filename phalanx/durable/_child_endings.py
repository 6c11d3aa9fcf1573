"""How a queued child run's ending reaches its parent: a notice, and a waiter per child.

A child run submitted to the work queue (see `_fleet_host.py`) ends on whichever
worker ran it. Its runner appends `ChildEnded` to the parent's inbox in the same
transaction as its own terminal event (`ending_notice`), so the notice exists if and
only if the ending does. The parent's runner reads it with the rest of its inbox and
wakes the wait on that child (`ChildWaiters`); a parked parent is claimable again
because its inbox grew.
"""

from __future__ import annotations

import asyncio

from ..journal import Event, Metadata, NewEvent, StreamAppend
from ._history import RunHistory, RunStatus, inbox_stream

#: The notice a queued child run's ending leaves in its parent's inbox.
CHILD_ENDED = "ChildEnded"


def ending_notice(history: RunHistory, status: RunStatus) -> StreamAppend | None:
    """The parent's notice to commit with a queued child's end (None for any other run)."""
    parent_id = history.parent_run_id
    if parent_id is None or history.queue is None:
        return None  # a top-level run, or a child its parent awaits in-process
    notice = NewEvent(
        CHILD_ENDED,
        {"child_run_id": history.run_id, "status": status},
        Metadata(run_id=parent_id, parent_id=history.run_id),
    )
    return StreamAppend(inbox_stream(parent_id), [notice])


class ChildWaiters:
    """One event per queued child waited on, set by its ending (or a cancel asked for it)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def arm(self, child_id: str) -> asyncio.Event:
        """The event for `child_id`, made on first use."""
        return self._events.setdefault(child_id, asyncio.Event())

    def forget(self, child_id: str) -> None:
        """Drop the event of a child no longer waited on."""
        self._events.pop(child_id, None)

    def wake(self, child_id: str) -> None:
        """Wake the wait on `child_id`, if someone waits."""
        event = self._events.get(child_id)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Wake every wait (the runner stopped: each wait must see that and end)."""
        for event in self._events.values():
            event.set()

    def read(self, event: Event) -> None:
        """Wake the wait an inbox event is about, if it is a child's ending."""
        if event.type == CHILD_ENDED:
            self.wake(str(event.data.get("child_run_id")))
