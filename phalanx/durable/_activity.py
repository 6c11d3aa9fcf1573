"""What a run is doing right now: work in flight, and waits only the outside can end.

A worker hands a run back (parks it) when the run only waits: on a signal, a timer,
its inbox or a child run executing on another worker, with no step in flight. It then
needs to know when the run could move again: when its inbox grows (a signal, a cancel,
a child's ending, which is written to the inbox in the child's own final commit) or at
the earliest wake-up time of its waits (a timer, a signal's timeout, the run's
deadline). The runner keeps this count here; the workflow context and the lowlevel
API mark each wait and each piece of work.

Only counted, never inferred: code that awaits something else (an outside future) is
neither, so a run doing only that looks idle as long as something else waits too. The
worker's settle time (nothing written, nothing read for a while) covers the short
gaps, such as a waiter woken but not yet back.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator


class Activity:
    """A run's waits (with the time each may end by itself) and its work in flight."""

    def __init__(self) -> None:
        self._waits: dict[int, float | None] = {}
        self._tokens = itertools.count()
        self._working = 0

    @contextlib.contextmanager
    def waiting(self, wake_at: float | None = None) -> Iterator[None]:
        """Mark a wait that ends by an inbox event, or by itself at `wake_at` (Unix s)."""
        token = next(self._tokens)
        self._waits[token] = wake_at
        try:
            yield
        finally:
            del self._waits[token]

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Mark work in flight (a step): the run is not idle meanwhile."""
        self._working += 1
        try:
            yield
        finally:
            self._working -= 1

    @property
    def idle(self) -> bool:
        """Whether the run only waits: some wait open, no work in flight."""
        return bool(self._waits) and not self._working

    def wake_at(self, deadline_at: float | None) -> float | None:
        """The earliest time a wait (or the run's deadline) ends by itself, if any."""
        times = [t for t in (*self._waits.values(), deadline_at) if t is not None]
        return min(times, default=None)
