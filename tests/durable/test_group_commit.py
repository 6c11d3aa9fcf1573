"""A run's appends made at once share the run's next append; each keeps its own outcome."""

from __future__ import annotations

import asyncio

import pytest

import phalanx
from phalanx import FencedError, PayloadTooLargeError
from phalanx.durable._journal import RunJournal
from tests.conftest import StoreFactory


async def pen_on(store: phalanx.EventStore) -> RunJournal:
    """A run's journal holding a fresh lease on `run:r`."""
    lease = await store.acquire_lease("run:r", "me", ttl=30)
    return RunJournal(store, lease, 0, phalanx.Metadata(run_id="r"))


async def written(store: phalanx.EventStore) -> list[tuple[str, object]]:
    return [(e.type, e.data.get("i")) for e in await store.read_stream("run:r")]


async def test_appends_made_at_once_by_one_run_share_its_next_append(
    store: phalanx.EventStore,
) -> None:
    """Fifty branches appending at once: two appends (one in flight, then the rest), in order."""
    pen = await pen_on(store)

    await asyncio.gather(*(pen.append("E", {"i": i}) for i in range(50)))

    assert await written(store) == [("E", i) for i in range(50)]
    assert pen.writes == 2
    assert pen.version == 50


async def test_data_refused_in_a_shared_append_is_refused_to_its_caller_alone(
    store_factory: StoreFactory,
) -> None:
    """A too-large event queued with good ones fails its caller alone; the others are written."""
    store = await store_factory(max_payload_bytes=2000)
    pen = await pen_on(store)

    outcomes = await asyncio.gather(
        pen.append("E", {"i": 0}),
        pen.append("E", {"i": 1}),
        pen.append("E", {"i": 2, "blob": "x" * 5000}),
        pen.append("E", {"i": 3}),
        return_exceptions=True,
    )

    assert [type(o) for o in outcomes] == [type(None), type(None), PayloadTooLargeError, type(None)]
    assert await written(store) == [("E", 0), ("E", 1), ("E", 3)]
    await pen.append("After", {"i": 4})  # the pen carries on
    assert (await written(store))[-1] == ("After", 4)


async def test_a_queued_append_cancelled_before_it_was_taken_writes_nothing(
    store: phalanx.EventStore,
) -> None:
    """A caller cancelled while its events wait for the append in flight leaves no trace."""
    pen = await pen_on(store)
    first = asyncio.create_task(pen.append("E", {"i": 0}))
    dropped = asyncio.create_task(pen.append("E", {"i": 1}))
    kept = asyncio.create_task(pen.append("E", {"i": 2}))
    await asyncio.sleep(0)  # the first is in flight, the others queued behind it
    dropped.cancel()

    await asyncio.gather(first, kept)
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert await written(store) == [("E", 0), ("E", 2)]


async def test_appends_queued_behind_a_fenced_one_are_all_fenced(
    store: phalanx.EventStore,
) -> None:
    """After a take-over, every append made at once is refused, and none is written."""
    pen = await pen_on(store)
    await pen.append("E", {"i": 0})
    await store.take_over_lease("run:r", "other", ttl=30)

    outcomes = await asyncio.gather(
        *(pen.append("E", {"i": i}) for i in range(1, 6)), return_exceptions=True
    )

    assert all(isinstance(o, FencedError) for o in outcomes), outcomes
    assert await written(store) == [("E", 0)]
