"""Durable messages between runs: delivered at least once, handled exactly once.

Public, like `phalanx.durable.lowlevel`, for people writing their own messaging
patterns: the one implementation of exactly-once messaging, shared by the peers pattern
(`patterns._messaging`, messages in a run's inbox) and by durable actors
(`_mailbox`, messages in an actor's mailbox stream). A message travels in three
journaled steps, each of which a crash can interrupt without losing or doubling it:

1. `transmit` journals `MessageSent` in the sender's own run stream (an operation, so
   a replay sends the same message with the same id, `"{run_id}:{op}"`) ...
2. ... then appends a copy to the receiver's stream (not leased, so any sender may
   write it), and marks it `MessageDelivered` with the sender's next write. A crash
   before that marker reaches the journal makes the replayed send post the message
   again: *at least once*. A bounded receiver may refuse it (`MessageRefused`,
   journaled, so a replay refuses it too).
3. `receive` takes the oldest message whose id it has not taken before and journals
   `MessageReceived` before handing it over; copies with a known id are dropped, and
   on replay the journal hands the same message to the same code: *exactly once* to
   the logic (whose effects are steps, replayed from the journal in turn).

Journal first, stream second, on purpose: a message only ever reaches a receiver
after its sender's journal accepted it under the sender's current lease epoch, so a
fenced (taken over) sender cannot put anything in a stream that its journal does not
hold. Posting first would need no marker, but a stale runner could then deliver a
message (say, from a model answer that differs on the re-run) that the run's journal
never records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..durable import WorkflowContext, lowlevel
from ..journal import Event

#: Posts a message to its receiver, given the journaled `MessageSent` data: None if it
#: went in, or why the receiver refused it (a full bounded mailbox), to be journaled.
Deliver = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Source(Protocol):
    """Where a receiver's messages arrive: a run's inbox, or an actor's mailbox stream."""

    async def refresh(self) -> Sequence[Event]:
        """Everything that arrived so far, oldest first (arm the wake-up first)."""
        ...

    async def wait(self) -> None:
        """Wait until more may have arrived."""
        ...


@dataclass
class Receipts:
    """What a receiver has taken, rebuilt by replay exactly as it was first built.

    It changes only as `receive` operations are claimed (live or replayed) in the
    workflow's own order, never from what the stream happens to hold, so a resumed
    run arrives at the same seen ids.
    """

    seen: set[str] = field(default_factory=set)
    #: Index (into the source's events) before which every message was taken or
    #: dropped as a copy.
    cursor: int = 0


async def transmit(
    ctx: WorkflowContext,
    name: str,
    to_run: str,
    message: dict[str, Any],
    *,
    deliver: Deliver | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Send `message` to `to_run` as one operation; return it as sent, and any refusal.

    The message id is the operation's own (`"{run_id}:{op}"`), whatever the message
    said, so a replay resends the very same message. `deliver` posts it (by default
    to `to_run`'s inbox); `extra` is journaled with `MessageSent` for `deliver` to read
    back on replay (a send deadline, say).
    """
    op, recorded = lowlevel.claim(ctx, "send", name)
    if recorded is None:
        sent = {**message, "message_id": f"{ctx.run_id}:{op}"}
        data = {"op": op, "name": name, "to_run": to_run, "message": sent, **(extra or {})}
        await lowlevel.record(ctx, "MessageSent", data)
    else:
        data = recorded.events[0].data
        sent, to_run = data["message"], str(data["to_run"])
        if recorded.last("MessageDelivered") is not None:
            return dict(sent), None
        refused = recorded.last("MessageRefused")
        if refused is not None:
            return dict(sent), dict(refused.data)
        # Journaled, but the run died before the marker was: the receiver may or may
        # not have the message. Post it again; a copy is dropped by its id.
    if deliver is None:
        await lowlevel.post(ctx, to_run, "MessageSent", sent)
    else:
        refusal = await deliver(data)
        if refusal is not None:
            refused_data = {"op": op, "name": name, "message_id": sent["message_id"], **refusal}
            await lowlevel.record(ctx, "MessageRefused", refused_data)
            return dict(sent), refused_data
    lowlevel.record_later(
        ctx, "MessageDelivered", {"op": op, "name": name, "message_id": sent["message_id"]}
    )
    return dict(sent), None


async def take(
    source: Source,
    receipts: Receipts,
    *,
    urgent: Callable[[dict[str, Any]], bool],
    accept: Callable[[dict[str, Any]], bool],
) -> Event:
    """Wait for the oldest message not taken before (an `urgent` one first); return it.

    Messages that are not `accept`ed are left for another reader of the same stream
    (a reply an `ask` waits for, in a peer's inbox).
    """
    while True:
        events = await source.refresh()
        while receipts.cursor < len(events) and (
            events[receipts.cursor].type != "MessageSent"
            or events[receipts.cursor].data.get("message_id") in receipts.seen
        ):
            receipts.cursor += 1
        first = None
        for event in events[receipts.cursor :]:
            if event.type != "MessageSent" or event.data.get("message_id") in receipts.seen:
                continue  # not a message, or a copy of one already taken
            if not accept(event.data):
                continue
            if urgent(event.data):
                return event
            if first is None:
                first = event
        if first is not None:
            return first
        await source.wait()


async def receive(
    ctx: WorkflowContext,
    source: Source,
    receipts: Receipts,
    *,
    urgent: Callable[[dict[str, Any]], bool] = lambda _: False,
    accept: Callable[[dict[str, Any]], bool] = lambda _: True,
    taken: Callable[[Event], Awaitable[None]] | None = None,
) -> tuple[dict[str, Any], int]:
    """Take the next message as one operation, journaled before it is returned.

    Returns the message and its seq in the source stream. On replay the journaled
    message is returned without reading the source; `taken` runs only live, after
    the receipt is journaled (an actor publishes its mailbox cursor there).
    """
    op, recorded = lowlevel.claim(ctx, "receive", "message")
    if recorded is not None:
        data: dict[str, Any] = recorded.events[0].data["message"]
        seq = int(recorded.events[0].data.get("inbox_seq", 0))
    else:
        event = await take(source, receipts, urgent=urgent, accept=accept)
        data, seq = dict(event.data), event.seq
        await lowlevel.record(
            ctx, "MessageReceived", {"op": op, "name": "message", "message": data, "inbox_seq": seq}
        )
        if taken is not None:
            await taken(event)
    receipts.seen.add(str(data["message_id"]))
    return data, seq
