"""Task ownership: every task the actor runtime starts has an owner that waits for it.

An actor's task belongs to its parent (the supervisor of the parent actor, or the
system's root), and a parent never finishes before the tasks it owns: that is what
makes "no orphans" hold by construction rather than by bookkeeping.

Why not `asyncio.TaskGroup`: a TaskGroup treats the first failing child as fatal for
the whole group (it cancels every sibling and the parent task) and wraps errors in an
`ExceptionGroup`. Supervision is the opposite policy: a child's failure is *handled*
(restart one, restart all, or escalate), and the runners below never let an error
escape their task at all. A TaskGroup must also be entered with `async with` around
the owner's whole life, so every idle actor would carry one even if it never spawns a
child; a `Nursery` is made lazily, on the first child. What stays from TaskGroup is the
contract: a task is started only through an owner, and closing the owner cancels and
waits for every task it started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from contextvars import Context
from typing import Any

logger = logging.getLogger("phalanx")


class Nursery:
    """Owns a set of tasks: starts them, and on `aclose` cancels and waits for them all.

    Example::

        nursery = Nursery("/research")
        nursery.start(worker(), name="actor /research/web")
        ...
        await nursery.aclose()   # every task started above has finished

    Lifecycle: open on construction; `aclose` is idempotent, and `start` after it
    raises `RuntimeError` (callers check their own state first, so that is a bug).
    """

    __slots__ = ("_closed", "_name", "_tasks")

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether `aclose` has begun: no task can be started any more."""
        return self._closed

    def start(
        self, coro: Coroutine[Any, Any, None], *, name: str, context: Context | None = None
    ) -> asyncio.Task[None]:
        """Start `coro` as a task owned by this nursery and return the task.

        Args:
            coro: The coroutine to run; it should not raise (runners handle their
                own errors); an error that does escape is logged.
            name: The task's name, shown by debuggers and `asyncio.all_tasks()`.
            context: The contextvars the task runs in (default: a copy of the
                caller's), so a restarted actor keeps the context it was spawned in.

        Raises:
            RuntimeError: The nursery is closed.
        """
        if self._closed:
            coro.close()
            raise RuntimeError(f"nursery {self._name!r} is closed: cannot start {name!r}")
        task = asyncio.get_running_loop().create_task(coro, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Runners catch everything user code raises, so this is a runtime bug; log
            # it (retrieving the exception also stops asyncio's "never retrieved" noise).
            logger.error("task %s failed", task.get_name(), exc_info=error)

    async def aclose(self) -> bool:
        """Cancel every task still running and wait until all have finished.

        Returns:
            Whether the caller was cancelled while it waited (the wait goes on
            regardless: see `wait_through_cancellation`); re-raise if so.
        """
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return await wait_through_cancellation(tasks)


async def wait_through_cancellation(tasks: Iterable[asyncio.Task[Any]]) -> bool:
    """Wait until every task is done, even if the waiting task is cancelled meanwhile.

    Cleanup that stops children must finish, or a cancelled parent would leave
    orphans behind; so a cancellation of the waiter is remembered, not obeyed, until
    the children are gone. The tasks themselves are never cancelled here (the caller
    did that, with a reason) and their errors are not raised.

    Returns:
        Whether the waiter was cancelled while waiting; the caller re-raises
        `asyncio.CancelledError` when it is done cleaning up.
    """
    pending = {task for task in tasks if not task.done()}
    cancelled = False
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    return cancelled
