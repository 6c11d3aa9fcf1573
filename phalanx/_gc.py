"""Pausing Python's cyclic garbage collector around bulk reads of a journal.

Reading a journal allocates a few objects per event (the event, its data), none in
a cycle, and every full collection meanwhile walks every live object: the cost per
event then grows with the journal's length. Reference counting still frees all of
them; only the cycle finder waits.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block; back on after, unless it was off.

    Without the pause, reading a 200k-event stream cost 1.5x more per event than a
    2k one, and resuming a 100k-step run 1.6x more per event than a 1k one.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
