"""The simulation seams: one timer model on virtual time, a seeded scheduler, inline sync."""

from __future__ import annotations

import asyncio
import threading

import pytest

from phalanx import SimulationStuckError
from phalanx._clock import SystemClock
from phalanx._entropy import SystemEntropy
from phalanx._executor import run_sync
from phalanx.testing import VirtualClock, run_simulated


def test_concurrent_sleepers_overlap_and_time_jumps_only_when_all_wait() -> None:
    """Three tasks sleeping 1, 2 and 3 minutes end at 60, 120 and 180 virtual seconds."""
    clock = SystemClock()

    async def main() -> list[tuple[int, float]]:
        ended: list[tuple[int, float]] = []

        async def nap(minutes: int) -> None:
            await clock.sleep(60 * minutes)
            ended.append((minutes, clock.monotonic()))

        async with asyncio.TaskGroup() as group:
            for minutes in (3, 1, 2):
                group.create_task(nap(minutes))
        return ended

    assert run_simulated(main(), seed=1) == [(1, 60.0), (2, 120.0), (3, 180.0)]


def test_a_clock_timeout_fires_at_its_virtual_instant_among_sleepers() -> None:
    """A 5 s `clock.timeout` around a 100 s sleep raises TimeoutError at virtual t=5."""
    clock = SystemClock()

    async def main() -> tuple[bool, float, float]:
        scope = clock.timeout(5)
        with pytest.raises(TimeoutError):
            async with scope:
                await clock.sleep(100)
        return scope.expired(), clock.monotonic(), clock.now() - 1_700_000_000.0

    assert run_simulated(main()) == (True, 5.0, 5.0)


def test_a_shuffling_loop_orders_ready_tasks_by_its_seed_and_replays_exactly() -> None:
    """With shuffle, one seed is one order, the same on every run; another seed, another."""

    async def main() -> list[int]:
        order: list[int] = []

        async def step(i: int) -> None:
            await asyncio.sleep(0)
            order.append(i)

        async with asyncio.TaskGroup() as group:
            for i in range(8):
                group.create_task(step(i))
        return order

    runs = {
        seed: [run_simulated(main(), seed=seed, shuffle=True) for _ in range(2)]
        for seed in range(6)
    }
    assert all(first == second for first, second in runs.values())
    assert len({tuple(first) for first, _ in runs.values()}) > 1
    assert run_simulated(main(), seed=1) == list(range(8)), "no shuffle: asyncio's FIFO"


def test_a_world_where_every_task_waits_forever_is_reported_stuck() -> None:
    """Waiting on an event nobody sets, with no timer left, raises SimulationStuckError."""

    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(SimulationStuckError, match="no timer is left"):
        run_simulated(main(), seed=3)


def test_entropy_is_drawn_from_the_seed_under_simulation() -> None:
    """SystemEntropy gives the same ids for the same seed, and real ones outside."""
    entropy = SystemEntropy()

    async def main() -> tuple[str, str, float]:
        return entropy.token(4), entropy.uuid(), entropy.random()

    first, again = run_simulated(main(), seed=9), run_simulated(main(), seed=9)
    assert first == again and len(first[0]) == 8
    assert run_simulated(main(), seed=10) != first
    assert entropy.token(4) != entropy.token(4)


def test_sync_functions_run_inline_under_simulation_and_in_a_thread_outside() -> None:
    """The executor seam calls a sync function on the loop's thread only when simulated."""

    async def where() -> bool:
        return await run_sync(lambda: threading.current_thread() is threading.main_thread())

    assert run_simulated(where()) is True
    assert asyncio.run(where()) is False


async def test_a_virtual_clock_timeout_expires_when_its_time_passes() -> None:
    """VirtualClock.timeout expires once a sleep or `advance` passes its deadline."""
    clock = VirtualClock()
    scope = clock.timeout(10)
    with pytest.raises(TimeoutError):
        async with scope:
            await clock.sleep(4)
            clock.advance(7)
            await asyncio.sleep(1)  # real time would not expire it: only the clock's does
    assert scope.expired()
    async with clock.timeout(10) as quiet:
        await clock.sleep(9)
    assert not quiet.expired()
