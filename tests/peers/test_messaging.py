"""Durable messages: at least once into an inbox, exactly once into a peer's logic.

A peer journals `MessageSent` before posting to the receiver's inbox, and marks it
delivered with its next write; the receiver journals `MessageReceived` before handing
a message over and drops copies by id. The tests crash a conversation (in-process, a
`Crash` raised by the store) at each gap and resume it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import phalanx
from tests.peers import workflows as wf
from tests.peers.helpers import (
    FaultyInboxStore,
    assert_all_terminal,
    assert_handled_once,
    crashes,
    faulty_runtime,
    journal,
    received_ids,
    stream,
)

RUN = "volley"
PING, PONG = f"{RUN}.1.ping", f"{RUN}.1.pong"


def posted(events: list[phalanx.Event]) -> Counter[str]:
    """How many copies of each message an inbox got, by message id."""
    return Counter(e.data["message_id"] for e in events if e.type == "MessageSent")


async def test_message_journaled_but_not_delivered_is_delivered_on_resume(url: str) -> None:
    """A crash between journaling a send and posting it: the resumed sender posts it once."""
    async with faulty_runtime(url, kill_after_append=1, event_type="MessageSent") as rt:
        await crashes(rt.run(wf.ping_pong, {"limit": 6}, run_id=RUN))
    async with phalanx.open_runtime(url, lease_ttl=1.0, inbox_poll=0.01) as rt:
        sent = [e for e in await journal(rt, PING) if e.type == "MessageSent"]
        assert len(sent) == 1 and not await stream(rt, f"run:{PONG}:inbox")
        outcome = await rt.resume(RUN, force=True)
        assert outcome.status == "completed", outcome.error
        assert outcome.result["messages"] == 7
        first = sent[0].data["message"]["message_id"]
        assert posted(await stream(rt, f"run:{PONG}:inbox"))[first] == 1
        assert received_ids(await journal(rt, PONG)).count(first) == 1
        await assert_all_terminal(rt)
    assert_handled_once(wf.HANDLED)
    assert len(wf.HANDLED) == 7


async def test_message_posted_twice_reaches_the_logic_once(url: str) -> None:
    """A crash after posting but before the delivered marker: the copy is dropped by id."""
    # Inbox posts: the coordinator's kickoff to ping (1), ping's first message to pong (2).
    async with faulty_runtime(url, FaultyInboxStore, kill_after_append=2) as rt:
        await crashes(rt.run(wf.ping_pong, {"limit": 6}, run_id=RUN))
    async with phalanx.open_runtime(url, lease_ttl=1.0, inbox_poll=0.01) as rt:
        outcome = await rt.resume(RUN, force=True)
        assert outcome.status == "completed", outcome.error
        assert outcome.result["messages"] == 7
        pong_inbox = posted(await stream(rt, f"run:{PONG}:inbox"))
        ping_inbox = posted(await stream(rt, f"run:{PING}:inbox"))
        assert sorted(pong_inbox.values())[-1] == 2, pong_inbox  # ping's message, twice
        assert ping_inbox[f"{RUN}.1:start:ping"] == 2  # the kickoff, posted again too
        for peer in (PING, PONG):
            ids = received_ids(await journal(rt, peer))
            assert len(ids) == len(set(ids)), f"{peer} took a copy: {ids}"
        await assert_all_terminal(rt)
    assert_handled_once(wf.HANDLED)
    assert len(wf.HANDLED) == 7


async def test_crash_in_a_handler_replays_the_same_message(url: str) -> None:
    """A peer dying inside its handler gets the same message back, nothing new, on resume."""
    wf.CRASH_AT.add(f"{PONG}:4")
    async with faulty_runtime(url) as rt:
        await crashes(rt.run(wf.ping_pong, {"limit": 6}, run_id=RUN))
    async with phalanx.open_runtime(url, lease_ttl=1.0, inbox_poll=0.01) as rt:
        before = received_ids(await journal(rt, PONG))
        outcome = await rt.resume(RUN, force=True)
        assert outcome.status == "completed", outcome.error
        after = received_ids(await journal(rt, PONG))
        assert after[: len(before)] == before
        assert len(after) == len(set(after)) == 3
    assert_handled_once(wf.HANDLED)
    assert len(wf.HANDLED) == 7


async def test_send_outside_a_message_is_refused(
    open_rt: Callable[..., AbstractAsyncContextManager[phalanx.Runtime]],
) -> None:
    """Sending while handling no message is misuse: termination detection relies on it."""
    async with open_rt() as rt:
        outcome = await rt.run(wf.eager, {}, run_id="eager")
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error["type"].endswith("UserError")
    assert "handling no message" in outcome.error["message"]
