"""Asking a durable actor and waiting for its answer: a request with a reply address.

`ask` is a `tell` whose message names the asking run (`reply_to`), followed by a wait
for the answer in the asking run's own inbox; the actor answers with `reply`, a
durable send like any other (journaled, posted again after a crash, a copy ignored).
The wait is an operation of its own: its deadline (`ReplyAwaited`) and its outcome
(`ReplyReceived` with the answer, or `ReplyTimedOut`) are journaled, so a resumed
asker gets the same answer without asking again, and keeps the deadline it set.
Replies do not count against any mailbox bound: an asker already waits for them.
"""

from __future__ import annotations

from typing import Any

from .._errors import AskTimeoutError, UserError
from ..agents import PayloadLimit
from ..durable import WorkflowContext, lowlevel
from . import delivery
from ._mailbox import Message, send


async def ask(
    ctx: WorkflowContext,
    to: str,
    body: Any,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
    limit: PayloadLimit | None = None,
) -> Any:
    """Send `body` to the actor at `to` and return its `reply`.

    Example (a single-writer memory manager answering reads)::

        value = await ask(ctx, memory, {"get": "plan"}, timeout=30)

    Args:
        ctx: The asking run's context.
        to: The actor's address.
        body: The request (JSON).
        timeout: Seconds to wait for the answer, counted from the first wait, across
            restarts; None waits for ever.
        deadline: Seconds to wait for room in a full `block` mailbox (see `tell`).
        limit: The largest request allowed, checked here before it is sent.

    Raises:
        MailboxFullError: the request could not be delivered (see `tell`).
        MessageTooLargeError: the request is over `limit`; nothing was sent.
        AskTimeoutError: no answer within `timeout`; journaled, so a replay raises
            it again. The actor may still handle the request.
    """
    message_id = await send(ctx, to, body, deadline=deadline, reply_to=ctx.run_id, limit=limit)
    op, recorded = lowlevel.claim(ctx, "reply", message_id)
    if recorded is None:
        reply_by = None if timeout is None else ctx.clock.now() + timeout
        await lowlevel.record(
            ctx, "ReplyAwaited", {"op": op, "name": message_id, "reply_by": reply_by}
        )
    else:
        done = recorded.last("ReplyReceived", "ReplyTimedOut")
        if done is not None and done.type == "ReplyReceived":
            return done.data.get("body")
        if done is not None:
            raise AskTimeoutError(path=to, timeout=timeout or 0.0, message_id=message_id)
        reply_by = recorded.events[0].data.get("reply_by")
    clock = ctx.clock
    while True:
        for event in lowlevel.inbox(ctx):
            data = event.data
            if (
                event.type == "MessageSent"
                and data.get("kind") == "reply"
                and data.get("in_reply_to") == message_id
            ):
                answer = data.get("body")
                await lowlevel.record(
                    ctx,
                    "ReplyReceived",
                    {"op": op, "name": message_id, "body": answer, "inbox_seq": event.seq},
                )
                return answer
        remaining = None if reply_by is None else float(reply_by) - clock.now()
        if remaining is not None and remaining <= 0:
            await lowlevel.record(ctx, "ReplyTimedOut", {"op": op, "name": message_id})
            raise AskTimeoutError(path=to, timeout=timeout or 0.0, message_id=message_id)
        await lowlevel.wait_inbox(ctx, remaining)


async def reply(ctx: WorkflowContext, message: Message, body: Any) -> None:
    """Answer `message`, which was asked (`ask`), with `body` (JSON).

    Raises:
        UserError: the message was told, not asked: nobody waits for an answer.
    """
    if message.reply_to is None:
        raise UserError(
            f"message {message.id!r} was sent with tell() or post(), not ask(): nobody waits "
            "for a reply. Use ask() to get an answer, or tell() the sender a message"
        )
    answer = {"kind": "reply", "in_reply_to": message.id, "sender": ctx.run_id, "body": body}
    await delivery.transmit(ctx, f"reply:{message.id}", message.reply_to, answer)
