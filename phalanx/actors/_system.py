"""The actor system: the root of the tree, and the scope every actor lives inside.

`open_actor_system()` is an `async with` scope (as trio's `open_nursery`): actors are
spawned inside it and none outlives it. Leaving the block stops every actor (the
message each is processing is cancelled, children before parents) and waits until
every task the system started has finished, so nothing is orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .._clock import Clock, SystemClock
from .._entropy import Entropy, SystemEntropy
from .._errors import ActorDeadlockError, ActorSpawnError, SupervisorEscalationError
from ._actor import Actor
from ._cell import Cell, Restart
from ._envelope import MessageIds
from ._events import ActorEvent, EventHook, EventKind
from ._hooks import MessageHooks
from ._local import CURRENT_CELL
from ._nursery import Nursery
from ._supervisor import SupervisionPolicy, Supervisor
from ._timers import CURRENT_TIMERS, ClockTimers, Timers, timers_for

if TYPE_CHECKING:
    from ._heartbeat import HeartbeatPolicy
    from ._mailbox import MailboxPolicy
    from ._ref import ActorRef

logger = logging.getLogger("phalanx")

_State = Literal["new", "open", "stopping", "closed"]


class ActorSystem:
    """A tree of supervised actors that lives exactly as long as its `async with` block.

    Make one with `open_actor_system()`; see there for the lifecycle.

    Attributes:
        clock: The clock seam every deadline, timeout and heartbeat is read on.
        supervision: The root's policy, and the default for every parent.
        hooks: The message hooks (for a durable layer), or None.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        entropy: Entropy,
        supervision: SupervisionPolicy,
        on_event: EventHook | None,
        hooks: MessageHooks | None,
        timer_resolution: float,
    ) -> None:
        self.clock = clock
        self.supervision = supervision
        self.hooks = hooks
        self.ids = MessageIds(entropy)
        self._on_event = on_event
        self._timer_resolution = timer_resolution
        self._state: _State = "new"
        self._live = 0
        self._names = itertools.count(1)
        self._failure: SupervisorEscalationError | None = None
        self._host: asyncio.Task[Any] | None = None
        self._host_cancelled = False
        self._in_body = False
        self._timers: Timers | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nursery: Nursery | None = None
        self._root: Supervisor | None = None
        self._token: Token[Timers | None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        if self._state != "new":
            raise RuntimeError("an ActorSystem can be entered only once")
        self._host = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        timers = timers_for(self.clock, resolution=self._timer_resolution)
        self._timers = timers
        self._nursery = Nursery("system")
        if isinstance(timers, ClockTimers):
            self._nursery.start(timers.run(), name="phalanx actor timers")
        self._token = CURRENT_TIMERS.set(timers)
        self._state = "open"
        self._root = Supervisor(self, None, self.supervision)
        self._in_body = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._in_body = False
        swallowed = await self._shutdown()
        if self._token is not None:
            CURRENT_TIMERS.reset(self._token)
            self._token = None
        failure = self._failure
        if failure is not None:
            if self._host_cancelled and self._host is not None:
                self._host.uncancel()
                if exc_type is not asyncio.CancelledError and not swallowed:
                    # Our cancellation may still be pending on the host (the body ended
                    # before it landed); take it here so it cannot hit the caller later.
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.sleep(0)
            raise failure from (exc if exc_type is not asyncio.CancelledError else None)
        if swallowed and exc_type is None:
            raise asyncio.CancelledError

    async def stop(self) -> None:
        """Stop every actor and wait until all are gone; idempotent.

        Called by leaving the `async with` block; call it earlier to shut down
        before the block ends. Not from inside one of this system's actors (it
        would wait for itself): return from the block instead.

        Raises:
            ActorDeadlockError: Called from inside one of this system's actors.
        """
        cell = CURRENT_CELL.get()
        if cell is not None and cell.system is self:
            raise ActorDeadlockError(path=cell.path, operation="ActorSystem.stop")
        if await self._shutdown():
            raise asyncio.CancelledError

    async def _shutdown(self) -> bool:
        if self._state != "open":
            return False
        self._state = "stopping"
        assert self._root is not None and self._nursery is not None
        swallowed = await self._root.aclose("shutdown")
        swallowed |= await self._nursery.aclose()
        self._state = "closed"
        return swallowed

    def fail(self, error: SupervisorEscalationError) -> None:
        """The root supervisor gave up: cancel the body; `async with` will raise `error`."""
        if self._failure is not None:
            return
        self._failure = error
        host = self._host
        if self._in_body and host is not None and not host.done():
            self._host_cancelled = True
            host.cancel(msg=str(error))

    # -- spawning ----------------------------------------------------------------------

    async def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        parent: ActorRef | None = None,
        mailbox: MailboxPolicy | None = None,
        restart: Restart = "transient",
        deadline: float | None = None,
        heartbeat: HeartbeatPolicy | None = None,
        supervision: SupervisionPolicy | None = None,
    ) -> ActorRef:
        """Start an actor and return its ref once its `on_start` has finished.

        Args:
            factory: Builds the actor: an `Actor` subclass or any zero-argument
                callable (`functools.partial(Worker, model=m)`); called again on
                every restart, so it must make a fresh instance each time.
            name: Unique among siblings, no `/`; default `<factory name>-<n>`.
            parent: Spawn under this actor (it supervises the child); default the
                system's root.
            mailbox: Capacity, full policy and dedup window; default
                `MailboxPolicy()` (1000 messages, block).
            restart: `transient` (default: restarted after a failure), `permanent`
                (also after stopping itself) or `temporary` (never).
            deadline: Seconds from now after which the actor is stopped; the
                effective deadline is the earliest of this, the parent's and the
                one in force where `spawn` is called.
            heartbeat: Stall detection for a long-running actor; default none.
            supervision: How this actor supervises its own children; default the
                system's policy.

        Returns:
            The new actor's ref.

        Raises:
            ActorNameTakenError: A live sibling has that name.
            ActorSpawnError: The parent or the system is stopping, or the factory
                does not make an `Actor`.
            ActorConfigError: A setting out of range.
            Exception: What the first `on_start` raised (the actor is not restarted).
        """
        if parent is None:
            if self._root is None:
                raise ActorSpawnError(
                    path=f"/{name or '?'}",
                    reason="the actor system is not open; use `async with open_actor_system()`",
                )
            supervisor = self._root
            return await supervisor.spawn(
                factory,
                name=name,
                mailbox=mailbox,
                restart=restart,
                deadline=deadline,
                heartbeat=heartbeat,
                supervision=supervision,
            )
        cell = parent._cell
        if cell.system is not self:
            raise ActorSpawnError(
                path=f"{cell.path}/{name or '?'}",
                reason="the parent belongs to another actor system",
            )
        return await cell.spawn_child(
            factory,
            name=name,
            mailbox=mailbox,
            restart=restart,
            deadline=deadline,
            heartbeat=heartbeat,
            supervision=supervision,
        )

    def live_actor_count(self) -> int:
        """How many actors are alive (spawned and not yet stopped for good)."""
        return self._live

    # -- runtime internals (used by cells and supervisors) -------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the system runs on."""
        assert self._loop is not None, "the actor system is not open"
        return self._loop

    @property
    def timers(self) -> Timers:
        """The timers on the system's clock."""
        assert self._timers is not None, "the actor system is not open"
        return self._timers

    def check_can_spawn(self, path: str) -> None:
        """Raise `ActorSpawnError` unless the system is open and has not failed."""
        if self._state != "open":
            raise ActorSpawnError(path=path, reason=f"the actor system is {self._state}")
        if self._failure is not None:
            raise ActorSpawnError(path=path, reason=f"the actor system failed: {self._failure}")

    def open_supervisor(self, owner: Cell) -> Supervisor:
        """A supervisor for `owner`'s children (made on its first child)."""
        return Supervisor(self, owner, owner.supervision)

    def auto_name(self, factory: Callable[[], Actor]) -> str:
        """A default name: the factory's name in lower case and a number."""
        base = getattr(factory, "__name__", None) or type(factory).__name__
        return f"{base.lower()}-{next(self._names)}"

    def actor_spawned(self, cell: Cell) -> None:
        """Count a new actor."""
        self._live += 1

    def actor_finalized(self, cell: Cell) -> None:
        """Count an actor that stopped for good, and report it."""
        self._live -= 1
        error = cell.error if cell.final_reason == "failed" else None
        self.emit("stopped", cell, reason=cell.final_reason, error=error)

    def emit(
        self,
        kind: EventKind,
        cell: Cell,
        *,
        reason: str = "",
        error: BaseException | None = None,
        message_id: str | None = None,
        progress: Any = None,
    ) -> None:
        """Report an event about `cell` to the `on_event` hook, if there is one."""
        if self._on_event is None:
            return
        self._deliver(
            ActorEvent(
                kind=kind,
                path=cell.path,
                time=self.clock.now(),
                incarnation=cell.incarnation,
                reason=reason,
                error_type=None if error is None else type(error).__name__,
                error_message=None if error is None else str(error),
                message_id=message_id,
                progress=progress,
            )
        )

    def emit_escalated(self, path: str, error: SupervisorEscalationError) -> None:
        """Report that the supervisor at `path` gave up."""
        if self._on_event is None:
            return
        self._deliver(
            ActorEvent(
                kind="escalated",
                path=path,
                time=self.clock.now(),
                reason=f"restart intensity exceeded after {error.child} failed",
                error_type=error.error_type,
                error_message=error.error_message,
            )
        )

    def _deliver(self, event: ActorEvent) -> None:
        assert self._on_event is not None
        try:
            self._on_event(event)
        except Exception:
            # An observer must not break the runtime it observes.
            logger.exception("on_event hook failed on %r", event)


