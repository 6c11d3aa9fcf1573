"""A durable actor's mailbox: a journal stream, bounded across processes, read once.

A durable actor is a run whose workflow loops over `mailbox(ctx)`. Its address is a
name that outlives any one run: the actor's run id, or, for a supervised child, the
name its supervisor gave it, whose successive incarnations are the runs
`{address}#1`, `{address}#2`, ... (see `_supervisor`). Its messages wait in the stream
`actor:{address}:mailbox`, so they survive the actor's crash and reach its next
incarnation. Delivery is exactly once to the actor's logic (`delivery`): every
message carries an id, is journaled by its sender, and is journaled as received
before the actor sees it; a copy (a sender that crashed before noting the delivery
posts it again) is dropped by id, across incarnations too.

Bounded, across processes, through the store: the mailbox's depth is the messages
posted (the stream's version) minus the messages the actor has taken (its cursor,
which the actor publishes as the stream's snapshot each time it journals a receipt):
two reads of one row each. A sender appends only at the version it read
(compare-and-set), so two senders racing for the last slot cannot both take it. When
the mailbox is full the actor's declared policy decides: `block` makes the sender
wait (polling the depth) until there is room or its deadline passes, `fail_fast`
refuses at once; either refusal is `MailboxFullError`, journaled in the sender's run.
Rejected: a counter row that senders increment and the actor decrements (a write per
message on both sides, and a lost decrement on a crash would shrink the mailbox for
good); reading the actor's journal to count receipts (a scan per send).

The bound counts copies and any other events in the stream until the actor passes
them, so it errs on the side of fewer messages, never more. It holds from the moment
the policy is published: by `Supervisor.spawn`, or by the actor's first `mailbox(ctx)`.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._clock import Clock, SystemClock
from .._errors import ConcurrencyError, ConfigError, MailboxFullError, UnknownRunError
from ..agents import PayloadLimit, check_payload
from ..durable import WorkflowContext, lowlevel
from ..journal import Event, EventStore, Metadata, NewEvent
from . import delivery
from .delivery import Receipts

WhenFull = Literal["block", "fail_fast"]

#: How often an idle actor looks for mail, and the longest a blocked sender waits
#: between looks at the depth (it starts at a tenth of this and backs off).
POLL_INTERVAL = 0.05


@dataclass(frozen=True, kw_only=True)
class Mailbox:
    """How many messages wait for an actor, and what a sender meets when it is full.

    Args:
        capacity: Messages that may wait (posted, not yet taken by the actor).
        when_full: `block` the sender until there is room (up to the deadline it
            passes to `tell`), or `fail_fast` with `MailboxFullError` at once.

    Raises:
        ConfigError: a capacity below 1, or an unknown `when_full`.
    """

    capacity: int = 1000
    when_full: WhenFull = "block"

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ConfigError(
                setting="Mailbox.capacity",
                value=self.capacity,
                reason="a mailbox must hold at least one message",
            )
        if self.when_full not in ("block", "fail_fast"):
            raise ConfigError(
                setting="Mailbox.when_full",
                value=self.when_full,
                reason="use 'block' or 'fail_fast'",
            )

    def to_json(self) -> dict[str, Any]:
        """The JSON form, as published in the mailbox's snapshot."""
        return {"capacity": self.capacity, "when_full": self.when_full}


def mailbox_stream(address: str) -> str:
    """The stream holding the messages of the actor at `address`."""
    return f"actor:{address}:mailbox"


def incarnation_run_id(address: str, incarnation: int) -> str:
    """The run id of a supervised actor's `incarnation`-th run (1 for the first)."""
    return f"{address}#{incarnation}"


def address_of(run_id: str) -> tuple[str, int]:
    """The actor address and incarnation a run id stands for (`x#2` -> `("x", 2)`)."""
    address, sep, number = run_id.rpartition("#")
    if sep and number.isdigit() and address:
        return address, int(number)
    return run_id, 1


@dataclass(frozen=True)
class Message:
    """A message an actor received: its id (unique in the store), sender and body.

    `sender` is the sending run's id, or None for a message posted from outside any
    run (`post`). `reply_to` is the run waiting for an answer (`ask`; answer it
    with `reply`), None for a `tell`.
    """

    id: str
    sender: str | None
    body: Any
    reply_to: str | None = None


async def publish(store: EventStore, address: str, cursor: int, policy: Mailbox) -> None:
    """Publish the actor's policy, and that it has taken everything up to seq `cursor`."""
    await store.save_snapshot(mailbox_stream(address), cursor, policy.to_json())


async def depth(store: EventStore, address: str) -> tuple[int, Mailbox | None]:
    """Messages waiting in `address`'s mailbox now, and its policy (None if unpublished)."""
    snapshot = await store.load_snapshot(mailbox_stream(address))
    version = await store.stream_version(mailbox_stream(address))
    if snapshot is None:
        return version, None
    policy = Mailbox(
        capacity=int(snapshot.state["capacity"]), when_full=snapshot.state["when_full"]
    )
    return version - snapshot.version, policy


