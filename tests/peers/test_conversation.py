"""Peer conversations (`phalanx.converse`): termination detection and bounded rounds.

A conversation ends when the coordinator has all the credit back: no peer busy, no
message in flight. The tests check it ends then and not before, by the global order
of the events in the store, and that a conversation that cannot end is stopped with
a typed error.
"""

from __future__ import annotations

import asyncio
import time

import phalanx
from tests.peers import workflows as wf
from tests.peers.helpers import (
    assert_all_terminal,
    assert_handled_once,
    crashes,
    faulty_runtime,
    journal,
    received_ids,
)

RUN = "talk"
PING, PONG = f"{RUN}.1.ping", f"{RUN}.1.pong"


async def everything(runtime: phalanx.Runtime) -> list[phalanx.Event]:
    """The whole store, in global order."""
    events: list[phalanx.Event] = []
    while page := await runtime.store.read_all(after=events[-1].position if events else 0):
        events.extend(page)
    return events


def the(events: list[phalanx.Event], event_type: str) -> phalanx.Event:
    """The one event of `event_type` among `events`."""
    found = [e for e in events if e.type == event_type]
    assert len(found) == 1, f"{len(found)} {event_type} events"
    return found[0]


def peer_messages(events: list[phalanx.Event], kind: str = "message") -> list[phalanx.Event]:
    """Messages of one kind that peers journaled as sent, in global order."""
    return [
        e
        for e in events
        if e.type == "MessageSent"
        and not e.stream_id.endswith(":inbox")
        and e.data["message"]["kind"] == kind
    ]


async def test_ping_pong_ends_exactly_when_quiescent(runtime: phalanx.Runtime) -> None:
    """The stop decision comes after every message was handled and every credit returned."""
    outcome = await runtime.run(wf.ping_pong, {"limit": 6}, run_id=RUN)
    assert outcome.status == "completed", outcome.error
    assert outcome.result["messages"] == 7 and outcome.result["rounds"] == 7
    assert {p: o["value"] for p, o in outcome.result["peers"].items()} == {"ping": 4, "pong": 3}
    events = await everything(runtime)
    stopping = the(events, "ConversationStopping")
    assert stopping.data["reason"] == "quiescent"
    received = {
        e.data["message"]["message_id"]: e.position
        for e in events
        if e.type == "MessageReceived" and e.data["message"]["kind"] == "message"
    }
    for sent in peer_messages(events):
        message_id = sent.data["message"]["message_id"]
        assert received[message_id] < stopping.position, f"{message_id} still in flight"
    credits = [e for e in events if e.stream_id == f"run:{RUN}:inbox"]
    assert len(credits) == 7 and credits[-1].position < stopping.position
    assert the(events, "ConversationEnded").data["reason"] == "quiescent"
    assert_handled_once(wf.HANDLED)
    await assert_all_terminal(runtime)


async def test_message_in_flight_keeps_the_conversation_alive(runtime: phalanx.Runtime) -> None:
    """With nobody busy but a message waiting in an inbox, the conversation goes on."""
    # pong sleeps before taking anything; ping handles the kickoff, sends, goes idle.
    started = time.monotonic()
    outcome = await runtime.run(wf.ping_pong, {"limit": 1, "delay": 0.4}, run_id=RUN)
    assert outcome.status == "completed", outcome.error
    assert time.monotonic() - started >= 0.4
    assert outcome.result["peers"]["pong"]["value"] == 1
    events = await everything(runtime)
    handled_late = [
        e for e in events if e.type == "MessageReceived" and e.stream_id.endswith("pong")
    ]
    assert handled_late[0].position < the(events, "ConversationStopping").position


async def test_busy_peer_keeps_the_conversation_alive(runtime: phalanx.Runtime) -> None:
    """While a peer is still handling a message, the coordinator does not stop anyone."""
    gate = wf.gate(f"{PONG}:2")
    task = asyncio.create_task(runtime.run(wf.ping_pong, {"limit": 3}, run_id=RUN))
    try:
        await asyncio.wait_for(gate.entered.wait(), 10)
        await asyncio.sleep(0.3)  # plenty of inbox polls: ping is idle by now
        coordinator = await journal(runtime, RUN)
        assert not [e for e in coordinator if e.type == "ConversationStopping"]
        gate.release.set()
        outcome = await asyncio.wait_for(task, 10)
    finally:
        gate.release.set()
        await asyncio.gather(task, return_exceptions=True)
    assert outcome.status == "completed", outcome.error
    assert outcome.result["messages"] == 4


