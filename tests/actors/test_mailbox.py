"""Durable actor mailboxes: bounded across processes, deduplicated by message id."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

import phalanx
from phalanx.actors import depth, post
from phalanx.actors._mailbox import mailbox_stream
from tests.actors.workflows import collector, producer
from tests.chaos.harness import Workspace, child_env, wait_exit

ACTOR = "inbox-actor"


async def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Await `predicate()` until it returns something truthy; fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def events(rt: phalanx.Runtime, run_id: str) -> list[phalanx.Event]:
    return await rt.store.read_stream(f"run:{run_id}")


def received(journal: list[phalanx.Event]) -> list[Any]:
    return [e.data["message"]["body"] for e in journal if e.type == "MessageReceived"]


async def opened(rt: phalanx.Runtime) -> bool:
    return (await rt.store.load_snapshot(mailbox_stream(ACTOR))) is not None


async def test_full_mailbox_blocks_a_sender_in_another_process_until_the_actor_drains(
    runtime: phalanx.Runtime, background: Any, url: str, tmp_path: Path
) -> None:
    """A sender in another process waits at a full mailbox, and goes on as the actor drains."""
    actor = background(runtime.run(collector, {"expect": 6, "capacity": 2}, run_id=ACTOR))
    await wait_for(lambda: opened(runtime), 10, "the actor to open its mailbox")
    ws = Workspace(tmp_path, child_env(), url=url)
    try:
        inputs = json.dumps({"to": ACTOR, "count": 6, "deadline": 60})
        sender = ws.spawn_cli(
            "run", "tests.actors.workflows:producer", "--input", inputs, "--run-id", "p",
            label="producer",
        )  # fmt: skip

        async def stuck() -> bool:
            # The actor holds message 0 (waiting for `drain`); 1 and 2 fill the mailbox.
            waiting, _ = await depth(runtime.store, ACTOR)
            sent = [e for e in await runtime.store.read_stream("run:p") if e.type == "MessageSent"]
            return waiting == 2 and len(sent) == 4

        await wait_for(stuck, 30, "the producer to block on the fourth message")
        await asyncio.sleep(0.5)  # blocked, not slow: nothing more gets in meanwhile
        assert (await depth(runtime.store, ACTOR))[0] == 2
        assert await runtime.store.stream_version(mailbox_stream(ACTOR)) == 3
        assert sender.popen.poll() is None, sender.describe()

        await runtime.signal(ACTOR, "drain")
        outcome = await asyncio.wait_for(actor, 30)
        assert await asyncio.to_thread(wait_exit, sender, 30) == 0, sender.describe()
    finally:
        ws.kill_all()
    assert outcome.status == "completed"
    assert outcome.result == [0, 1, 2, 3, 4, 5]


async def test_fail_fast_mailbox_refuses_at_once_and_the_refusal_is_journaled(
    runtime: phalanx.Runtime,
    background: Any,
) -> None:
    """A fail-fast mailbox at capacity makes `tell` raise; replaying the sender raises again."""
    actor = background(
        runtime.run(collector, {"expect": 2, "capacity": 1, "when_full": "fail_fast"}, run_id=ACTOR)
    )
    await wait_for(lambda: opened(runtime), 10, "the actor to open its mailbox")
    first = await runtime.run(producer, {"to": ACTOR, "count": 1}, run_id="first")
    assert first.status == "completed"
    await wait_for(lambda: _received_count(runtime, 1), 10, "the actor to take the first message")
    outcome = await runtime.run(producer, {"to": ACTOR, "count": 3}, run_id="p")
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error["type"].endswith("MailboxFullError")
    journal = await events(runtime, "p")
    assert [e.type for e in journal if e.type.startswith("Message")] == [
        "MessageSent", "MessageDelivered", "MessageSent", "MessageRefused",
    ]  # fmt: skip
    assert await runtime.store.stream_version(mailbox_stream(ACTOR)) == 2
    await runtime.signal(ACTOR, "drain")
    assert (await asyncio.wait_for(actor, 30)).result == [0, 0]


async def _received_count(rt: phalanx.Runtime, n: int) -> bool:
    return len(received(await events(rt, ACTOR))) >= n


async def test_blocked_sender_gives_up_at_its_deadline(
    runtime: phalanx.Runtime, background: Any
) -> None:
    """A `block` mailbox that stays full refuses the sender when its deadline passes."""
    actor = background(runtime.run(collector, {"expect": 2, "capacity": 1}, run_id=ACTOR))
    await wait_for(lambda: opened(runtime), 10, "the actor to open its mailbox")
    started = asyncio.get_running_loop().time()
    outcome = await runtime.run(producer, {"to": ACTOR, "count": 3, "deadline": 0.5}, run_id="p")
    waited = asyncio.get_running_loop().time() - started
    assert outcome.status == "failed", outcome
    assert outcome.error is not None and outcome.error["type"].endswith("MailboxFullError")
    assert waited >= 0.5
    await runtime.signal(ACTOR, "drain")
    assert (await asyncio.wait_for(actor, 30)).result == [0, 1]


@pytest.mark.slow
async def test_a_message_resent_after_a_sender_crash_is_handled_once(
    runtime: phalanx.Runtime, background: Any, url: str, tmp_path: Path
) -> None:
    """A sender killed before it noted the delivery posts again on resume; the actor drops it."""
    release = tmp_path / "release"
    ws = Workspace(tmp_path, child_env(), url=url)
    try:
        inputs = json.dumps({"to": ACTOR, "body": "once", "release": str(release)})
        sender = ws.spawn_cli(
            "run", "tests.actors.workflows:one_shot", "--input", inputs, "--run-id", "s",
            label="sender",
        )  # fmt: skip

        async def posted() -> bool:
            return await runtime.store.stream_version(mailbox_stream(ACTOR)) == 1

        await wait_for(posted, 30, "the message to reach the mailbox")
        sender.popen.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(wait_exit, sender, 10) == -signal.SIGKILL
        journal = [e.type for e in await events(runtime, "s")]
        assert "MessageSent" in journal and "MessageDelivered" not in journal
        release.touch()
        resumed = await asyncio.to_thread(ws.cli, "resume", "s", "--force", timeout=60)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    finally:
        ws.kill_all()
    copies = await runtime.store.read_stream(mailbox_stream(ACTOR))
    assert len(copies) == 2 and copies[0].data["message_id"] == copies[1].data["message_id"]
    # A second, distinct message from outside any run, posted twice: handled once too.
    await post(runtime.store, ACTOR, "twice", message_id="outside-1")
    await post(runtime.store, ACTOR, "twice", message_id="outside-1")
    actor = background(runtime.run(collector, {"expect": 2}, run_id=ACTOR))
    await wait_for(lambda: _received_count(runtime, 1), 10, "the first message")
    await runtime.signal(ACTOR, "drain")
    outcome = await asyncio.wait_for(actor, 30)
    assert outcome.result == ["once", "twice"]
    journal = await events(runtime, ACTOR)
    assert received(journal) == ["once", "twice"]
    assert [e.type for e in journal].count("StepCompleted") == 2


async def test_mailbox_policy_is_validated() -> None:
    """A capacity below 1 or an unknown policy is refused with the setting named."""
    with pytest.raises(phalanx.ConfigError, match="capacity"):
        phalanx.Mailbox(capacity=0)
    with pytest.raises(phalanx.ConfigError, match="when_full"):
        phalanx.Mailbox(when_full="drop")  # type: ignore[arg-type]