async def post_bounded(
    store: EventStore,
    clock: Clock,
    address: str,
    message: dict[str, Any],
    *,
    deadline_at: float | None,
    sender: str | None,
) -> dict[str, Any] | None:
    """Append `message` to `address`'s mailbox if it has room; None, or why it did not.

    Waits for room while the policy is `block` and `deadline_at` (Unix seconds; None
    waits for ever) has not passed.
    """
    stream = mailbox_stream(address)
    event = NewEvent("MessageSent", message, Metadata(run_id=address, parent_id=sender))
    pause = POLL_INTERVAL / 10
    while True:
        # Snapshot first, version second: a receipt published in between only makes
        # the depth look larger than it is, never smaller.
        snapshot = await store.load_snapshot(stream)
        version = await store.stream_version(stream)
        if snapshot is None or version - snapshot.version < int(snapshot.state["capacity"]):
            try:
                await store.append(stream, [event], expected_version=version)
            except ConcurrencyError:
                continue  # another sender took a slot meanwhile: look again
            return None
        capacity, when_full = int(snapshot.state["capacity"]), str(snapshot.state["when_full"])
        now = clock.now()
        if when_full == "fail_fast" or (deadline_at is not None and now >= deadline_at):
            return {"capacity": capacity, "when_full": when_full, "deadline_at": deadline_at}
        wait = pause if deadline_at is None else min(pause, deadline_at - now)
        await clock.sleep(wait)
        pause = min(pause * 2, POLL_INTERVAL)


def _full(address: str, refusal: dict[str, Any]) -> MailboxFullError:
    return MailboxFullError(
        path=address,
        capacity=int(refusal.get("capacity", 0)),
        message_id=str(refusal.get("message_id", "")),
    )


async def tell(
    ctx: WorkflowContext,
    to: str,
    body: Any,
    *,
    deadline: float | None = None,
    limit: PayloadLimit | None = None,
) -> str:
    """Send `body` (JSON) to the actor at address `to`; return the message id.

    One durable operation: journaled before it is posted, posted again after a crash
    (the actor drops the copy), never sent twice by a replay. If the actor's mailbox
    is full, a `block` mailbox makes this wait for room (at most `deadline` seconds,
    counted from the first attempt, across restarts; None waits for ever) and a
    `fail_fast` one refuses at once. A body over `limit` is refused here, at the
    sender, before anything is journaled or posted.

    Raises:
        MailboxFullError: the mailbox stayed full; the refusal is journaled, so a
            replay raises it again. Retrying sends a new message.
        MessageTooLargeError: the body is over `limit` (journaled as `PayloadRejected`).
    """
    return await send(ctx, to, body, deadline=deadline, reply_to=None, limit=limit)


async def send(
    ctx: WorkflowContext,
    to: str,
    body: Any,
    *,
    deadline: float | None,
    reply_to: str | None,
    limit: PayloadLimit | None = None,
) -> str:
    """`tell`, with the run (if any) that waits for a reply (see `_ask`)."""
    if limit is not None:
        await check_payload(ctx, limit, body, sender=ctx.run_id, recipient=to)
    extra = {"deadline_at": None if deadline is None else ctx.clock.now() + deadline}

    async def deliver(sent: dict[str, Any]) -> dict[str, Any] | None:
        return await post_bounded(
            lowlevel.store(ctx),
            ctx.clock,
            to,
            sent["message"],
            deadline_at=sent.get("deadline_at"),
            sender=ctx.run_id,
        )

    message = {"kind": "message", "sender": ctx.run_id, "body": body}
    if reply_to is not None:
        message["reply_to"] = reply_to
    kind = "tell" if reply_to is None else "ask"
    sent, refusal = await delivery.transmit(
        ctx, f"{kind}:{to}", to, message, deliver=deliver, extra=extra
    )
    if refusal is not None:
        raise _full(to, refusal)
    return str(sent["message_id"])


async def post(
    store: EventStore,
    to: str,
    body: Any,
    *,
    message_id: str,
    deadline: float | None = None,
    clock: Clock | None = None,
) -> None:
    """Send `body` to the actor at `to` from outside any run (a script, a test, a web hook).

    Nothing journals the send, so the caller names the message: posting again with
    the same `message_id` (after a crash, say) is dropped by the actor.

    Raises:
        MailboxFullError: the mailbox stayed full (see `tell`).
    """
    clock = clock or SystemClock()
    deadline_at = None if deadline is None else clock.now() + deadline
    message = {"kind": "message", "sender": None, "body": body, "message_id": message_id}
    refusal = await post_bounded(store, clock, to, message, deadline_at=deadline_at, sender=None)
    if refusal is not None:
        raise _full(to, {**refusal, "message_id": message_id})


