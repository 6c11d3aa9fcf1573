"""Conformance: leases hand out strictly increasing epochs and the store fences stale ones."""

from __future__ import annotations

import pytest

from phalanx import FencedError, LeaseHeldError, NewEvent
from phalanx.journal import EventStore, Lease
from phalanx.testing import VirtualClock
from tests.conformance.racing import Racer, race
from tests.conftest import StoreFactory


async def test_acquire_is_exclusive_until_expiry(store_factory: StoreFactory) -> None:
    """A live lease refuses another owner; after its TTL the next owner gets a larger epoch."""
    clock = VirtualClock()
    store = await store_factory(clock=clock)
    first = await store.acquire_lease("run", "a", ttl=10)
    assert first.epoch == 1 and first.owner == "a"
    with pytest.raises(LeaseHeldError) as info:
        await store.acquire_lease("run", "b", ttl=10)
    assert info.value.owner == "a" and info.value.epoch == 1
    again = await store.acquire_lease("run", "a", ttl=10)
    assert again.epoch == 1, "re-acquiring your own live lease keeps its epoch"
    clock.advance(11)
    second = await store.acquire_lease("run", "b", ttl=10)
    assert second.epoch == 2
    assert await store.get_lease("run") == second
    assert await store.get_lease("never") is None


async def test_renew_extends_and_release_frees(store_factory: StoreFactory) -> None:
    """Renewal moves the expiry; release lets the next owner in at once, with epoch+1."""
    clock = VirtualClock()
    store = await store_factory(clock=clock)
    lease = await store.acquire_lease("run", "a", ttl=10)
    clock.advance(8)
    renewed = await store.renew_lease(lease, ttl=10)
    assert renewed.expires_at == pytest.approx(clock.now() + 10)
    clock.advance(8)
    with pytest.raises(LeaseHeldError):
        await store.acquire_lease("run", "b", ttl=10)
    await store.release_lease(renewed)
    nxt = await store.acquire_lease("run", "b", ttl=10)
    assert nxt.epoch == 2


async def test_takeover_fences_the_old_holder(store: EventStore) -> None:
    """After a forced takeover the old epoch can neither append nor renew nor release."""
    old = await store.acquire_lease("run", "a", ttl=60)
    await store.append("run", [NewEvent("Step", {"by": "a"})], epoch=old.epoch)
    new = await store.take_over_lease("run", "b", ttl=60)
    assert new.epoch > old.epoch
    with pytest.raises(FencedError) as info:
        await store.append("run", [NewEvent("Step", {"by": "a"})], epoch=old.epoch)
    assert (info.value.epoch, info.value.current_epoch) == (old.epoch, new.epoch)
    assert "fenced out" in str(info.value)
    with pytest.raises(FencedError):
        await store.renew_lease(old, ttl=60)
    with pytest.raises(FencedError):
        await store.release_lease(old)
    await store.append("run", [NewEvent("Step", {"by": "b"})], epoch=new.epoch)
    events = await store.read_stream("run")
    assert [(e.data["by"], e.epoch) for e in events] == [("a", old.epoch), ("b", new.epoch)]


async def test_leased_stream_requires_an_epoch(store: EventStore) -> None:
    """Appends to a leased stream must carry the epoch; unleased streams refuse one."""
    lease = await store.acquire_lease("run", "a", ttl=60)
    with pytest.raises(FencedError):
        await store.append("run", [NewEvent("E")])
    with pytest.raises(FencedError):
        await store.append("run", [NewEvent("E")], epoch=lease.epoch + 1)
    with pytest.raises(FencedError):
        await store.append("free", [NewEvent("E")], epoch=1)
    assert await store.stream_version("run") == 0
    assert await store.stream_version("free") == 0


async def test_concurrent_takeovers_get_distinct_increasing_epochs(
    store_factory: StoreFactory,
) -> None:
    """Takeovers racing in threads each get their own epoch; only the highest can write."""
    racers, rounds = 5, 3
    store = await store_factory()
    await store.acquire_lease("run", "origin", ttl=60)

    async def take_over(racer: Racer) -> list[Lease]:
        leases = []
        for _ in range(rounds):
            racer.sync()
            leases.append(await racer.store.take_over_lease("run", f"o{racer.index}", ttl=60))
        return leases

    results = await race(store_factory.url, racers, take_over)
    by_round = [sorted(mine[r].epoch for mine in results) for r in range(rounds)]
    # Each round's racers got the next `racers` epochs: the racers interleaved by round.
    assert by_round == [list(range(2 + r * racers, 2 + (r + 1) * racers)) for r in range(rounds)]
    leases = [lease for mine in results for lease in mine]
    highest = by_round[-1][-1]
    current = await store.get_lease("run")
    assert current is not None and current.epoch == highest
    # Exactly one racer can still write: the holder of the highest epoch.
    outcomes = []
    for lease in leases:
        try:
            await store.append("run", [NewEvent("E", {"o": lease.owner})], epoch=lease.epoch)
            outcomes.append(lease.epoch)
        except FencedError:
            pass
    assert outcomes == [highest]


async def test_concurrent_acquirers_only_one_wins(store_factory: StoreFactory) -> None:
    """Of acquirers of a free lease racing in threads, exactly one succeeds, each round."""
    racers, rounds = 6, 3

    async def acquire(racer: Racer) -> list[Lease | LeaseHeldError]:
        results: list[Lease | LeaseHeldError] = []
        for r in range(rounds):
            racer.sync()
            try:
                results.append(await racer.store.acquire_lease(f"run{r}", f"o{racer.index}", 60))
            except LeaseHeldError as exc:
                results.append(exc)
        return results

    results = await race(store_factory.url, racers, acquire)
    for r in range(rounds):
        got = [mine[r] for mine in results]
        winners = [g for g in got if isinstance(g, Lease)]
        assert len(winners) == 1 and winners[0].epoch == 1, got
        assert all(g.owner == winners[0].owner for g in got)
