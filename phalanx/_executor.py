"""The executor seam: where sync functions (steps, tools) run off the event loop.

Outside a simulation a sync function runs in a worker thread, so a blocking step does
not stall the other tasks: on the event loop's own `WorkerThreads` (`_threads`), a
cheaper hand-off than `asyncio.to_thread`. Under a `SimulatedLoop` it runs inline: a
thread would let the OS scheduler decide when its result lands, and the same seed
could then give two different runs.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ._simloop import simulated_loop
from ._threads import WorkerThreads

T = TypeVar("T")


#: Each event loop's worker threads, like asyncio's default executor is per loop.
_THREADS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WorkerThreads] = (
    weakref.WeakKeyDictionary()
)


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call the sync `fn` off the loop (in a thread; inline under simulation)."""
    if simulated_loop() is not None:
        return fn(*args, **kwargs)
    loop = asyncio.get_running_loop()
    threads = _THREADS.get(loop)
    if threads is None:
        threads = _THREADS[loop] = WorkerThreads()
    return await threads.run(fn, *args, **kwargs)
