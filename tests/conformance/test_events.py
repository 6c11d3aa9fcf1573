"""Conformance: appending and reading events behaves the same on every store."""

from __future__ import annotations

import math

import pytest

from phalanx import (
    ConcurrencyError,
    CorruptEventError,
    EventDataError,
    NewEvent,
    PayloadTooLargeError,
)
from phalanx.journal import DEFAULT_MAX_PAYLOAD_BYTES, EventStore, Metadata
from tests.conformance.conftest import durable_only
from tests.conformance.racing import Racer, race
from tests.conftest import StoreFactory


async def test_append_assigns_contiguous_seqs_and_increasing_positions(store: EventStore) -> None:
    """Seqs count from 1 per stream; positions increase across streams in append order."""
    r1 = await store.append("a", [NewEvent("A1"), NewEvent("A2")], expected_version=0)
    r2 = await store.append("b", [NewEvent("B1")], expected_version=0)
    r3 = await store.append("a", [NewEvent("A3", {"n": 3})], expected_version=2)
    assert (r1.version, r2.version, r3.version) == (2, 1, 3)
    assert r1.position < r2.position < r3.position
    a = await store.read_stream("a")
    assert [(e.seq, e.type) for e in a] == [(1, "A1"), (2, "A2"), (3, "A3")]
    assert a[2].data == {"n": 3}
    assert a[2].position == r3.position
    assert await store.stream_version("a") == 3
    assert await store.stream_version("missing") == 0
    assert await store.read_stream("missing") == []
    everything = await store.read_all()
    assert [e.type for e in everything] == ["A1", "A2", "B1", "A3"]
    assert [e.position for e in everything] == sorted(e.position for e in everything)
    assert await store.head_position() == r3.position


async def test_read_stream_from_seq_and_limit(store: EventStore) -> None:
    """A stream can be read from any seq, in pages."""
    await store.append("s", [NewEvent("E", {"i": i}) for i in range(10)])
    page = await store.read_stream("s", from_seq=4, limit=3)
    assert [e.data["i"] for e in page] == [3, 4, 5]


async def test_read_all_pages_the_global_log(store: EventStore) -> None:
    """Paging the global log by position visits every event once, in order."""
    for i in range(25):
        await store.append(f"s{i % 3}", [NewEvent("E", {"i": i})])
    seen: list[int] = []
    after = 0
    while page := await store.read_all(after=after, limit=7):
        seen.extend(e.data["i"] for e in page)
        after = page[-1].position
    assert seen == list(range(25))


async def test_metadata_epoch_and_timestamp_are_recorded(store: EventStore) -> None:
    """Metadata round-trips and the store stamps the time."""
    meta = Metadata(run_id="r1", agent_id="ag", parent_id="p", trace_id="t" * 32, span_id="s" * 16)
    await store.append("m", [NewEvent("E", {"x": 1}, meta)])
    [event] = await store.read_stream("m")
    assert event.metadata == meta
    assert event.epoch is None
    assert event.timestamp.tzinfo is not None
    line = event.to_json()
    assert line["metadata"]["run_id"] == "r1" and line["seq"] == 1 and "timestamp" in line


async def test_wrong_expected_version_is_a_typed_conflict(store: EventStore) -> None:
    """A stale expected version raises ConcurrencyError with both versions; nothing written."""
    await store.append("c", [NewEvent("E")], expected_version=0)
    with pytest.raises(ConcurrencyError) as info:
        await store.append("c", [NewEvent("E"), NewEvent("E")], expected_version=0)
    assert info.value.expected_version == 0
    assert info.value.actual_version == 1
    assert info.value.retryable
    assert await store.stream_version("c") == 1


async def test_concurrent_appenders_never_lose_or_duplicate(store_factory: StoreFactory) -> None:
    """Optimistic appenders racing in threads: one wins each round, every event once, in order."""
    writers, rounds = 4, 15

    async def writer(racer: Racer) -> int:
        conflicts = 0
        for i in range(rounds):
            version = await racer.store.stream_version("hot")
            racer.sync()  # every writer read the version before anyone appends
            while True:
                try:
                    await racer.store.append(
                        "hot", [NewEvent("E", {"w": racer.index, "i": i})], expected_version=version
                    )
                    break
                except ConcurrencyError:
                    conflicts += 1
                    version = await racer.store.stream_version("hot")
        return conflicts

    conflicts = await race(store_factory.url, writers, writer)
    events = await (await store_factory()).read_stream("hot")
    assert [e.seq for e in events] == list(range(1, writers * rounds + 1))
    pairs = [(e.data["w"], e.data["i"]) for e in events]
    # Rounds are separated by the barrier, so the writers interleave: one event each a round...
    for i in range(rounds):
        chunk = pairs[i * writers : (i + 1) * writers]
        assert sorted(chunk) == [(w, i) for w in range(writers)], chunk
    # ...and of the writers that read the same version only one can have won at once.
    assert sum(conflicts) >= (writers - 1) * rounds


async def test_not_json_is_refused_before_anything_is_written(store: EventStore) -> None:
    """Unserialisable data, NaN, non-objects and empty types raise EventDataError."""
    bad = [
        NewEvent("E", {"when": object()}),
        NewEvent("E", {"x": math.nan}),
        NewEvent("E", ["not", "an", "object"]),  # type: ignore[arg-type]  # the point of the test
        NewEvent("", {}),
    ]
    for event in bad:
        with pytest.raises(EventDataError) as info:
            await store.append("bad", [NewEvent("Good"), event])
        assert "nothing was written" in str(info.value)
    assert await store.read_stream("bad") == []


