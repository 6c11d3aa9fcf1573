"""Worker threads for sync steps: a cheaper hand-off than `asyncio.to_thread`.

Most real tools are plain `def`, and a step runs one in a thread so it cannot stall
the run. `asyncio.to_thread` pays, per call, for the executor's bookkeeping: a
`concurrent.futures.Future`, a work item, a semaphore and a thread-count check on
submit, and a second future chained to it on the loop. Here a call is one tuple on a
C-implemented `SimpleQueue` that long-lived threads block on, and one
`call_soon_threadsafe` back: the wake-up of the event loop, which no hand-off avoids.
`benchmarks/durable.py` measures both side by side.

Threads start on demand, up to `max_threads`, and exit after `IDLE_S` without work,
so an idle runtime holds none and nothing needs shutting down. They are daemon
threads: a step still running when the process exits dies with it, as in a crash
(the journal re-runs it on resume), instead of holding the exit up.

A call runs in a copy of the caller's context (contextvars), as with `to_thread`: the
step's idempotency key and attempt, and the current span, are seen by the function.
A cancelled caller stops waiting; the function runs on to its end, as with
`to_thread` (a thread cannot be interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds a thread waits for work before it exits.
IDLE_S = 10.0

_Job = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Hand a thread's outcome to the waiting task (on the loop's thread)."""
    if future.cancelled():
        return  # the caller stopped waiting
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class WorkerThreads:
    """Long-lived threads that run sync functions for the event loop.

    Example::

        threads = WorkerThreads()
        total = await threads.run(sum, [1, 2, 3])
    """

    def __init__(self, max_threads: int | None = None) -> None:
        # The default of ThreadPoolExecutor (and so of asyncio.to_thread).
        self.max_threads = max_threads or min(32, (os.cpu_count() or 1) + 4)
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` in a worker thread and return what it returns.

        Raises:
            BaseException: whatever `fn` raised, re-raised here.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, contextvars.copy_context(), fn, args, kwargs))
        with self._lock:
            start = self._idle == 0 and self._threads < self.max_threads
            if start:
                self._threads += 1
            else:
                self._idle -= 1  # that idle thread takes this job
        if start:
            threading.Thread(target=self._work, name="phalanx-step", daemon=True).start()
        return await future

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody counted on this thread taking a job
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue  # a job is on its way to this thread
            loop, future, context, fn, args, kwargs = job
            try:
                result, error = context.run(fn, *args, **kwargs), None
            except BaseException as exc:  # handed to the caller, who re-raises it
                result, error = None, exc
            # A RuntimeError: the loop closed meanwhile, and nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)
            del job, future, result, error
            with self._lock:
                self._idle += 1
