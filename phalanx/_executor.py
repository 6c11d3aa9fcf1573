"""The executor seam: where sync functions (steps, tools) run off the event loop.

Outside a simulation a sync function runs in a worker thread (`asyncio.to_thread`),
so a blocking step does not stall the other tasks. Under a `SimulatedLoop` it runs
inline: a thread would let the OS scheduler decide when its result lands, and the
same seed could then give two different runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from ._simloop import simulated_loop

T = TypeVar("T")


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call the sync `fn` off the loop (in a thread; inline under simulation)."""
    if simulated_loop() is not None:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)
