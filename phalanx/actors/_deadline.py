"""Deadline scopes inside a run, journaled so a resumed run keeps the same deadline.

`fail_after(ctx, s)` and `move_on_after(ctx, s)` (named as in trio) bound the work in
their body: when the deadline passes, the task running the body is cancelled (its
cleanup runs), and on exit `fail_after` raises `DeadlineExceededError` while
`move_on_after` carries on (`scope.cancelled_caught` says whether it stopped).

The deadline is a point in wall-clock time on the run's clock, journaled
(`DeadlineSet`) the first time the scope is entered: a run resumed after a crash, in
another process, an hour later, enforces the deadline it first set, not a fresh
`s` seconds, exactly as a run's own `deadline_at` does. A scope whose deadline passed
(`DeadlineExpired` is journaled) stops its body at the same point on replay: at its
first operation the journal cannot answer. Scopes nest, and a deadline only ever
shrinks: the deadline in force lives in a contextvar, and actors spawned inside a
scope (`Supervisor.spawn`) are child runs with that deadline.

There is deliberately no version without `ctx`: outside a run, nothing journals the
deadline, so it could only silently run on the process's clock while runs use the
journal's; use `asyncio.timeout` there, which says what it is.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Literal

from .._errors import DeadlineExceededError
from ..durable import WorkflowContext, lowlevel

_CURRENT: ContextVar[float | None] = ContextVar("phalanx_deadline_at", default=None)


def current_deadline() -> float | None:
    """The deadline in force (Unix seconds on the run's clock) of the enclosing scopes."""
    return _CURRENT.get()


class DeadlineScope:
    """The scope made by `fail_after` / `move_on_after`; use it with `async with`.

    Attributes:
        deadline_at: The deadline in force inside the scope (its own or an earlier,
            inherited one), as Unix seconds on the run's clock; set on entry.
        cancelled_caught: Whether this scope's deadline passed and stopped the body.

    A cancellation from outside, or from an enclosing scope whose deadline is
    earlier, passes through untouched. A scope is single-use.
    """

    def __init__(
        self,
        ctx: WorkflowContext,
        seconds: float,
        *,
        kind: Literal["fail_after", "move_on_after"],
    ) -> None:
        self._ctx = ctx
        self._seconds = seconds
        self._kind = kind
        self._op = 0
        self._task: asyncio.Task[object] | None = None
        self._token: Token[float | None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._timer: asyncio.Task[None] | None = None
        self._fired = False
        self._journaled = False
        self._cancelling = 0
        self.deadline_at: float | None = None
        self.cancelled_caught = False

    async def __aenter__(self) -> DeadlineScope:
        if self._token is not None:
            raise RuntimeError("a deadline scope can be entered only once")
        ctx = self._ctx
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline scope must be used inside an asyncio task")
        self._task = task
        op, recorded = lowlevel.claim(ctx, "deadline", self._kind)
        self._op = op
        expired = False
        if recorded is None:
            own = ctx.clock.now() + max(0.0, self._seconds)
            await lowlevel.record(
                ctx,
                "DeadlineSet",
                {"op": op, "name": self._kind, "seconds": self._seconds, "deadline_at": own},
            )
        else:
            own = float(recorded.events[0].data["deadline_at"])
            expired = self._journaled = recorded.last("DeadlineExpired") is not None
        inherited = _CURRENT.get()
        effective = own if inherited is None else min(own, inherited)
        self.deadline_at = effective
        self._token = _CURRENT.set(effective)
        self._cancelling = task.cancelling()
        if effective == own:
            if expired:
                self._expire()  # stopped here before the crash: stop here again
            else:
                self._group = asyncio.TaskGroup()
                await self._group.__aenter__()
                self._timer = self._group.create_task(self._wait(own))
        return self

    async def _wait(self, deadline_at: float) -> None:
        clock = self._ctx.clock
        await clock.sleep(deadline_at - clock.now())
        self._expire()

    def _expire(self) -> None:
        if self._task is None:
            return
        self._fired = True
        self._task.cancel(msg=f"deadline of {self._seconds:g}s exceeded")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._timer is not None:
            self._timer.cancel()
        if self._group is not None:
            # The timer is the group's only task, and it is cancelled: this just reaps it.
            await self._group.__aexit__(None, None, None)
        if self._token is not None:
            _CURRENT.reset(self._token)
        if not self._fired or self._task is None:
            return False
        # Ours only if nobody else asked for a cancellation too (the test
        # asyncio.timeout makes): then the CancelledError is the deadline's.
        if self._task.uncancel() > self._cancelling or exc_type is not asyncio.CancelledError:
            return False
        self.cancelled_caught = True
        if not self._journaled:
            await lowlevel.record(
                self._ctx, "DeadlineExpired", {"op": self._op, "name": self._kind}
            )
        if self._kind == "fail_after":
            raise DeadlineExceededError(timeout=self._seconds) from exc
        return True


def fail_after(ctx: WorkflowContext, seconds: float) -> DeadlineScope:
    """A scope whose body must finish within `seconds`, or `DeadlineExceededError`.

    The deadline is journaled, so a resumed run keeps it (see the module), and is the
    earlier of `seconds` from the first entry and any enclosing scope's.

    Example::

        async with phalanx.fail_after(ctx, 30):
            draft = await ctx.step("draft", write_draft, topic)

    Raises:
        DeadlineExceededError: on exit, when this scope's deadline stopped the body.
    """
    return DeadlineScope(ctx, seconds, kind="fail_after")


def move_on_after(ctx: WorkflowContext, seconds: float) -> DeadlineScope:
    """Like `fail_after`, but when the deadline passes the body just stops, silently.

    Example::

        async with phalanx.move_on_after(ctx, 5) as scope:
            draft = await ctx.step("draft", write_draft, topic)
        if scope.cancelled_caught:
            draft = None   # carry on without it
    """
    return DeadlineScope(ctx, seconds, kind="move_on_after")