async def stop(ctx: WorkflowContext, to: str, reason: str) -> None:
    """Ask the actor at `to` to stop once it has handled what is already in its mailbox.

    Its `mailbox(ctx)` loop ends there. The order is not bounded by the capacity: a
    stop must get through to a full mailbox.
    """
    message = {"kind": "stop", "sender": ctx.run_id, "body": {"reason": reason}}

    async def deliver(sent: dict[str, Any]) -> dict[str, Any] | None:
        metadata = Metadata(run_id=to, parent_id=ctx.run_id)
        event = NewEvent("MessageSent", sent["message"], metadata)
        await lowlevel.store(ctx).append(mailbox_stream(to), [event])
        return None

    await delivery.transmit(ctx, f"stop:{to}", to, message, deliver=deliver)


@dataclass
class _Stream:
    """The mailbox stream as a message source, read from where the actor left off."""

    ctx: WorkflowContext
    address: str
    next_seq: int
    events: list[Event] = field(default_factory=list)

    async def refresh(self) -> Sequence[Event]:
        fresh = await lowlevel.store(self.ctx).read_stream(
            mailbox_stream(self.address), from_seq=self.next_seq
        )
        if fresh:
            self.events.extend(fresh)
            self.next_seq = fresh[-1].seq + 1
        return self.events

    async def wait(self) -> None:
        await self.ctx.clock.sleep(POLL_INTERVAL)


@dataclass
class _Actor:
    """One run's view of its mailbox, rebuilt by replay as it was first built."""

    address: str
    policy: Mailbox
    source: _Stream
    receipts: Receipts
    stopped: bool = False


_actors: weakref.WeakKeyDictionary[WorkflowContext, _Actor] = weakref.WeakKeyDictionary()


async def _inherit(ctx: WorkflowContext, address: str, incarnation: int) -> tuple[int, set[str]]:
    """What the previous incarnation took: its cursor and every message id it saw.

    The new incarnation starts after the last message its predecessor took, even one
    it crashed handling: redelivering the message that made an actor crash would
    only crash it again (the intensity limit is for that, not for one bad message).
    """
    cursor, seen = 0, set[str]()
    if incarnation <= 1:
        return cursor, seen
    try:
        previous = await lowlevel.runs(ctx).history(incarnation_run_id(address, incarnation - 1))
    except UnknownRunError:
        return cursor, seen  # started by hand under an incarnation's name
    for event in previous.events:
        if event.type == "MailboxOpened":
            cursor = max(cursor, int(event.data["cursor"]))
            seen.update(event.data["seen"])
        elif event.type == "MessageReceived":
            cursor = max(cursor, int(event.data.get("inbox_seq", 0)))
            seen.add(str(event.data["message"]["message_id"]))
    return cursor, seen


async def _open(ctx: WorkflowContext, policy: Mailbox | None) -> _Actor:
    actor = _actors.get(ctx)
    if actor is not None:
        return actor
    address, incarnation = address_of(ctx.run_id)
    op, recorded = lowlevel.claim(ctx, "mailbox", address)
    if recorded is None:
        cursor, seen = await _inherit(ctx, address, incarnation)
        if policy is None:
            _, published = await depth(lowlevel.store(ctx), address)
            policy = published or Mailbox()
        opened = {
            "op": op,
            "name": address,
            "cursor": cursor,
            "seen": sorted(seen),
            **policy.to_json(),
        }
        await lowlevel.record(ctx, "MailboxOpened", opened)
        await publish(lowlevel.store(ctx), address, cursor, policy)
    else:
        opened = recorded.events[0].data
    policy = Mailbox(capacity=int(opened["capacity"]), when_full=opened["when_full"])
    cursor = int(opened["cursor"])
    actor = _Actor(
        address=address,
        policy=policy,
        source=_Stream(ctx, address, cursor + 1),
        receipts=Receipts(seen=set(opened["seen"])),
    )
    _actors[ctx] = actor
    return actor


async def mailbox(ctx: WorkflowContext, policy: Mailbox | None = None) -> AsyncIterator[Message]:
    """Every message sent to this actor, one at a time, until it is told to stop.

    Example (a counter that lives as long as its supervisor wants)::

        @phalanx.workflow
        async def counter(ctx) -> int:
            total = 0
            async for message in mailbox(ctx):
                total += message.body
            return total

    Each message is journaled as received before it is handed over, so a resumed
    actor sees the same messages in the same order, and its next incarnation (after
    a crash its supervisor restarted it from) starts after the last one. `policy`
    declares the bound; without it, the one its spawner published (or the default).
    The loop ends when the actor is told to stop (`stop`, or its supervisor
    closing), after every message posted before that order.
    """
    actor = await _open(ctx, policy)

    async def taken(event: Event) -> None:
        # FIFO: everything before this message was taken or was a copy.
        await publish(lowlevel.store(ctx), actor.address, event.seq, actor.policy)

    while not actor.stopped:
        data, _ = await delivery.receive(ctx, actor.source, actor.receipts, taken=taken)
        if data.get("kind") == "stop":
            actor.stopped = True
            return
        yield Message(
            str(data["message_id"]), data.get("sender"), data.get("body"), data.get("reply_to")
        )
