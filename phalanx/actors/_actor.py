"""The `Actor` base class: state owned by one task, messages taken one at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._cell import Cell, Restart
    from ._deadline import Deadline
    from ._heartbeat import HeartbeatPolicy
    from ._mailbox import MailboxPolicy
    from ._ref import ActorRef
    from ._supervisor import SupervisionPolicy


class Actor:
    """Base class of every actor: subclass it and define `async def receive`.

    An actor owns its state and processes one message at a time, in the order they
    arrived, so `receive` needs no locks. What `receive` returns is the reply to an
    `ask` (ignored for a `tell`). If it raises, the asker gets the exception, the
    actor *fails*, and its supervisor decides: restart it from its factory (fresh
    state, same mailbox and `ActorRef`), or stop it, or give up and escalate.

    Example::

        class Counter(Actor):
            def __init__(self) -> None:
                self.total = 0

            async def receive(self, message: int) -> int:
                self.total += message
                return self.total

        async with open_actor_system() as system:
            counter = await system.spawn(Counter, name="counter")
            await counter.tell(2)
            assert await counter.ask(3, timeout=1.0) == 5

    Lifecycle: the factory builds the instance; `on_start` runs (the spawner waits
    for it); then messages, one at a time; `on_stop` runs at the end of every
    incarnation, whether it stops, fails or is restarted. The runtime attaches the
    actor to itself right after the factory returns, so `self.ref`, `self.spawn` and
    friends work from `on_start` on, not in `__init__`.

    Cancellation: stopping or restarting an actor cancels the message it is
    processing (`receive` sees `asyncio.CancelledError`; clean up and let it
    propagate). An actor that swallows it is still stopped after that message.
    """

    __slots__ = ("_cell",)

    _cell: Cell

    async def receive(self, message: Any) -> Any:
        """Process one message; the return value answers an `ask`.

        Raises:
            Exception: Anything raised fails this incarnation (see the class docs).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must define `async def receive(self, message)`"
        )

    async def on_start(self) -> None:
        """Set up before the first message (spawn children, open resources).

        If it raises in the first incarnation, `spawn` raises the error and the
        actor is not restarted (as a failed `init` in OTP); in a restart it counts as
        a failure like any other.
        """

    async def on_stop(self) -> None:
        """Clean up at the end of an incarnation; children are already stopped."""

    @property
    def ref(self) -> ActorRef:
        """This actor's own reference (stable across restarts)."""
        return self._cell.ref

    @property
    def name(self) -> str:
        """The name given at spawn, unique among siblings."""
        return self._cell.name

    @property
    def path(self) -> str:
        """The path from the root, e.g. `/research/web_search`."""
        return self._cell.path

    @property
    def incarnation(self) -> int:
        """1 for the first incarnation, one more per restart."""
        return self._cell.incarnation

    @property
    def deadline(self) -> Deadline | None:
        """The effective deadline: the earlier of its own and its parent's."""
        return self._cell.deadline

    def heartbeat(self, progress: Any = None) -> None:
        """Report progress: a sign of life for the watchdog, and what was reached.

        Cheap enough to call often (a clock read). `progress` is kept on the ref
        (`ref.progress`) and put in the `stalled` event if the actor goes silent.
        """
        self._cell.beat(progress)

    async def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        mailbox: MailboxPolicy | None = None,
        restart: Restart = "transient",
        deadline: float | None = None,
        heartbeat: HeartbeatPolicy | None = None,
        supervision: SupervisionPolicy | None = None,
    ) -> ActorRef:
        """Spawn a child that this actor supervises; see `ActorSystem.spawn`.

        The child's task is owned by this actor: it is stopped when this actor
        stops, fails or restarts, and its deadline is never later than this one's.
        """
        return await self._cell.spawn_child(
            factory,
            name=name,
            mailbox=mailbox,
            restart=restart,
            deadline=deadline,
            heartbeat=heartbeat,
            supervision=supervision,
        )

    def stop(self) -> None:
        """Stop normally once the current message is done (no restart unless permanent)."""
        self._cell.stop_after = True
