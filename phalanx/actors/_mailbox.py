"""The bounded mailbox: where messages wait for an actor that takes one at a time.

Bounded because an unbounded mailbox turns a slow agent into a memory leak and hides
the overload from its senders. When it is full the policy decides: `block` makes the
sender wait for room (backpressure that propagates up the call chain), `fail_fast`
refuses at once with `MailboxFullError` (for senders that would rather shed or retry).

The queue has exactly one consumer (the actor), so it is a deque plus one waiter
future, not an `asyncio.Queue`: that saves two deques per idle actor, and the actor
drains every queued message without a suspension per message.

The mailbox is also where duplicates are caught (`_dedup`), on the way in: a copy
never takes a slot, and a copy of an ask is answered from the original.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Literal

from .._errors import ActorConfigError
from ._dedup import MISSING, DedupWindow
from ._envelope import Envelope

WhenFull = Literal["block", "fail_fast"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxPolicy:
    """How many messages an actor's mailbox holds, and what happens when it is full.

    Args:
        capacity: Messages that can wait (not counting the one being processed).
        when_full: `block` the sender until there is room, or `fail_fast` with
            `MailboxFullError` (retryable; retry with the same message id).
        dedup_window: How many recent message ids the actor remembers to drop
            duplicates (at least this many, at most twice); 0 turns deduplication off.

    Raises:
        ActorConfigError: A capacity below 1 or a negative window.
    """

    capacity: int = 1000
    when_full: WhenFull = "block"
    dedup_window: int = 1024

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ActorConfigError(
                setting="MailboxPolicy.capacity",
                value=self.capacity,
                reason="a mailbox must hold at least one message",
            )
        if self.when_full not in ("block", "fail_fast"):
            raise ActorConfigError(
                setting="MailboxPolicy.when_full",
                value=self.when_full,
                reason="use 'block' or 'fail_fast'",
            )
        if self.dedup_window < 0:
            raise ActorConfigError(
                setting="MailboxPolicy.dedup_window",
                value=self.dedup_window,
                reason="use 0 to turn deduplication off, or a positive size",
            )


class Mailbox:
    """A bounded FIFO of envelopes with one consumer and any number of senders."""

    __slots__ = (
        "_dedup_size",
        "_loop",
        "_putters",
        "_waiter",
        "capacity",
        "closed",
        "dedup",
        "fail_fast",
        "queue",
    )

    def __init__(self, policy: MailboxPolicy) -> None:
        self.queue: deque[Envelope] = deque()
        self.capacity = policy.capacity
        self.fail_fast = policy.when_full == "fail_fast"
        self.closed = False
        self._dedup_size = policy.dedup_window
        self.dedup: DedupWindow | None = None  # made on the first message: idle is cheap
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] | None = None

    def offer(self, envelope: Envelope, fresh: bool) -> bool:
        """Deliver `envelope` if there is room, dropping or answering a duplicate.

        Args:
            envelope: The message.
            fresh: Whether its id was just made (then it cannot be a duplicate).

        Returns:
            True if delivered (or a duplicate, dropped or answered); False if full.
        """
        dedup = self.dedup
        if dedup is None and self._dedup_size:
            dedup = self.dedup = DedupWindow(self._dedup_size)
        if dedup is not None and not fresh:
            seen = dedup.lookup(envelope.message_id)
            if seen is not MISSING:
                # A copy of a message already taken in: drop a tell; give an ask the
                # original's answer (now, or when it is known).
                reply = envelope.reply
                if reply is not None and not reply.done():
                    if isinstance(seen, Envelope):
                        seen.attach(reply)
                    else:
                        reply.set_result(None)
                return True
        queue = self.queue
        if len(queue) >= self.capacity:
            return False
        if dedup is not None:
            dedup.remember(envelope.message_id, envelope if envelope.reply is not None else None)
        queue.append(envelope)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return True

    def forget(self, message_id: str) -> None:
        """The message was never processed: accept a copy of it again."""
        if self.dedup is not None:
            self.dedup.forget(message_id)

    def take(self) -> Envelope:
        """Dequeue the oldest envelope (the caller checked there is one)."""
        envelope = self.queue.popleft()
        if self._putters:
            self._wake_putter()
        return envelope

    def mail(self) -> asyncio.Future[None]:
        """A future that completes when the next envelope is appended."""
        waiter = self._waiter = self._loop.create_future()
        return waiter

    async def wait_for_space(self, envelope: Envelope) -> None:
        """Wait until there may be room (or the mailbox closes, or the ask expires).

        The caller re-checks and may wait again: a woken sender can lose the slot to
        one that did not have to wait.
        """
        putters = self._putters
        if putters is None:
            putters = self._putters = deque()
        waiter: asyncio.Future[None] = self._loop.create_future()
        putters.append(waiter)
        envelope._blocked = waiter
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # We were handed the free slot but are leaving: pass it on, or the
                # next sender would wait although there is room.
                self._wake_putter()
            else:
                with contextlib.suppress(ValueError):
                    putters.remove(waiter)
            raise
        finally:
            envelope._blocked = None

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            waiter = putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> list[Envelope]:
        """Refuse new messages, wake blocked senders, and return what was queued."""
        self.closed = True
        left = list(self.queue)
        self.queue.clear()
        putters = self._putters
        while putters:
            waiter = putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        return left
