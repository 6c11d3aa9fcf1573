"""The fault seam itself, in-process: each fault fires exactly where it is aimed, once."""

from __future__ import annotations

import asyncio

import pytest

from phalanx import NewEvent, store_from_url
from phalanx.journal import StreamAppend
from phalanx.testing import FaultyClock, FaultyStore, VirtualClock


class Crash(BaseException):
    """Stands in for SIGKILL so the test survives the fault."""


def crash() -> None:
    raise Crash


def events(*types: str) -> list[NewEvent]:
    return [NewEvent(t, {}) for t in types]


async def test_kill_before_append_loses_the_write(url: str) -> None:
    """kill_before_append counts only matching run-stream appends; the write never lands."""
    async with FaultyStore(
        store_from_url(url), kill_before_append=2, event_type="StepCompleted", crash=crash
    ) as store:
        await store.append("run:a", events("StepCompleted"))
        await store.append("run:a", events("StepStarted"))  # other type: not counted
        await store.append("run:a:inbox", events("StepCompleted"))  # inbox: not counted
        await store.append("other", events("StepCompleted"))  # not a run: not counted
        with pytest.raises(Crash):
            await store.append("run:a", events("ValueRecorded", "StepCompleted"))
        assert [e.type for e in await store.read_stream("run:a")] == [
            "StepCompleted",
            "StepStarted",
        ]
        await store.append("run:a", events("StepCompleted"))  # fires once only
        assert store.appends == 3


async def test_kill_after_append_keeps_the_write(url: str) -> None:
    """kill_after_append crashes once the store has committed the append."""
    async with FaultyStore(store_from_url(url), kill_after_append=1, crash=crash) as store:
        with pytest.raises(Crash):
            await store.append("run:a", events("RunStarted"))
        assert [e.type for e in await store.read_stream("run:a")] == ["RunStarted"]


async def test_append_many_counts_once_and_crashes_around_the_whole_batch(url: str) -> None:
    """A multi-stream append counts as one append when any stream counts; all or none lands."""
    parts = [StreamAppend("other", events("Moved")), StreamAppend("run:a", events("X"))]
    async with FaultyStore(store_from_url(url), kill_before_append=1, crash=crash) as store:
        await store.append_many([StreamAppend("other", events("Moved"))])  # not counted
        with pytest.raises(Crash):
            await store.append_many(parts)
        assert await store.read_stream("run:a") == []
        assert store.appends == 1
    async with FaultyStore(store_from_url(url), kill_after_append=1, crash=crash) as store:
        with pytest.raises(Crash):
            await store.append_many(parts)
        assert [e.type for e in await store.read_stream("run:a")] == ["X"]


async def test_kill_on_renew_after_the_renewal(url: str) -> None:
    """kill_on_renew crashes on the nth renewal, after the store extended the lease."""
    clock = VirtualClock()
    inner = store_from_url(url, clock=clock)
    async with FaultyStore(inner, kill_on_renew=2, crash=crash) as store:
        lease = await store.acquire_lease("run:a", "me", ttl=10)
        lease = await store.renew_lease(lease, ttl=10)
        clock.advance(5)
        with pytest.raises(Crash):
            await store.renew_lease(lease, ttl=10)
        current = await store.get_lease("run:a")
        assert current is not None and current.expires_at == clock.now() + 10


async def test_faulty_clock_crashes_inside_the_nth_sleep_in_its_window() -> None:
    """Only sleeps inside the window count; the chosen one crashes halfway through."""
    inner = VirtualClock()
    clock = FaultyClock(inner, kill_in_sleep=2, longer_than=1, shorter_than=5, crash=crash)
    start = inner.now()
    await clock.sleep(0.5)  # too short
    await clock.sleep(2)  # first in the window
    await clock.sleep(10)  # too long
    with pytest.raises(Crash):
        await clock.sleep(4)
    assert inner.now() - start == pytest.approx(0.5 + 2 + 10 + 2)
    await asyncio.wait_for(clock.sleep(4), 1)  # fires once only
    assert clock.sleeps == 3 and clock.now() == inner.now()
