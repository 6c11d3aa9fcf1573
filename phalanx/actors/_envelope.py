"""Envelopes and message ids: what travels to an actor, and what a journal records.

Every message is wrapped in an `Envelope` with an id. Ids make delivery idempotent:
a sender that is not sure a message arrived (a crash, a lost acknowledgement, a
durable layer replaying its journal) sends it again *with the same id*, and the
receiver processes it once (see `_dedup`). Ids are drawn from the entropy seam (a
per-system random prefix) plus a counter: unique across processes and restarts,
reproducible under `SeededEntropy`, and cheap enough for the hot path (one f-string,
no `uuid4()` per message).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from .._entropy import Entropy

_PENDING = 0
_DONE = 1


class Envelope:
    """One message on its way to an actor.

    Attributes:
        message_id: Unique id; the receiver deduplicates by it.
        message: The payload, handed to `Actor.receive` as is.
        sender: Path of the sending actor, or None when sent from outside any actor.
    """

    __slots__ = (
        "_blocked",
        "_error",
        "_result",
        "_state",
        "_waiters",
        "message",
        "message_id",
        "reply",
        "sender",
    )

    def __init__(
        self,
        message_id: str,
        message: Any,
        sender: str | None,
        reply: asyncio.Future[Any] | None,
    ) -> None:
        self.message_id = message_id
        self.message = message
        self.sender = sender
        #: The asker's future (None for a tell).
        self.reply = reply
        #: A sender blocked on a full mailbox waits on this (so a timeout can wake it).
        self._blocked: asyncio.Future[None] | None = None
        #: Futures of duplicate asks that wait for this message's outcome.
        self._waiters: list[asyncio.Future[Any]] | None = None
        self._state = _PENDING
        self._result: Any = None
        self._error: BaseException | None = None

    @property
    def is_ask(self) -> bool:
        """Whether someone waits for a reply."""
        return self.reply is not None

    def __repr__(self) -> str:
        kind = "ask" if self.reply is not None else "tell"
        return f"<Envelope {kind} {self.message_id} from {self.sender}>"

    def wanted(self) -> bool:
        """Whether anyone still waits for this ask's answer (always True for a tell)."""
        reply = self.reply
        return reply is None or not reply.done() or bool(self._waiters)

    def finish(self, result: Any, error: BaseException | None) -> None:
        """Record the outcome and hand it to the asker and every duplicate asker."""
        self._state = _DONE
        self._result = result
        self._error = error
        reply = self.reply
        if reply is not None and not reply.done():
            _settle(reply, result, error)
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    _settle(waiter, result, error)
            self._waiters = None

    def abandon(self, error: BaseException) -> None:
        """Fail every asker: the message will not be processed (stop, restart)."""
        reply = self.reply
        if reply is not None and not reply.done():
            reply.set_exception(error)
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            self._waiters = None

    def attach(self, waiter: asyncio.Future[Any]) -> None:
        """Give a duplicate ask this message's outcome, now or when it is known."""
        if self._state == _DONE:
            _settle(waiter, self._result, self._error)
        elif self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class MessageIds:
    """Makes message ids: a random prefix from the entropy seam, then a counter."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self, entropy: Entropy) -> None:
        self._prefix = entropy.token(6) + "-"
        self._counter = itertools.count(1)

    def new(self) -> str:
        """The next id, e.g. `9f2c4e01ab77-42`."""
        return f"{self._prefix}{next(self._counter)}"
