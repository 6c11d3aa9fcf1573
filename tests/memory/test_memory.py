"""Shared memory on every store: versions, compare-and-set, the three models, bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import phalanx
from phalanx.journal import EventStore
from phalanx.memory import Memory, memory_stream, open_memory_manager, request_stream
from tests.conftest import StoreFactory


async def versions(store: EventStore, name: str) -> int:
    return await store.stream_version(memory_stream(name))


async def test_every_version_is_kept_with_its_author_and_base(store: EventStore) -> None:
    """history(key) shows who wrote each version, from which version."""
    async with open_memory_manager(store, "plan") as manager:
        a = Memory(store, "plan", agent="a", run="r1", manager=manager).linearizable()
        b = Memory(store, "plan", agent="b", run="r2", manager=manager).linearizable()
        await a.cas("plan", ["x"], based_on=0)
        await b.cas("plan", ["x", "y"], based_on=1)
        await a.put("plan", ["z"])
        history = await a.history("plan")
    assert [(v.version, v.based_on, v.author.agent, v.author.run, v.mode) for v in history] == [
        (1, 0, "a", "r1", "cas"),
        (2, 1, "b", "r2", "cas"),
        (3, 2, "a", "r1", "put"),
    ]
    assert [v.value for v in history] == [["x"], ["x", "y"], ["z"]]


async def test_a_stale_cas_is_refused_with_the_current_version_and_value(store: EventStore) -> None:
    """A CAS based on an old version raises MemoryConflictError and writes no version."""
    async with open_memory_manager(store, "plan") as manager:
        plan = Memory(store, "plan", manager=manager).linearizable()
        await plan.cas("plan", {"n": 1}, based_on=0)
        await plan.cas("plan", {"n": 2}, based_on=1)
        with pytest.raises(phalanx.MemoryConflictError) as info:
            await plan.cas("plan", {"n": 99}, based_on=1)
        assert (info.value.current_version, info.value.current_value) == (2, {"n": 2})
        assert "version 2" in str(info.value)
        seen = await plan.read("plan")
    assert (seen.value, seen.version) == ({"n": 2}, 2)
    events = await store.read_stream(memory_stream("plan"))
    assert [e.type for e in events] == ["MemoryWritten", "MemoryWritten", "MemoryConflict"]


@pytest.mark.parametrize("through", ["manager", "request stream"])
async def test_bad_input_is_a_typed_error_and_writes_nothing(
    store_factory: StoreFactory, through: str
) -> None:
    """Non-JSON, 5 MB, unknown key, never-existing version: typed errors, memory unchanged."""
    store = await store_factory()
    client_store = await store_factory()
    async with open_memory_manager(store, "plan") as manager:
        if through == "manager":
            plan = Memory(store, "plan", manager=manager).linearizable()
        else:
            plan = Memory(client_store, "plan", timeout=20).linearizable()
        await plan.cas("plan", {"ok": True}, based_on=0)
        before = await versions(store, "plan")
        requests_before = await store.stream_version(request_stream("plan"))
        with pytest.raises(phalanx.EventDataError) as bad_json:
            await plan.cas("plan", {"when": object()}, based_on=1)
        assert bad_json.value.path == "$.value.when"
        with pytest.raises(phalanx.PayloadTooLargeError) as too_big:
            await plan.cas("plan", {"doc": "x" * 5_000_000}, based_on=1)
        assert too_big.value.size > too_big.value.limit
        with pytest.raises(phalanx.UnknownMemoryKeyError) as unknown:
            await plan.read("nope")
        assert unknown.value.key == "nope"
        assert await versions(store, "plan") == before
        assert await store.stream_version(request_stream("plan")) == requests_before
        with pytest.raises(phalanx.MemoryVersionError) as never:
            await plan.cas("plan", {"ok": False}, based_on=7)
        assert (never.value.based_on, never.value.current_version) == (7, 1)
        with pytest.raises(phalanx.MemoryVersionError):
            await plan.cas("fresh", {"ok": False}, based_on=3)
        seen = await plan.read("plan")
        assert (seen.value, seen.version) == ({"ok": True}, 1)
        with pytest.raises(phalanx.UnknownMemoryKeyError):
            await plan.read("fresh")
    written = [
        e for e in await store.read_stream(memory_stream("plan")) if e.type == "MemoryWritten"
    ]
    assert len(written) == 1


async def test_writes_from_another_connection_go_through_the_request_stream(
    store_factory: StoreFactory,
) -> None:
    """A client without the manager object writes via requests; the manager answers."""
    host, client = await store_factory(), await store_factory()
    async with open_memory_manager(host, "notes"):
        notes = Memory(client, "notes", agent="remote", timeout=20).linearizable()
        written = await notes.cas("n", "first", based_on=0)
        with pytest.raises(phalanx.MemoryConflictError) as info:
            await notes.cas("n", "again", based_on=0)
    assert written.version == 1
    assert info.value.current_value == "first"
    requests = await host.read_stream(request_stream("notes"))
    assert [e.data["key"] for e in requests] == ["n", "n"]


async def test_no_manager_is_a_typed_timeout_and_a_late_manager_answers(
    store_factory: StoreFactory,
) -> None:
    """Without a manager a write times out; the request is answered once one starts."""
    host, client = await store_factory(), await store_factory()
    notes = Memory(client, "notes", timeout=0.3)
    with pytest.raises(phalanx.MemoryUnavailableError) as info:
        await notes.send("req-1", "cas", "k", 1, 0)
    async with open_memory_manager(host, "notes"):
        outcome = await Memory(client, "notes", timeout=20).send("req-1", "cas", "k", 1, 0)
    assert info.value.request == "req-1"
    assert (outcome.kind, outcome.version) == ("written", 1)
    assert await versions(host, "notes") == 1  # answered once, though sent twice


async def test_concurrent_updates_lose_nothing_and_journal_conflicts(
    store_factory: StoreFactory,
) -> None:
    """Eight writers on two connections increment one counter: every increment lands."""
    host, other = await store_factory(), await store_factory()
    async with open_memory_manager(host, "count") as manager:
        local = Memory(host, "count", manager=manager).linearizable()
        await local.cas("n", 0, based_on=0)
        handles = [
            Memory(
                host if i % 2 else other,
                "count",
                agent=f"w{i}",
                manager=manager if i % 2 else None,
                timeout=30,
            ).linearizable()
            for i in range(8)
        ]

        async def bump(handle: Any) -> None:
            for _ in range(5):
                await handle.update("n", lambda n: n + 1, max_attempts=1000)

        async with asyncio.TaskGroup() as group:
            for handle in handles:
                group.create_task(bump(handle))
        final = await local.read("n")
    assert final.value == 40
    events = await host.read_stream(memory_stream("count"))
    conflicts = [e for e in events if e.type == "MemoryConflict"]
    assert len([e for e in events if e.type == "MemoryWritten"]) == 41
    assert conflicts, "eight writers racing never conflicted"
    assert all(e.data["current_version"] > e.data["based_on"] for e in conflicts)


async def test_a_snapshot_sees_nothing_newer(store: EventStore) -> None:
    """A snapshot pins the memory's position: later writes stay invisible to it."""
    async with open_memory_manager(store, "plan") as manager:
        memory = Memory(store, "plan", manager=manager)
        plan = memory.linearizable()
        await plan.cas("a", 1, based_on=0)
        snapshot = await memory.snapshot()
        await plan.cas("a", 2, based_on=1)
        await plan.cas("b", 1, based_on=0)
        assert (await snapshot.read("a")).value == 1
        assert await snapshot.keys() == ["a"]
        with pytest.raises(phalanx.UnknownMemoryKeyError):
            await snapshot.read("b")
        assert (await (await memory.snapshot()).read("a")).value == 2