async def test_gossip_spreads_to_everyone_then_stops(runtime: phalanx.Runtime) -> None:
    """Four gossiping peers: everyone hears the rumour, and every repeat is handled."""
    outcome = await runtime.run(wf.rumour, {}, run_id=RUN)
    assert outcome.status == "completed", outcome.error
    heard = {p: o["value"] for p, o in outcome.result["peers"].items()}
    assert heard["a"][0] == "coordinator"
    # Every peer tells its two friends once: 1 kickoff + 4 x 2 messages, all handled.
    assert sum(len(h) for h in heard.values()) == outcome.result["messages"] == 9
    for name, friends in wf.FRIENDS.items():
        for friend in friends:
            assert name in heard[friend]
    assert_handled_once(wf.HANDLED)
    await assert_all_terminal(runtime)


async def test_endless_conversation_stops_at_max_rounds(runtime: phalanx.Runtime) -> None:
    """Peers that would volley forever are stopped at max_rounds with RoundLimitError."""
    outcome = await runtime.run(wf.ping_pong, {"limit": 10**9, "max_rounds": 8}, run_id=RUN)
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error["type"].endswith("RoundLimitError")
    assert "max_rounds=8" in outcome.error["message"]
    events = await everything(runtime)
    assert the(events, "ConversationStopping").data["reason"] == "round_limit"
    [limit] = peer_messages(events, "limit")
    assert limit.data["message"]["round"] == 9
    ended = the(events, "ConversationEnded").data
    assert {p: o["status"] for p, o in ended["peers"].items()} == {
        "ping": "completed",
        "pong": "completed",
    }
    assert len(wf.HANDLED) == 8  # rounds 1..8, each handled once; round 9 never sent
    await assert_all_terminal(runtime)


async def test_round_limit_error_is_typed(runtime: phalanx.Runtime) -> None:
    """The coordinator's code can catch the round limit as `RoundLimitError`."""
    outcome = await runtime.run(wf.bounded, {}, run_id=RUN)
    assert outcome.status == "completed", outcome.error
    # Round 1 is the kickoff to ping; ping, handling round 3, would have sent round 4.
    assert outcome.result == {"error": "RoundLimitError", "peer": "ping", "max_rounds": 3}


async def test_failed_peer_stops_the_conversation(runtime: phalanx.Runtime) -> None:
    """A peer that fails ends the conversation with PeerFailedError; no peer is left running."""
    outcome = await runtime.run(wf.broken, {}, run_id=RUN)
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error["type"].endswith("PeerFailedError")
    assert "'bad'" in outcome.error["message"] and "cannot cope" in outcome.error["message"]
    await assert_all_terminal(runtime)


async def test_conversation_past_its_deadline_is_cancelled(runtime: phalanx.Runtime) -> None:
    """A conversation stuck in a handler ends at its deadline; the peers are cancelled."""
    wf.gate(f"{PONG}:2")  # never opened
    outcome = await runtime.run(wf.ping_pong, {"limit": 5, "deadline": 0.5}, run_id=RUN)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["type"].endswith("ConversationTimeoutError")
    ended = the(await journal(runtime, RUN), "ConversationEnded").data
    assert ended["reason"] == "timed_out"
    assert ended["peers"]["pong"]["status"] == "cancelled"
    await assert_all_terminal(runtime)


async def test_finished_conversation_is_not_run_again_on_resume(url: str) -> None:
    """A coordinator crashing after the conversation replays its result; no peer re-runs."""
    # RunCompleted appends: the two peers' (1, 2), then the coordinator's (3).
    async with faulty_runtime(url, kill_before_append=3, event_type="RunCompleted") as rt:
        await crashes(rt.run(wf.ping_pong, {"limit": 4}, run_id=RUN))
    handled = list(wf.HANDLED)
    async with phalanx.open_runtime(url, lease_ttl=1.0, inbox_poll=0.01) as rt:
        # Only the coordinator's RunCompleted was lost: the peers' journals are complete.
        assert len(received_ids(await journal(rt, PING))) == 3
        outcome = await rt.resume(RUN, force=True)
        assert outcome.status == "completed", outcome.error
        assert outcome.result["messages"] == 5
        await assert_all_terminal(rt)
    assert handled == wf.HANDLED
