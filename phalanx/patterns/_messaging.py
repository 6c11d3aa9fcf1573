"""Durable messages between peer runs: delivered at least once, handled exactly once.

A peer is a durable run whose workflow loops on `receive(ctx)`. Its messages arrive in
its run inbox (`run:{id}:inbox`) and travel as every durable message does (see
`phalanx.actors.delivery`, the one implementation of exactly-once messaging):
journaled by the sender, posted, journaled by the receiver before it is handed over,
copies dropped by message id.

Termination detection is credit recovery (Mattern's variant of Huang's weight
throwing): the conversation's coordinator hands out a total weight of 1 with the
kickoff messages; a peer holds the weight of the message it is handling, gives half
of what it holds to each message it sends, and returns the rest to the coordinator
when it asks for its next message. Every message in flight carries a positive weight
and only a busy peer holds any, so when the coordinator has all of it back, no peer
is busy and no message is in flight: the conversation is over. Weights are exact
fractions (journaled as "p/q" strings): floats would never sum back to 1. Rejected: a
shared counter of messages in flight, which every send and receive would update
under compare-and-set (contention on one stream), and counting waves (the
four-counter method), which needs repeated snapshots of every peer to be sure.

Rounds bound a conversation that would never go quiet: the kickoff is round 1, a
message sent while handling a round-r message is round r+1, and a send past
`max_rounds` is not sent; it is reported to the coordinator, which stops every peer
and raises `RoundLimitError`.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from .._errors import UserError
from ..actors import delivery
from ..actors.delivery import Receipts
from ..agents import PayloadLimit, check_payload
from ..durable import WorkflowContext, lowlevel
from ..journal import Event

#: What an envelope carries: a peer's message, a credit return or round-limit report
#: (peer to coordinator), or the coordinator's order to stop.
EnvelopeKind = Literal["message", "credit", "limit", "stop"]


def peer_run_id(conversation: str, peer: str) -> str:
    """The run id of peer `peer` in conversation `conversation`."""
    return f"{conversation}.{peer}"


def envelope(
    *,
    kind: EnvelopeKind,
    message_id: str,
    conversation: str,
    coordinator: str,
    peers: list[str],
    sender: str | None,
    to: str | None,
    body: Any,
    round: int,
    max_rounds: int,
    weight: Fraction,
) -> dict[str, Any]:
    """The JSON form of a message, as journaled and as posted to an inbox.

    Every message carries the conversation's facts (coordinator, members, bound), so a
    peer needs no inputs beyond its own: it learns them from what it handles.
    """
    return {
        "kind": kind,
        "message_id": message_id,
        "conversation": conversation,
        "coordinator": coordinator,
        "peers": peers,
        "sender": sender,
        "to": to,
        "body": body,
        "round": round,
        "max_rounds": max_rounds,
        "weight": str(weight),
    }


@dataclass(frozen=True)
class PeerMessage:
    """A message a peer received.

    `sender` is the sending peer's name, or None for the conversation's kickoff (sent
    by the coordinator). `round` counts hops from the kickoff (round 1). `id` is
    unique in the store: the receiver drops any copy of a message it already took.
    """

    id: str
    sender: str | None
    body: Any
    round: int
    conversation: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> PeerMessage:
        """The message an envelope carries."""
        return cls(
            id=str(data["message_id"]),
            sender=data.get("sender"),
            body=data.get("body"),
            round=int(data["round"]),
            conversation=str(data["conversation"]),
        )


@dataclass
class _Mailbox:
    """A peer's messaging state, rebuilt by replay exactly as it was first built.

    Everything here changes only as operations are claimed (live or replayed) in the
    workflow's own order, never from what the inbox happens to hold, so a resumed
    run arrives at the same weight, the same current message and the same seen ids.
    """

    receipts: Receipts = field(default_factory=Receipts)
    #: The envelope of the message being handled (None between messages).
    handling: dict[str, Any] | None = None
    weight: Fraction = Fraction(0)
    stopped: bool = False


_mailboxes: weakref.WeakKeyDictionary[WorkflowContext, _Mailbox] = weakref.WeakKeyDictionary()


def _mailbox(ctx: WorkflowContext) -> _Mailbox:
    # Kept beside the context rather than in it: messaging is a pattern built on the
    # lowlevel API, and a resumed run has a fresh context, hence a fresh mailbox that
    # replay fills again.
    box = _mailboxes.get(ctx)
    if box is None:
        box = _mailboxes[ctx] = _Mailbox()
    return box


@dataclass(frozen=True)
class _RunInbox:
    """The peer's run inbox as a message source, woken by the runner's inbox watcher."""

    ctx: WorkflowContext

    async def refresh(self) -> Sequence[Event]:
        return lowlevel.inbox(self.ctx)

    async def wait(self) -> None:
        await lowlevel.wait_inbox(self.ctx)


def _is_stop(data: dict[str, Any]) -> bool:
    # The conversation is over (or being stopped): whatever else waits would only be
    # abandoned later, so a stop is taken first.
    return data.get("kind") == "stop"


def _is_for_peers(data: dict[str, Any]) -> bool:
    # An actor's answer to this peer's `ask` waits in the same inbox, for the ask.
    return data.get("kind") != "reply"


async def transmit(
    ctx: WorkflowContext, name: str, to_run: str, message: dict[str, Any]
) -> dict[str, Any]:
    """Send `message` (an envelope) to run `to_run`'s inbox; return it as sent."""
    sent, _ = await delivery.transmit(ctx, name, to_run, message)  # an inbox refuses nothing
    return sent