async def test_snapshots_are_never_torn_while_writers_commit(store_factory: StoreFactory) -> None:
    """Writers keep a == b or a == b + 1; every snapshot of another connection agrees."""
    host, reader_store = await store_factory(), await store_factory()
    async with open_memory_manager(host, "pair") as manager:
        writer = Memory(host, "pair", manager=manager).linearizable()
        await writer.cas("a", 0, based_on=0)
        await writer.cas("b", 0, based_on=0)
        stop = asyncio.Event()

        async def write() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                await writer.cas("a", i, based_on=i)
                await writer.cas("b", i, based_on=i)
                await asyncio.sleep(0)  # SQLite appends run inline: let the reader in

        reader = Memory(reader_store, "pair")
        seen: list[tuple[int, int]] = []
        async with asyncio.TaskGroup() as group:
            group.create_task(write())
            for _ in range(40):
                snapshot = await reader.snapshot()
                b = (await snapshot.read("b")).value
                await asyncio.sleep(0.002)  # writers commit between the two reads
                a = (await snapshot.read("a")).value
                seen.append((a, b))
            stop.set()
    assert all(a in (b, b + 1) for a, b in seen), seen
    assert len({a for a, _ in seen}) > 1, "the writers never moved during the reads"


async def test_an_eventual_read_reports_its_lag_and_honours_max_staleness(
    store_factory: StoreFactory,
) -> None:
    """A lagging projection says how far behind it is; a bound waits to catch up or fails."""
    host, lagging_store = await store_factory(), await store_factory()
    async with open_memory_manager(host, "feed") as manager:
        writer = Memory(host, "feed", manager=manager).linearizable()
        await writer.cas("k", 0, based_on=0)
        lagging = Memory(lagging_store, "feed")
        first = await lagging.eventual(max_positions=0, wait=10).read("k")
        assert first.staleness == phalanx.memory.Staleness(0, 0.0)
        for i in range(1, 6):
            await writer.cas("k", i, based_on=i)
        stale = await lagging.eventual(refresh_after=None).read("k")
        assert (stale.value, stale.version) == (0, 1)
        assert stale.staleness is not None and stale.staleness.positions == 5
        assert stale.staleness.seconds > 0
        with pytest.raises(phalanx.MemoryStaleError) as info:
            await lagging.eventual(max_positions=2, refresh_after=None).read("k")
        assert info.value.behind_positions == 5
        fresh = await lagging.eventual(max_positions=2, wait=10).read("k")
        assert (fresh.value, fresh.staleness) == (5, phalanx.memory.Staleness(0, 0.0))
        await writer.cas("k", 6, based_on=6)
        await asyncio.sleep(0.05)
        lagging_again = await lagging.eventual(refresh_after=None).read("k")
        assert lagging_again.staleness is not None and lagging_again.staleness.seconds > 0
        converged = await lagging.eventual(refresh_after=0.0).read("k")
    assert (converged.value, converged.staleness) == (6, phalanx.memory.Staleness(0, 0.0))


