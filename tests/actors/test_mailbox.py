"""Mailboxes: bounds and their policies, one message at a time, asks, deduplication."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx import ActorDeadlockError, ActorStoppedError, AskTimeoutError, MailboxFullError
from phalanx.actors import Actor, MailboxPolicy, open_actor_system
from phalanx.testing import VirtualClock
from tests.actors.helpers import Echo, EventLog, Recorder, caught, settle


async def test_block_policy_makes_the_sender_wait_for_room() -> None:
    """With when_full="block", a tell to a full mailbox waits until the actor takes one."""
    seen: list[Any] = []
    gate = asyncio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(
            functools.partial(Recorder, seen, gate),
            name="slow",
            mailbox=MailboxPolicy(capacity=2, when_full="block"),
        )
        await ref.tell("wait")  # taken at once; the actor blocks on the gate
        await settle()
        await ref.tell(1)
        await ref.tell(2)  # the mailbox is now full
        async with asyncio.TaskGroup() as tg:
            blocked = tg.create_task(ref.tell(3))
            await settle()
            assert not blocked.done()
            gate.set()
        assert await ref.ask("last", timeout=5) == 5
    assert seen == ["wait", 1, 2, 3, "last"]


async def test_fail_fast_policy_refuses_with_a_typed_error() -> None:
    """With when_full="fail_fast", a tell to a full mailbox raises MailboxFullError at once."""
    seen: list[Any] = []
    gate = asyncio.Event()
    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        ref = await system.spawn(
            functools.partial(Recorder, seen, gate),
            name="slow",
            mailbox=MailboxPolicy(capacity=1, when_full="fail_fast"),
        )
        await ref.tell("wait")
        await settle()
        await ref.tell(1)
        with pytest.raises(MailboxFullError) as caught:
            await ref.tell(2, message_id="m-2")
        assert caught.value.path == "/slow"
        assert caught.value.capacity == 1
        assert caught.value.message_id == "m-2"
        assert caught.value.retryable
        assert "when_full='block'" in str(caught.value)
        gate.set()
        await settle()
        await ref.ask("flush", timeout=5)
    assert seen == ["wait", 1, "flush"]
    assert log.find("message_rejected", "/slow", message_id="m-2")


async def test_an_actor_processes_one_message_at_a_time_in_order() -> None:
    """However many senders, receive never runs twice at once, and order is kept."""
    active = 0
    peak = 0
    order: list[int] = []

    class Careful(Actor):
        async def receive(self, message: Any) -> Any:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            for _ in range(3):
                await asyncio.sleep(0)  # give any concurrent call a chance to interleave
            order.append(message)
            active -= 1

    async with open_actor_system() as system:
        ref = await system.spawn(Careful, name="careful", mailbox=MailboxPolicy(capacity=4))
        async with asyncio.TaskGroup() as tg:
            for sender in range(5):
                tg.create_task(_send_many(ref, range(sender * 10, sender * 10 + 10)))
        await ref.ask(-1, timeout=5)
    assert peak == 1
    assert sorted(order[:-1]) == list(range(50))
    for sender in range(5):  # each sender's messages arrive in the order it sent them
        mine = [m for m in order if sender * 10 <= m < sender * 10 + 10]
        assert mine == sorted(mine)


async def _send_many(ref: Any, messages: range) -> None:
    for message in messages:
        await ref.tell(message)


async def test_ask_times_out_with_a_typed_error() -> None:
    """An ask nobody answers raises AskTimeoutError (a TimeoutError) naming the actor."""
    async with open_actor_system(clock=VirtualClock()) as system:
        gate = asyncio.Event()
        ref = await system.spawn(functools.partial(Recorder, [], gate), name="mute")
        with pytest.raises(AskTimeoutError) as caught:
            await ref.ask("wait", timeout=2.0, message_id="q-1")
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.path == "/mute"
        assert caught.value.timeout == 2.0
        assert caught.value.message_id == "q-1"
        gate.set()


async def test_an_ask_whose_caller_gave_up_is_skipped_and_can_be_retried() -> None:
    """An ask that timed out before the actor took it is not processed; a retry is."""
    seen: list[Any] = []
    gate = asyncio.Event()
    async with open_actor_system(clock=VirtualClock()) as system:
        ref = await system.spawn(functools.partial(Recorder, seen, gate), name="busy")
        await ref.tell("wait")
        with pytest.raises(AskTimeoutError):
            await ref.ask("late", timeout=1.0, message_id="late-1")
        gate.set()
        assert await ref.ask("flush", timeout=5) == 2
        assert seen == ["wait", "flush"]
        assert await ref.ask("late", timeout=5, message_id="late-1") == 3
    assert seen == ["wait", "flush", "late"]


async def test_a_duplicate_tell_is_processed_once() -> None:
    """The receiver drops a message whose id it has already taken in."""
    seen: list[Any] = []
    async with open_actor_system() as system:
        ref = await system.spawn(functools.partial(Recorder, seen), name="once")
        await ref.tell("charge card", message_id="pay-1")
        await ref.tell("charge card", message_id="pay-1")
        await ref.tell("charge card", message_id="pay-2")
        await ref.ask("flush", timeout=5)
    assert seen == ["charge card", "charge card", "flush"]


async def test_a_duplicate_ask_gets_the_original_answer() -> None:
    """Asking again with the same id returns the first answer without reprocessing."""
    seen: list[Any] = []
    async with open_actor_system() as system:
        ref = await system.spawn(functools.partial(Recorder, seen), name="once")
        first = await ref.ask("question", message_id="q-1", timeout=5)
        await ref.tell("other")
        again = await ref.ask("question", message_id="q-1", timeout=5)
    assert first == again == 1
    assert seen == ["question", "other"]


async def test_concurrent_duplicate_asks_share_one_processing() -> None:
    """A duplicate ask sent while the original is still queued waits for its answer."""
    seen: list[Any] = []
    gate = asyncio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(functools.partial(Recorder, seen, gate), name="once")
        await ref.tell("wait")
        async with asyncio.TaskGroup() as tg:
            first = tg.create_task(ref.ask("q", message_id="q-1", timeout=5))
            second = tg.create_task(ref.ask("q", message_id="q-1", timeout=5))
            await settle()
            gate.set()
    assert first.result() == second.result() == 2
    assert seen == ["wait", "q"]


async def test_the_dedup_window_is_bounded() -> None:
    """An id older than twice the window is forgotten, so memory stays bounded."""
    seen: list[Any] = []
    async with open_actor_system() as system:
        ref = await system.spawn(
            functools.partial(Recorder, seen),
            name="forgetful",
            mailbox=MailboxPolicy(dedup_window=4),
        )
        await ref.tell("old", message_id="old")
        for i in range(8):
            await ref.tell(i, message_id=f"n-{i}")
        await ref.tell("old", message_id="old")
        await ref.ask("flush", timeout=5)
    assert seen.count("old") == 2


async def test_dedup_window_zero_turns_deduplication_off() -> None:
    """With dedup_window=0 every copy is processed."""
    seen: list[Any] = []
    async with open_actor_system() as system:
        ref = await system.spawn(
            functools.partial(Recorder, seen), name="all", mailbox=MailboxPolicy(dedup_window=0)
        )
        await ref.tell("x", message_id="same")
        await ref.tell("x", message_id="same")
        await ref.ask("flush", timeout=5)
    assert seen == ["x", "x", "flush"]


async def test_a_failed_ask_is_not_processed_again_on_redelivery() -> None:
    """A message whose processing raised is remembered: a copy gets the same error."""
    seen: list[Any] = []
    async with open_actor_system() as system:
        ref = await system.spawn(functools.partial(Recorder, seen), name="poison")
        with pytest.raises(ValueError):
            await ref.ask("fail", message_id="p-1", timeout=5)
        with pytest.raises(ValueError):
            await ref.ask("fail", message_id="p-1", timeout=5)
    assert seen == ["fail"]


async def test_messages_to_a_stopped_actor_fail_with_a_typed_error() -> None:
    """tell and ask on a stopped actor raise ActorStoppedError with the reason."""
    async with open_actor_system() as system:
        ref = await system.spawn(Echo, name="gone")
        await ref.stop()
        with pytest.raises(ActorStoppedError) as caught:
            await ref.tell("hello")
        assert caught.value.reason == "stopped"
        with pytest.raises(ActorStoppedError):
            await ref.ask("hello", timeout=5)


async def test_queued_asks_fail_when_the_actor_stops() -> None:
    """Asks still in the mailbox when the actor stops get ActorStoppedError, not a hang."""
    gate = asyncio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(functools.partial(Recorder, [], gate), name="busy")
        await ref.tell("wait")
        async with asyncio.TaskGroup() as tg:
            pending = tg.create_task(caught(ref.ask("queued", timeout=None)))
            await settle()
            await ref.stop()
        assert isinstance(pending.result(), ActorStoppedError)


async def test_a_sender_blocked_on_a_full_mailbox_is_released_when_the_actor_stops() -> None:
    """A blocked tell fails with ActorStoppedError once the actor is stopped."""
    gate = asyncio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(
            functools.partial(Recorder, [], gate), name="busy", mailbox=MailboxPolicy(capacity=1)
        )
        await ref.tell("wait")
        await settle()
        await ref.tell("fills it")
        async with asyncio.TaskGroup() as tg:
            blocked = tg.create_task(caught(ref.tell("blocked")))
            await settle()
            await ref.stop()
        assert isinstance(blocked.result(), ActorStoppedError)


async def test_an_ask_blocked_on_a_full_mailbox_times_out() -> None:
    """The ask timeout also bounds the wait for room in a full mailbox."""
    gate = asyncio.Event()
    async with open_actor_system(clock=VirtualClock()) as system:
        ref = await system.spawn(
            functools.partial(Recorder, [], gate), name="busy", mailbox=MailboxPolicy(capacity=1)
        )
        await ref.tell("wait")
        await settle()
        await ref.tell("fills it")
        with pytest.raises(AskTimeoutError):
            await ref.ask("no room", timeout=1.0)
        gate.set()


async def test_an_actor_asking_itself_is_refused() -> None:
    """An ask to oneself raises ActorDeadlockError instead of hanging until the timeout."""

    class Narcissus(Actor):
        async def receive(self, message: Any) -> Any:
            if message == "ask yourself":
                return await self.ref.ask("hi", timeout=5)
            return message

    async with open_actor_system() as system:
        ref = await system.spawn(Narcissus, name="narcissus")
        with pytest.raises(ActorDeadlockError) as caught:
            await ref.ask("ask yourself", timeout=5)
        assert caught.value.path == "/narcissus"


async def test_a_reply_carries_the_sender_path_and_an_id() -> None:
    """Every envelope has a fresh id and the sending actor's path."""
    seen: list[tuple[str, str | None]] = []

    class Hooks:
        async def sent(self, target: Any, envelope: Any) -> None:
            seen.append((envelope.message_id, envelope.sender))

        async def received(self, target: Any, envelope: Any) -> None:
            pass

        async def processed(self, target: Any, envelope: Any, error: Any) -> None:
            pass

    class Forwarder(Actor):
        async def receive(self, message: Any) -> Any:
            return await message.ask("ping", timeout=5)

    async with open_actor_system(hooks=Hooks()) as system:
        echo = await system.spawn(Echo, name="echo")
        forwarder = await system.spawn(Forwarder, name="forwarder")
        assert await forwarder.ask(echo, timeout=5) == "ping"
    (outer_id, outer_sender), (inner_id, inner_sender) = seen
    assert outer_sender is None
    assert inner_sender == "/forwarder"
    assert outer_id != inner_id


async def _deliver(ids: list[int], window: int) -> list[str]:
    seen: list[Any] = []
    async with open_actor_system() as system:
        ref = await system.spawn(
            functools.partial(Recorder, seen), name="r", mailbox=MailboxPolicy(dedup_window=window)
        )
        for i in ids:
            await ref.tell(f"m{i}", message_id=f"m{i}")
        await ref.ask("flush", timeout=5)
    return seen[:-1]


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(0, 12), max_size=60), window=st.integers(1, 6))
def test_deduplication_keeps_its_window_guarantee(ids: list[int], window: int) -> None:
    """Any id sequence: all processed once at least; a copy within the window never again."""
    processed = asyncio.run(_deliver(ids, window))
    assert set(processed) == {f"m{i}" for i in ids}
    accepted: list[str] = []  # replay the arrivals against what was processed, in order
    for i in ids:
        message = f"m{i}"
        was_processed = len(accepted) < len(processed) and processed[len(accepted)] == message
        if message in accepted:
            since = len(accepted) - 1 - accepted[::-1].index(message)
            if len(accepted) - 1 - since < window:
                assert not was_processed, (message, accepted)
        if was_processed:
            accepted.append(message)
    assert accepted == processed