async def send(
    ctx: WorkflowContext, to: str, body: Any, *, limit: PayloadLimit | None = None
) -> str | None:
    """Send `body` (JSON) to peer `to` of the conversation whose message is being handled.

    Returns the message id, or None if the message would have gone past the
    conversation's `max_rounds`: it is then not sent, the coordinator is told, and it
    stops the conversation (`converse` raises `RoundLimitError`); the peer's next
    `receive` returns None. A body over `limit` is refused here, before it is sent.

    Raises:
        MessageTooLargeError: the body is over `limit` (journaled as `PayloadRejected`).
        UserError: called between messages (a peer sends only while handling a
            message, which is what lets the runtime tell when the conversation is
            over), or `to` is not a peer of the conversation.
    """
    box = _mailbox(ctx)
    current = box.handling
    if current is None:
        raise UserError(
            f"run {ctx.run_id!r} called send() while handling no message; a peer sends only "
            "between `await receive(ctx)` returning a message and its next call, so that "
            "the conversation's termination can be detected. Put the first messages in "
            "converse(start=...)"
        )
    if to not in current["peers"]:
        raise UserError(
            f"run {ctx.run_id!r} sent a message to {to!r}, which is not a peer of conversation "
            f"{current['conversation']!r}; its peers are {', '.join(current['peers'])}"
        )
    if limit is not None:
        await check_payload(ctx, limit, body, sender=ctx.run_id, recipient=to)
    next_round = int(current["round"]) + 1
    common = {
        "conversation": current["conversation"],
        "coordinator": current["coordinator"],
        "peers": current["peers"],
        "sender": current["to"],
        "max_rounds": current["max_rounds"],
        "round": next_round,
    }
    if next_round > int(current["max_rounds"]):
        report = envelope(
            kind="limit", message_id="", to=None, body={"to": to}, weight=Fraction(0), **common
        )
        await transmit(ctx, f"limit:{to}", str(current["coordinator"]), report)
        return None
    weight = box.weight / 2
    message = envelope(kind="message", message_id="", to=to, body=body, weight=weight, **common)
    sent = await transmit(ctx, f"message:{to}", peer_run_id(current["conversation"], to), message)
    box.weight -= Fraction(sent["weight"])
    return str(sent["message_id"])


async def reply(
    ctx: WorkflowContext, message: PeerMessage, body: Any, *, limit: PayloadLimit | None = None
) -> str | None:
    """Send `body` back to the sender of `message` (see `send`, also for `limit`).

    Raises:
        UserError: `message` is the kickoff, which no peer sent.
    """
    if message.sender is None:
        raise UserError(
            f"message {message.id!r} is the conversation's kickoff, sent by its coordinator, "
            "not by a peer: there is nobody to reply to; send() to a peer by name instead"
        )
    return await send(ctx, message.sender, body, limit=limit)


async def receive(ctx: WorkflowContext) -> PeerMessage | None:
    """Finish the message being handled and wait for the next; None once the conversation ends.

    Each message is journaled as `MessageReceived` before it is returned, so after a
    crash the same message is returned at the same point and a copy of it (a sender
    that resent it) is dropped. Finishing a message returns its remaining credit to
    the coordinator, which is how it learns that this peer is idle.
    """
    box = _mailbox(ctx)
    if box.stopped:
        return None
    if box.handling is not None:
        await _return_credit(ctx, box)
    data, _ = await delivery.receive(
        ctx, _RunInbox(ctx), box.receipts, urgent=_is_stop, accept=_is_for_peers
    )
    if data["kind"] == "stop":
        box.stopped = True
        return None
    box.handling = data
    box.weight += Fraction(data["weight"])
    return PeerMessage.of(data)


async def messages(ctx: WorkflowContext) -> AsyncIterator[PeerMessage]:
    """Every message this peer receives, until the conversation ends.

    Example::

        @phalanx.workflow
        async def echo(ctx):
            async for message in messages(ctx):
                await reply(ctx, message, message.body)
    """
    while (message := await receive(ctx)) is not None:
        yield message


async def _return_credit(ctx: WorkflowContext, box: _Mailbox) -> None:
    current = box.handling
    assert current is not None  # only called while handling
    credit = envelope(
        kind="credit",
        message_id="",
        conversation=current["conversation"],
        coordinator=current["coordinator"],
        peers=current["peers"],
        sender=current["to"],
        to=None,
        body=None,
        round=int(current["round"]),
        max_rounds=int(current["max_rounds"]),
        weight=box.weight,
    )
    await transmit(ctx, "credit", str(current["coordinator"]), credit)
    box.handling = None
    box.weight = Fraction(0)