async def test_a_manager_taken_over_is_fenced_and_the_new_one_keeps_every_write(
    store_factory: StoreFactory,
) -> None:
    """take_over gets a larger epoch; the old manager's next write is refused by the store."""
    first_store, second_store = await store_factory(), await store_factory()
    async with open_memory_manager(first_store, "plan") as old:
        stale = Memory(first_store, "plan", manager=old).linearizable()
        await stale.cas("plan", 1, based_on=0)
        async with open_memory_manager(second_store, "plan", take_over=True) as new:
            assert new.epoch > old.epoch
            with pytest.raises(phalanx.FencedError):
                await stale.cas("plan", 2, based_on=1)
            fresh = Memory(second_store, "plan", manager=new).linearizable()
            assert (await fresh.read("plan")).value == 1
            await fresh.cas("plan", 3, based_on=1)
            assert (await fresh.read("plan")).version == 2
        events = await first_store.read_stream(memory_stream("plan"))
    assert [e.data.get("value") for e in events] == [1, 3]
    assert events[0].epoch == old.epoch and events[1].epoch == new.epoch


async def test_a_second_manager_waits_for_the_lease(store: EventStore) -> None:
    """Two managers of one memory without take_over: the second is LeaseHeldError."""
    async with open_memory_manager(store, "plan"):
        with pytest.raises(phalanx.LeaseHeldError):
            async with open_memory_manager(store, "plan", owner="someone else"):
                pass


async def test_a_write_whose_acknowledgement_was_lost_is_not_decided_twice(
    store: EventStore,
) -> None:
    """The outcome landed but the manager never heard: resending gets that outcome."""
    from phalanx.journal import NewEvent
    from phalanx.memory import Author, Request

    async with open_memory_manager(store, "plan") as manager:
        # What the manager's own append wrote before an outage swallowed its answer.
        landed = {
            "request": "r1",
            "key": "k",
            "based_on": 0,
            "author": {"agent": "a", "run": None},
            "version": 1,
            "value": "v",
            "mode": "cas",
        }
        await store.append(
            memory_stream("plan"), [NewEvent("MemoryWritten", landed)], epoch=manager.epoch
        )
        again = await manager.submit(Request("r1", "cas", "k", "v", 0, Author(agent="a")))
        fresh = await manager.submit(Request("r2", "cas", "k", "w", 1, Author(agent="a")))
    assert (again.kind, again.version) == ("written", 1)
    assert (fresh.kind, fresh.version, fresh.position) == ("written", 2, 2)
