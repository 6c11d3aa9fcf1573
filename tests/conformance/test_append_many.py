"""Conformance: an atomic append across several streams, all of it or none, on every store."""

from __future__ import annotations

import asyncio
import threading

import pytest

from phalanx import ConcurrencyError, EventDataError, FencedError, NewEvent
from phalanx.journal import EventStore, StreamAppend
from tests.conformance.racing import Racer, race
from tests.conftest import StoreFactory


async def test_append_many_writes_every_stream_with_its_own_seqs(store: EventStore) -> None:
    """Each stream gets its own contiguous seqs; positions follow the batch's order."""
    await store.append("a", [NewEvent("A0")])
    results = await store.append_many(
        [
            StreamAppend("a", [NewEvent("A1"), NewEvent("A2")], expected_version=1),
            StreamAppend("b", [NewEvent("B1", {"n": 1})], expected_version=0),
        ]
    )
    assert [r.version for r in results] == [3, 1]
    assert results[0].position < results[1].position
    a = await store.read_stream("a")
    b = await store.read_stream("b")
    assert [(e.seq, e.type) for e in a] == [(1, "A0"), (2, "A1"), (3, "A2")]
    assert [(e.seq, e.type, e.data) for e in b] == [(1, "B1", {"n": 1})]
    assert b[0].position == results[1].position == await store.head_position()
    assert [e.type for e in await store.read_all()] == ["A0", "A1", "A2", "B1"]


async def test_a_conflict_on_one_stream_writes_nothing_on_any(store: EventStore) -> None:
    """A stale expected_version on the last stream rolls back the streams before it."""
    await store.append("b", [NewEvent("B1")])
    head = await store.head_position()
    with pytest.raises(ConcurrencyError) as caught:
        await store.append_many(
            [
                StreamAppend("a", [NewEvent("A1")], expected_version=0),
                StreamAppend("c", [NewEvent("C1")]),
                StreamAppend("b", [NewEvent("B2")], expected_version=0),
            ]
        )
    assert (caught.value.stream_id, caught.value.actual_version) == ("b", 1)
    assert await store.stream_version("a") == 0
    assert await store.stream_version("c") == 0
    assert await store.stream_version("b") == 1
    assert await store.head_position() == head
    # The store is still writable afterwards, at the versions it really has.
    await store.append_many([StreamAppend("b", [NewEvent("B2")], expected_version=1)])
    assert await store.stream_version("b") == 2


async def test_fencing_is_checked_per_stream_and_refuses_the_whole_batch(
    store: EventStore,
) -> None:
    """Each stream carries its own epoch; one stale epoch writes nothing anywhere."""
    old = await store.acquire_lease("run", "w1", 30)
    new = await store.take_over_lease("run", "w2", 30)
    with pytest.raises(FencedError) as caught:
        await store.append_many(
            [
                StreamAppend("position", [NewEvent("Moved")]),
                StreamAppend("run", [NewEvent("Stale")], epoch=old.epoch),
            ]
        )
    assert (caught.value.stream_id, caught.value.current_epoch) == ("run", new.epoch)
    assert await store.head_position() == 0
    with pytest.raises(FencedError):  # a leased stream needs its epoch, as in `append`
        await store.append_many([StreamAppend("run", [NewEvent("NoEpoch")])])
    await store.append_many(
        [
            StreamAppend("position", [NewEvent("Moved")], expected_version=0),
            StreamAppend("run", [NewEvent("Fresh")], epoch=new.epoch),
        ]
    )
    run = await store.read_stream("run")
    assert [(e.type, e.epoch) for e in run] == [("Fresh", new.epoch)]
    assert [e.epoch for e in await store.read_stream("position")] == [None]


async def test_bad_batches_are_refused_before_anything_is_written(store: EventStore) -> None:
    """No streams, an empty stream, a stream twice or bad data: a typed error, no write."""
    with pytest.raises(ValueError, match="at least one stream"):
        await store.append_many([])
    with pytest.raises(ValueError, match="has no events"):
        await store.append_many([StreamAppend("a", [NewEvent("A")]), StreamAppend("b", [])])
    with pytest.raises(ValueError, match="appears twice"):
        await store.append_many(
            [StreamAppend("a", [NewEvent("A")]), StreamAppend("a", [NewEvent("B")])]
        )
    with pytest.raises(EventDataError) as caught:
        await store.append_many(
            [
                StreamAppend("a", [NewEvent("A")]),
                StreamAppend("b", [NewEvent("B", {"x": {1, 2}})]),
            ]
        )
    assert caught.value.stream_id == "b"
    assert await store.head_position() == 0


async def test_racing_batches_commit_whole_or_not_at_all(store_factory: StoreFactory) -> None:
    """Threads race batches over shared streams while a reader watches: no half batch, ever."""
    writers, rounds = 4, 12
    stop = threading.Event()
    torn: list[str] = []

    async def writer(racer: Racer) -> int:
        wins = 0
        for i in range(rounds):
            shared = await racer.store.stream_version("shared")
            ledger = await racer.store.stream_version("ledger")
            racer.sync()  # every writer read the same versions before anyone appends
            tag = {"w": racer.index, "i": i}
            try:
                await racer.store.append_many(
                    [
                        StreamAppend(f"own-{racer.index}", [NewEvent("Mine", tag)]),
                        StreamAppend("shared", [NewEvent("Won", tag)], expected_version=shared),
                        StreamAppend("ledger", [NewEvent("Booked", tag)], expected_version=ledger),
                    ]
                )
                wins += 1
            except ConcurrencyError:
                pass
            racer.sync()  # the round is over for everyone before the next read
        return wins

    async def watch() -> int:
        """Read the whole log over and over while the writers race; count the looks."""
        reader = await store_factory()
        looks = 0
        while not stop.is_set():
            seen: dict[tuple[int, int], list[str]] = {}
            for event in await reader.read_all(limit=100_000):
                seen.setdefault((event.data["w"], event.data["i"]), []).append(event.type)
            whole = ["Booked", "Mine", "Won"]
            torn.extend(f"{k}: {v}" for k, v in seen.items() if sorted(v) != whole)
            looks += 1
            await asyncio.sleep(0.001)
        return looks

    async with asyncio.TaskGroup() as group:
        watcher = group.create_task(watch())
        try:
            wins = await race(store_factory.url, writers, writer)
        finally:
            stop.set()
    looks = watcher.result()
    assert torn == []
    assert looks > 1
    # Exactly one writer won each round, and the losers left no trace on their own stream.
    assert sum(wins) == rounds
    store = await store_factory()
    shared = [(e.data["w"], e.data["i"]) for e in await store.read_stream("shared")]
    ledger = [(e.data["w"], e.data["i"]) for e in await store.read_stream("ledger")]
    own = []
    for w in range(writers):
        own += [(e.data["w"], e.data["i"]) for e in await store.read_stream(f"own-{w}")]
    assert shared == ledger
    assert [i for _, i in shared] == list(range(rounds))
    assert sorted(own) == sorted(shared)
