"""Memory inside workflows: reads journaled and replayed as seen, writes answered once."""

from __future__ import annotations

import pytest

import phalanx
from phalanx.memory import Memory, memory_stream, open_memory_manager
from tests.conftest import StoreFactory
from tests.memory import workflows as wf


async def test_a_resumed_run_sees_what_it_saw_not_what_memory_holds_now(
    runtime: phalanx.Runtime, store_factory: StoreFactory
) -> None:
    """After a crash and a memory change, replay returns the journaled reads."""
    host = await store_factory()
    async with open_memory_manager(host, "m") as manager:
        outside = Memory(host, "m", manager=manager).linearizable()
        await outside.cas("k", "before", based_on=0)
        wf.CRASH_ONCE.add("obs")
        with pytest.raises(BaseException) as info:
            await runtime.run(wf.observer, {"name": "m"}, run_id="obs")
        assert (
            info.group_contains(wf.Crash)
            if isinstance(info.value, BaseExceptionGroup)
            else (isinstance(info.value, wf.Crash))
        )
        await outside.cas("k", "after", based_on=1)
        outcome = await runtime.resume("obs", force=True)
    assert outcome.ok, outcome.error
    assert outcome.result == {
        "linearizable": "before",
        "snapshot": "before",
        "eventual": "before",
        "history": ["before"],
        "version": 1,
    }
    events = (await runtime.history("obs")).events
    reads = [e for e in events if e.type == "MemoryRead"]
    assert [e.data["result"]["read"]["model"] for e in reads[:3]] == [
        "linearizable",
        "snapshot",
        "eventual",
    ]
    assert reads[3].data["result"] == {"error": "unknown_key", "key": "seen"}  # update's default
    assert [e.type for e in events].count("MemorySnapshotPinned") == 1
    assert [e.type for e in events].count("MemoryHistoryRead") == 1


async def test_a_write_resent_after_a_crash_is_applied_once(
    runtime: phalanx.Runtime, store_factory: StoreFactory
) -> None:
    """The request id is the operation's: a replayed write is answered, not redone."""
    host = await store_factory()
    async with open_memory_manager(host, "m"):
        outcome = await runtime.run(wf.incrementer, {"name": "m", "times": 3}, run_id="inc")
        assert outcome.ok, outcome.error
        # Resending every write of the finished run changes nothing.
        client = Memory(host, "m", timeout=20)
        events = (await runtime.history("inc")).events
        answered = [e for e in events if e.type == "MemoryWriteAnswered"]
        for event in answered:
            again = await client.send(f"inc:{event.data['op']}", "cas", "n", 0, 0)
            assert again.version == event.data["result"]["version"]
        final = await client.linearizable().read("n")
    assert final.value == 3
    written = [e for e in await host.read_stream(memory_stream("m")) if e.type == "MemoryWritten"]
    assert len(written) == 3