def open_actor_system(
    *,
    clock: Clock | None = None,
    entropy: Entropy | None = None,
    supervision: SupervisionPolicy | None = None,
    on_event: EventHook | None = None,
    hooks: MessageHooks | None = None,
    timer_resolution: float = 0.01,
) -> ActorSystem:
    """Open an actor system: use it with `async with`.

    Example::

        async with open_actor_system(on_event=print) as system:
            ref = await system.spawn(Researcher, name="researcher", deadline=60)
            answer = await ref.ask("what is phalanx?", timeout=30)

    Lifecycle and cancellation: actors live inside the block. Leaving it, normally
    or by an exception, stops every actor (each one's current message is cancelled,
    its children stopped first, then its `on_stop` runs) and waits for every task the
    system started, even if the leaving task is cancelled meanwhile; then the
    block's own exception, or cancellation, propagates. If the root supervisor gives
    up (too many restarts), the body is cancelled and the block raises
    `SupervisorEscalationError`.

    Args:
        clock: The clock seam (`phalanx.testing.VirtualClock` in tests and
            simulations); default the system clock.
        entropy: The entropy seam, for message ids; default the OS's.
        supervision: The root's policy for top-level actors, and the default for
            every actor's children; default `SupervisionPolicy()`.
        on_event: Called with every `ActorEvent`, synchronously.
        hooks: Message hooks, for a durable layer that journals messages.
        timer_resolution: With a clock other than the system clock, the longest
            single sleep of the timer task (see `_timers`).
    """
    if not timer_resolution > 0:
        from .._errors import ActorConfigError

        raise ActorConfigError(
            setting="timer_resolution",
            value=timer_resolution,
            reason="the timer resolution must be a positive number of seconds",
        )
    return ActorSystem(
        clock=clock or SystemClock(),
        entropy=entropy or SystemEntropy(),
        supervision=supervision or SupervisionPolicy(),
        on_event=on_event,
        hooks=hooks,
        timer_resolution=timer_resolution,
    )
