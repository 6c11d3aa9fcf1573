"""Linearizability of compare-and-set memory, checked on recorded concurrent histories.

Clients in threads and in processes read and compare-and-set one register through the
memory's manager; hypothesis draws how many, what each does and the pauses between;
the Wing & Gong checker must find every recorded history linearizable. A manager
with a planted bug (its write path skips the version check) must be caught.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.journal import store_from_url
from phalanx.memory import Memory, MemoryManager, MemoryState, Request, open_memory_manager
from phalanx.memory._state import WRITTEN
from tests.conftest import ROOT
from tests.memory.linearizability import Op, check, run_client

_names = itertools.count()

client_plans = st.lists(
    st.tuples(
        st.lists(st.sampled_from(["read", "cas", "cas"]), min_size=2, max_size=5),
        st.sampled_from([0.0, 0.001, 0.004]),
    ),
    min_size=2,
    max_size=4,
)


def t(invoked: int, returned: int) -> dict[str, int]:
    return {"invoked": invoked, "returned": returned}


def test_the_checker_accepts_a_legal_history_and_rejects_a_lost_update() -> None:
    """Overlapping CAS calls: one winner is linearizable, two winners from one base are not."""
    legal = [
        Op("a", "cas", **t(0, 10), result=["ok", 2], based_on=1, value="a"),
        Op("b", "cas", **t(1, 11), result=["conflict", 2], based_on=1, value="b"),
        Op("c", "read", **t(12, 13), result=["value", "a", 2]),
    ]
    assert check(legal, ("init", 1))
    lost = [
        Op("a", "cas", **t(0, 10), result=["ok", 2], based_on=1, value="a"),
        Op("b", "cas", **t(1, 11), result=["ok", 3], based_on=1, value="b"),
    ]
    assert not check(lost, ("init", 1))
    stale_read = [
        Op("a", "cas", **t(0, 1), result=["ok", 2], based_on=1, value="a"),
        Op("c", "read", **t(2, 3), result=["value", "init", 1]),
    ]
    assert not check(stale_read, ("init", 1))


class SkipsTheVersionCheck(MemoryManager):
    """The planted bug: a write path that never compares versions (last writer wins)."""

    def decide(self, state: MemoryState, request: Request) -> tuple[str, int]:
        return WRITTEN, state.version_of(request.key)


async def record_threads(
    url: str, plans: list[tuple[list[str], float]], manager_class: type[MemoryManager]
) -> list[Op]:
    """Run each plan in a thread of its own (own loop, own connection); the whole history."""
    name = f"lin-{next(_names)}"
    store = store_from_url(url)
    await store.open()
    manager = manager_class(store, name, poll=0.005)
    try:
        await manager.start(take_over=False)
        await Memory(store, name, manager=manager).linearizable().cas("x", "init", based_on=0)
        histories: list[list[Op]] = [[] for _ in plans]

        def client(index: int) -> None:
            plan, pause = plans[index]
            histories[index] = asyncio.run(
                run_client(url, name, f"t{index}", plan, [pause] * len(plan))
            )

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(plans))]
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(manager.serve())
            for thread in threads:
                thread.start()
            for thread in threads:
                await asyncio.to_thread(thread.join)
            serving.cancel()
        return [op for history in histories for op in history]
    finally:
        await manager.release()
        await store.close()


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=client_plans)
def test_histories_of_concurrent_threads_are_linearizable(
    url: str, plans: list[tuple[list[str], float]]
) -> None:
    """Threads racing reads and CAS writes leave a linearizable history."""
    history = asyncio.run(record_threads(url, plans, MemoryManager))
    assert len(history) == sum(len(p) for p, _ in plans)
    assert check(history, ("init", 1)), history


def test_the_checker_catches_a_manager_that_skips_the_version_check(url: str) -> None:
    """With the planted bug two CAS writers from one version both win: not linearizable."""
    plans = [(["read", "cas", "cas", "cas"], 0.0) for _ in range(4)]
    caught = False
    for _ in range(5):  # each round races four writers from one version; one suffices
        history = asyncio.run(record_threads(url, plans, SkipsTheVersionCheck))
        if not check(history, ("init", 1)):
            caught = True
            break
    assert caught, "the planted lost update was never detected"


def spawn_client(
    url: str, name: str, index: int, plan: list[str], pause: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.memory.linearizability",
            url,
            name,
            f"p{index}",
            json.dumps(plan),
            json.dumps([pause] * len(plan)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def record_processes(url: str, plans: list[tuple[list[str], float]]) -> list[Op]:
    """Each plan in a process of its own, against a manager in this one."""
    name = f"lin-{next(_names)}"
    store = store_from_url(url)
    await store.open()
    try:
        async with open_memory_manager(store, name, poll=0.005) as manager:
            await Memory(store, name, manager=manager).linearizable().cas("x", "init", based_on=0)
            clients = [
                spawn_client(url, name, i, plan, pause) for i, (plan, pause) in enumerate(plans)
            ]
            outputs: list[Any] = []
            for process in clients:
                out, err = await asyncio.to_thread(process.communicate, timeout=120)
                assert process.returncode == 0, err
                outputs.extend(json.loads(out))
        return [Op.from_json(op) for op in outputs]
    finally:
        await store.close()


@pytest.mark.slow
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=client_plans)
def test_histories_of_concurrent_processes_are_linearizable(
    url: str, plans: list[tuple[list[str], float]]
) -> None:
    """Processes racing reads and CAS writes through the request stream: linearizable."""
    history = asyncio.run(record_processes(url, plans))
    assert len(history) == sum(len(p) for p, _ in plans)
    assert check(history, ("init", 1)), history
