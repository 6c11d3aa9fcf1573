"""`ActorRef`: the handle everyone else holds to talk to an actor."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .._errors import ActorDeadlockError, AskTimeoutError
from ._envelope import Envelope
from ._local import CURRENT_CELL

if TYPE_CHECKING:
    from ._cell import Cell
    from ._deadline import Deadline

#: Seconds an `ask` waits by default: a forgotten timeout must not hang an agent.
DEFAULT_ASK_TIMEOUT = 30.0


def _expire_ask(envelope: Envelope, path: str, timeout: float) -> None:
    reply = envelope.reply
    if reply is not None and not reply.done():
        reply.set_exception(
            AskTimeoutError(path=path, timeout=timeout, message_id=envelope.message_id)
        )
    blocked = envelope._blocked
    if blocked is not None and not blocked.done():
        blocked.set_result(None)  # a sender waiting for room: let it see the timeout


class ActorRef:
    """A handle to an actor: send it messages, ask it questions, stop it.

    A ref stays valid across restarts (the mailbox, message-id memory and ref belong
    to the actor's place in the tree, not to one incarnation) and becomes dead when
    the actor stops for good: then `tell` and `ask` raise `ActorStoppedError`.

    Example::

        ref = await system.spawn(Summariser, name="summariser")
        await ref.tell({"doc": text})                       # fire and forget
        summary = await ref.ask({"doc": text}, timeout=20)  # request / reply
        await ref.stop()                                    # idempotent

    Delivery: at least once if the sender retries with the same `message_id`,
    processed once, because the actor drops ids it has seen (within its
    `MailboxPolicy.dedup_window`); a duplicate `ask` gets the original's answer.

    Like everything asyncio, a ref is used from its event loop's thread only.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        """The actor's name, unique among its siblings."""
        return self._cell.name

    @property
    def path(self) -> str:
        """The actor's path from the root, e.g. `/research/web_search`."""
        return self._cell.path

    @property
    def incarnation(self) -> int:
        """1 for the first incarnation, one more per restart."""
        return self._cell.incarnation

    @property
    def deadline(self) -> Deadline | None:
        """The actor's effective deadline (the earlier of its own and its parent's)."""
        return self._cell.deadline

    @property
    def alive(self) -> bool:
        """False once the actor has stopped for good."""
        return not self._cell.final

    @property
    def stop_reason(self) -> str | None:
        """Why it stopped (`stopped`, `deadline`, `failed`, `escalated`, `shutdown`)."""
        return self._cell.final_reason if self._cell.final else None

    @property
    def progress(self) -> Any:
        """The last `progress` the actor reported with `heartbeat`."""
        return self._cell.progress

    def __repr__(self) -> str:
        state = "alive" if not self._cell.final else f"stopped: {self._cell.final_reason}"
        return f"<ActorRef {self._cell.path} ({state})>"

    async def tell(self, message: Any, *, message_id: str | None = None) -> None:
        """Put `message` in the actor's mailbox and return without waiting for it.

        Args:
            message: Anything; handed to `receive` as is (not copied).
            message_id: Give the same id when sending the same message again (a
                retry, a redelivery): the actor processes it once. A fresh id is
                made when omitted.

        Raises:
            MailboxFullError: The mailbox is full and its policy is `fail_fast`.
            ActorStoppedError: The actor has stopped for good.

        With `when_full="block"` a full mailbox makes this wait for room; use a
        deadline scope (`fail_after`) to bound that wait.
        """
        cell = self._cell
        sender = CURRENT_CELL.get()
        system = cell.system
        envelope = Envelope(
            system.ids.new() if message_id is None else message_id,
            message,
            None if sender is None else sender.path,
            None,
        )
        if system.hooks is not None:
            await system.hooks.sent(self, envelope)
        while not cell.post(envelope, message_id is None):
            await cell.mailbox.wait_for_space(envelope)

    async def ask(
        self,
        message: Any,
        *,
        timeout: float | None = DEFAULT_ASK_TIMEOUT,
        message_id: str | None = None,
    ) -> Any:
        """Send `message` and wait for the value `receive` returns for it.

        Args:
            message: Anything; handed to `receive` as is.
            timeout: Seconds to wait for the answer, including any wait for room in
                a full mailbox; None waits as long as the enclosing deadline allows.
            message_id: As for `tell`; a duplicate ask gets the original's answer.

        Returns:
            What the actor's `receive` returned.

        Raises:
            AskTimeoutError: No answer within `timeout` (the actor may still process
                the message, unless it had not started it yet: then it skips it).
            ActorStoppedError: The actor stopped, or restarted, before answering.
            ActorDeadlockError: An actor asked itself (it could never answer).
            MailboxFullError: The mailbox is full and its policy is `fail_fast`.
            Exception: Whatever `receive` raised for this message.
        """
        cell = self._cell
        sender = CURRENT_CELL.get()
        if sender is cell:
            raise ActorDeadlockError(path=cell.path, operation="ask")
        system = cell.system
        reply: asyncio.Future[Any] = system.loop.create_future()
        envelope = Envelope(
            system.ids.new() if message_id is None else message_id,
            message,
            None if sender is None else sender.path,
            reply,
        )
        handle = (
            None
            if timeout is None
            else system.timers.call_later(timeout, _expire_ask, envelope, cell.path, timeout)
        )
        try:
            if system.hooks is not None:
                await system.hooks.sent(self, envelope)
            while not cell.post(envelope, message_id is None):
                if reply.done():
                    break
                await cell.mailbox.wait_for_space(envelope)
            return await reply
        finally:
            if handle is not None:
                handle.cancel()

    async def stop(self) -> None:
        """Stop the actor and its descendants for good, and wait until they are gone.

        Idempotent: stopping a stopped actor returns at once. The message being
        processed is cancelled, queued asks fail with `ActorStoppedError`, children
        are stopped (all at once, in reverse start order), then `on_stop` runs. If
        the caller is cancelled while it waits, the stop still completes.
        """
        cell = self._cell
        cell.interrupt_with("stopped")
        if not cell.final:
            await asyncio.shield(cell.final_waiter())
