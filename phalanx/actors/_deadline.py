"""Deadlines as scopes: a deadline is inherited, only ever shortened, and enforced.

The deadline in force lives in a contextvar, so it follows the code that runs under
it into every `await`, and into every actor spawned from there (an actor task starts
with a copy of its spawner's context). A new scope, or a spawned child, takes the
earlier of its own deadline and the one in force: a child never outlives its parent's
deadline, and nobody passes timeouts down by hand.

Two scopes, named as in trio: `fail_after(s)` raises `DeadlineExceededError` when the
deadline passes; `move_on_after(s)` just stops the work and carries on
(`scope.cancelled_caught` says whether it did). Both enforce the deadline by cancelling
the task they run in, on the actor system's clock (`phalanx.testing.VirtualClock` in
simulations), and translate only their *own* cancellation: a cancellation from outside,
or from an enclosing scope whose deadline is earlier, passes through untouched.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType

from .._clock import Clock
from .._errors import DeadlineExceededError
from ._timers import TimerHandle, current_timers


@dataclass(frozen=True, slots=True, order=True)
class Deadline:
    """A point in time (on one clock's monotonic scale) by which work must be done.

    Deadlines order by time, so `min(a, b)` is the earlier one (when both are on the
    same clock; `on(clock)` carries one over to another clock by its remaining time).

    Example::

        deadline = Deadline.after(30.0, clock)
        deadline.remaining()   # 30.0, then less
    """

    at: float
    clock: Clock = field(compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float, clock: Clock) -> Deadline:
        """The deadline `seconds` from now on `clock`."""
        return cls(clock.monotonic() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left; negative once the deadline has passed."""
        return self.at - self.clock.monotonic()

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.remaining() <= 0

    def on(self, clock: Clock) -> Deadline:
        """The same deadline on `clock`: as many seconds from now as are left here."""
        if clock is self.clock:
            return self
        return Deadline(clock.monotonic() + self.remaining(), clock)


CURRENT_DEADLINE: ContextVar[Deadline | None] = ContextVar("phalanx_deadline", default=None)


def current_deadline() -> Deadline | None:
    """The deadline in force for the running code (an actor's, or an enclosing scope's)."""
    return CURRENT_DEADLINE.get()


def earliest(own: Deadline | None, inherited: Deadline | None) -> Deadline | None:
    """The earlier of two deadlines, read on `own`'s clock; None means "no deadline"."""
    if inherited is None:
        return own
    if own is None:
        return inherited
    inherited = inherited.on(own.clock)
    return own if own.at < inherited.at else inherited


class DeadlineScope:
    """The scope made by `fail_after` / `move_on_after`; use it with `async with`.

    Attributes:
        deadline: The deadline in force inside the scope (its own or an earlier,
            inherited one), set on entry.
        cancelled_caught: Whether this scope's deadline passed and cancelled the body.

    Cancellation semantics: when the deadline passes, the task running the body is
    cancelled (so the body's cleanup runs), and on exit the scope turns its own
    cancellation into `DeadlineExceededError` (`fail_after`) or swallows it
    (`move_on_after`). If the inherited deadline is the earlier one, this scope sets
    no timer: the enclosing scope (or actor) that owns that deadline enforces it.
    A scope is single-use.
    """

    __slots__ = (
        "_cancelling",
        "_exited",
        "_fired",
        "_handle",
        "_raise",
        "_seconds",
        "_task",
        "_token",
        "cancelled_caught",
        "deadline",
    )

    def __init__(self, seconds: float, *, raise_on_expiry: bool) -> None:
        self._seconds = seconds
        self._raise = raise_on_expiry
        self._task: asyncio.Task[object] | None = None
        self._token: Token[Deadline | None] | None = None
        self._handle: TimerHandle | None = None
        self._fired = False
        self._exited = False
        self._cancelling = 0
        self.deadline: Deadline | None = None
        self.cancelled_caught = False

    async def __aenter__(self) -> DeadlineScope:
        if self._token is not None:
            raise RuntimeError("a deadline scope can be entered only once")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline scope must be used inside an asyncio task")
        self._task = task
        timers = current_timers()
        own = Deadline.after(self._seconds, timers.clock)
        effective = earliest(own, CURRENT_DEADLINE.get())
        assert effective is not None
        self.deadline = effective
        self._token = CURRENT_DEADLINE.set(effective)
        self._cancelling = task.cancelling()
        if effective is own:
            self._handle = timers.call_at(own.at, self._expire)
        return self

    def _expire(self) -> None:
        if self._exited or self._task is None:
            return
        self._fired = True
        self._task.cancel(msg=f"deadline of {self._seconds:g}s exceeded")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._exited = True
        if self._handle is not None:
            self._handle.cancel()
        if self._token is not None:
            CURRENT_DEADLINE.reset(self._token)
        if not self._fired or self._task is None:
            return False
        # Ours only if nobody else asked for a cancellation too (same test as
        # asyncio.timeout): then the CancelledError is the deadline's, to translate.
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            self.cancelled_caught = True
            if self._raise:
                raise DeadlineExceededError(timeout=self._seconds) from exc
            return True
        return False


def fail_after(seconds: float) -> DeadlineScope:
    """A scope whose body must finish within `seconds`, or `DeadlineExceededError`.

    The deadline is the earlier of `seconds` from now and the one already in force,
    and everything inside (asks, spawned actors, nested scopes) inherits it.

    Example::

        async with fail_after(30):
            answer = await researcher.ask(question, timeout=None)

    Raises:
        DeadlineExceededError: On exit, when this scope's deadline cancelled the body.
    """
    return DeadlineScope(seconds, raise_on_expiry=True)


def move_on_after(seconds: float) -> DeadlineScope:
    """Like `fail_after`, but when the deadline passes the body just stops, silently.

    Example::

        async with move_on_after(5) as scope:
            draft = await writer.ask(topic, timeout=None)
        if scope.cancelled_caught:
            draft = None   # carry on without it
    """
    return DeadlineScope(seconds, raise_on_expiry=False)
