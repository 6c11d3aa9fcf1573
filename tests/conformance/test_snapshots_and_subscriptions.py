"""Conformance: snapshots and subscriptions behave the same on every store."""

from __future__ import annotations

import asyncio

from phalanx import NewEvent
from phalanx.journal import Event, EventStore
from tests.conformance.racing import Racer, race
from tests.conftest import StoreFactory


async def test_snapshot_round_trip_and_newest_wins(store: EventStore) -> None:
    """The latest snapshot is returned; an older version never overwrites a newer one."""
    assert await store.load_snapshot("s") is None
    await store.save_snapshot("s", 10, {"total": 10, "名": "ü"})
    await store.save_snapshot("s", 20, {"total": 20})
    await store.save_snapshot("s", 15, {"total": 15})
    snap = await store.load_snapshot("s")
    assert snap is not None
    assert (snap.version, snap.state) == (20, {"total": 20})


async def test_subscription_sees_every_event_from_concurrent_writers(
    store_factory: StoreFactory,
) -> None:
    """A subscriber started before writers racing in threads sees each event once, in order."""
    reader = await store_factory()
    await reader.append("before", [NewEvent("Old")])
    start = await reader.head_position()
    writers, count = 3, 40
    block = 8  # appends per writer between two barriers
    total = writers * count
    seen: list[Event] = []

    async def consume() -> None:
        async for event in reader.subscribe(after=start):
            seen.append(event)
            if len(seen) == total:
                return

    async def write(racer: Racer) -> None:
        for i in range(count):
            if i % block == 0:
                racer.sync()
            await racer.store.append(f"w{racer.index}", [NewEvent("E", {"w": racer.index, "i": i})])

    async with asyncio.timeout(60):
        consumer = asyncio.ensure_future(consume())
        await race(store_factory.url, writers, write)
        await consumer
    # The writers interleaved: every writer's block k lands before anyone's block k+1.
    blocks = [e.data["i"] // block for e in seen]
    assert blocks == sorted(blocks)
    positions = [e.position for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == total
    assert sorted((e.data["w"], e.data["i"]) for e in seen) == [
        (w, i) for w in range(writers) for i in range(count)
    ]
    assert all(e.type != "Old" for e in seen)


async def test_subscription_from_zero_replays_history_then_tails(store: EventStore) -> None:
    """Subscribing from 0 first delivers the existing log, then new appends."""
    await store.append("a", [NewEvent("E", {"i": i}) for i in range(3)])
    iterator = store.subscribe(after=0)
    got = [await anext(iterator) for _ in range(3)]
    assert [e.data["i"] for e in got] == [0, 1, 2]
    await store.append("a", [NewEvent("E", {"i": 3})])
    async with asyncio.timeout(5):
        later = await anext(iterator)
    assert later.data["i"] == 3
    await iterator.aclose()  # type: ignore[attr-defined]  # async generators have aclose