async def test_payload_limit(store_factory: StoreFactory) -> None:
    """A 1 MiB payload fits by default; one byte more is refused with sizes in the error."""
    store = await store_factory()
    overhead = len('{"blob":""}')
    fits = NewEvent("Big", {"blob": "x" * (DEFAULT_MAX_PAYLOAD_BYTES - overhead)})
    await store.append("big", [fits])
    [event] = await store.read_stream("big")
    assert len(event.data["blob"]) == DEFAULT_MAX_PAYLOAD_BYTES - overhead
    too_big = NewEvent("Big", {"blob": "x" * (DEFAULT_MAX_PAYLOAD_BYTES - overhead + 1)})
    with pytest.raises(PayloadTooLargeError) as info:
        await store.append("big", [too_big])
    assert info.value.size == DEFAULT_MAX_PAYLOAD_BYTES + 1
    assert info.value.limit == DEFAULT_MAX_PAYLOAD_BYTES
    small = await store_factory(max_payload_bytes=100)
    with pytest.raises(PayloadTooLargeError):
        await small.append("small", [NewEvent("E", {"s": "é" * 60})])
    assert await store.stream_version("big") == 1


async def test_unicode_round_trips(store: EventStore) -> None:
    """Non-ASCII text, emoji and escapes survive exactly, in data and stream ids."""
    data = {"text": 'héllo — 世界 🚀 \u0000 "quoted" \\', "ключ": ["ü", {"ß": "∑"}]}
    await store.append("流-ü", [NewEvent("Unicodé", data)])
    [event] = await store.read_stream("流-ü")
    assert event.data == data
    assert event.type == "Unicodé"


@durable_only
async def test_corrupt_row_names_its_stream_and_seq(store_factory: StoreFactory) -> None:
    """A row whose data is not JSON raises CorruptEventError naming stream and seq."""
    store = await store_factory()
    await store.append("c", [NewEvent("E", {"ok": 1}), NewEvent("E", {"ok": 2})])
    await store_factory.raw_execute("UPDATE events SET data = $1 WHERE seq = $2", "{not json", 2)
    with pytest.raises(CorruptEventError) as info:
        await store.read_stream("c")
    assert (info.value.stream_id, info.value.seq) == ("c", 2)
    assert "'c' seq 2" in str(info.value)
    # The intact part of the stream stays readable.
    assert [e.data for e in await store.read_stream("c", limit=1)] == [{"ok": 1}]


@durable_only
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"ok": 2} trailing', "Extra data"),
        ('{"ok": 2}{"ok": 3}', "Extra data"),
        ("[1, 2]", "not an object"),
        ('"text"', "not an object"),
        ("", "Expecting value"),
    ],
)
async def test_data_that_is_not_one_json_object_is_corrupt(
    store_factory: StoreFactory, text: str, reason: str
) -> None:
    """Stored data with extra text after the object, or no object, is a corrupt row."""
    store = await store_factory()
    await store.append("c", [NewEvent("E", {"ok": 1}), NewEvent("E", {"ok": 2})])
    await store_factory.raw_execute("UPDATE events SET data = $1 WHERE seq = $2", text, 2)
    with pytest.raises(CorruptEventError, match=reason) as info:
        await store.read_stream("c")
    assert (info.value.stream_id, info.value.seq) == ("c", 2)


@durable_only
async def test_data_written_by_hand_with_spaces_reads_back(store_factory: StoreFactory) -> None:
    """Stored JSON with whitespace around and inside it (as a person writes it) is read."""
    store = await store_factory()
    await store.append("c", [NewEvent("E", {"ok": 1})])
    await store_factory.raw_execute(
        "UPDATE events SET data = $1 WHERE seq = $2", ' \n{ "ok" : [1, 2] }\n ', 1
    )
    [event] = await store.read_stream("c")
    assert event.data == {"ok": [1, 2]}


async def test_each_event_keeps_its_own_metadata_in_one_read(store: EventStore) -> None:
    """A read of events written under different metadata gives each event its own."""
    first = Metadata(run_id="r", trace_id="a" * 32, span_id="b" * 16)
    second = Metadata(run_id="r", trace_id="c" * 32, span_id="d" * 16)
    await store.append(
        "m",
        [
            NewEvent("E", {"i": 1}, first),
            NewEvent("E", {"i": 2}, second),
            NewEvent("E", {"i": 3}, first),
            NewEvent("E", {"i": 4}),
        ],
    )
    events = await store.read_stream("m")
    assert [e.metadata for e in events] == [first, second, first, Metadata()]


async def test_read_indexed_filters_the_global_log(store: EventStore) -> None:
    """Indexed events are found by type, in position order, paged; others are not."""
    for i in range(6):
        await store.append(
            f"r{i}",
            [
                NewEvent("Started", {"i": i}, indexed=True),
                NewEvent("Noise"),
                NewEvent("Started", {"unindexed": i}),
            ],
        )
        if i % 2:
            await store.append(f"r{i}", [NewEvent("Done", {"i": i}, indexed=True)])
    page = await store.read_indexed(["Started", "Done"], limit=4)
    assert [(e.type, e.data["i"]) for e in page] == [
        ("Started", 0),
        ("Started", 1),
        ("Done", 1),
        ("Started", 2),
    ]
    rest = await store.read_indexed(["Started", "Done"], after=page[-1].position)
    assert len(rest) == 5 and all("unindexed" not in e.data for e in rest)
    assert await store.read_indexed([]) == []
