"""Conformance: appends made at once may share a commit, and each keeps its own outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from phalanx import ConcurrencyError, FencedError, NewEvent
from phalanx.journal import EventStore, SqliteEventStore, StreamAppend
from tests.conftest import StoreFactory

#: A store that counts its commits (the ones that group them).
Counting = SqliteEventStore


def commits(store: EventStore) -> int | None:
    """Transactions the store committed, if it counts them (group-committing stores)."""
    return store.commits if isinstance(store, Counting) else None


async def test_a_refused_append_leaves_the_others_of_its_batch_written(
    store: EventStore,
) -> None:
    """Conflicted and fenced appends made with good ones fail alone; the others commit."""
    await store.append("taken", [NewEvent("First")], expected_version=0)
    lease = await store.acquire_lease("leased", "me", 30.0)
    newer = await store.take_over_lease("leased", "other", 30.0)
    before = commits(store)

    outcomes = await asyncio.gather(
        store.append("good-1", [NewEvent("A"), NewEvent("B")], expected_version=0),
        store.append("taken", [NewEvent("Stale")], expected_version=0),
        store.append("leased", [NewEvent("Stale")], epoch=lease.epoch),
        store.append_many(
            [
                StreamAppend("many-1", [NewEvent("M")], expected_version=0),
                StreamAppend("taken", [NewEvent("M")], expected_version=0),
            ]
        ),
        store.append("good-2", [NewEvent("C")], expected_version=0),
        store.append("leased", [NewEvent("Current")], epoch=newer.epoch),
        return_exceptions=True,
    )

    good_1, stale, fenced, many, good_2, current = outcomes
    assert isinstance(stale, ConcurrencyError)
    assert (stale.stream_id, stale.expected_version, stale.actual_version) == ("taken", 0, 1)
    assert isinstance(fenced, FencedError)
    assert isinstance(many, ConcurrencyError) and many.stream_id == "taken"
    assert not isinstance(good_1, BaseException) and good_1.version == 2
    assert not isinstance(good_2, BaseException) and good_2.version == 1
    assert not isinstance(current, BaseException) and current.version == 1
    assert [e.type for e in await store.read_stream("good-1")] == ["A", "B"]
    assert [e.type for e in await store.read_stream("good-2")] == ["C"]
    assert [e.type for e in await store.read_stream("taken")] == ["First"]
    assert [e.type for e in await store.read_stream("leased")] == ["Current"]
    assert await store.stream_version("many-1") == 0  # all of append_many, or none
    if before is not None:
        assert commits(store) == before + 1  # they really were one batch


async def test_appends_made_at_once_share_commits_and_read_back(store: EventStore) -> None:
    """100 runs appending at once: each reads its own events back, positions all distinct."""
    before = commits(store)

    async def run(i: int) -> list[Any]:
        results = []
        for n in range(3):
            result = await store.append(f"s-{i}", [NewEvent("E", {"n": n})], expected_version=n)
            # Read-your-writes: an acknowledged append is there for its writer at once.
            assert [e.data["n"] for e in await store.read_stream(f"s-{i}")] == list(range(n + 1))
            results.append(result)
        return results

    results = [r for rs in await asyncio.gather(*(run(i) for i in range(100))) for r in rs]

    assert len({r.position for r in results}) == 300
    assert len(await store.read_all(limit=1000)) == 300
    if before is not None:
        # Three rounds of 100: a commit per round, not one per append (a busy
        # database or a slow task may split a round; far fewer than 300 all the same).
        assert commits(store) - before <= 30


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("which", ["first", "second"])
async def test_an_append_cancelled_before_its_commit_writes_nothing(
    store_factory: StoreFactory, which: str
) -> None:
    """A caller cancelled while its append waits for the tick's commit leaves no trace."""
    store = await store_factory()
    appends = {
        name: asyncio.create_task(store.append(name, [NewEvent("E")], expected_version=0))
        for name in (["dropped", "kept"] if which == "first" else ["kept", "dropped"])
    }
    kept, dropped = appends["kept"], appends["dropped"]
    await asyncio.sleep(0)  # both are queued for the tick's commit, not yet committed
    dropped.cancel()

    assert (await kept).version == 1
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert await store.stream_version("dropped") == 0
    assert await store.stream_version("kept") == 1
