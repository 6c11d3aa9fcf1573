"""Memory across real processes: a manager SIGKILLed or paused and taken over, two workflows."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.durable.lowlevel import run_stream
from phalanx.journal import EventStore
from phalanx.memory import Memory, memory_stream, open_memory_manager
from tests.conftest import ROOT, StoreFactory

pytestmark = pytest.mark.slow

PHALANX = str(Path(sys.executable).with_name("phalanx"))


def start_manager(url: str, name: str, ttl: float) -> tuple[subprocess.Popen[str], int]:
    """A manager process, once it serves, and its epoch."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.memory.manager_proc", url, name, str(ttl)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("ready"), process.stderr.read() if process.stderr else line
    return process, int(line.split()[1])


async def epochs(store: EventStore, name: str) -> list[int | None]:
    return [e.epoch for e in await store.read_stream(memory_stream(name))]


async def test_a_manager_killed_mid_update_is_taken_over_and_no_acknowledged_write_is_lost(
    store: EventStore, url: str
) -> None:
    """SIGKILL the manager with writes in flight; a larger epoch answers them; all count."""
    old, old_epoch = await asyncio.to_thread(start_manager, url, "kill", 30)
    acknowledged = 0
    killed, finished = asyncio.Event(), asyncio.Event()

    async def client(index: int) -> None:
        nonlocal acknowledged
        counter = Memory(store, "kill", agent=f"c{index}", timeout=90).linearizable()
        for _ in range(12):
            await counter.update("n", lambda n: n + 1, default=0, max_attempts=10_000)
            acknowledged += 1
            if acknowledged == 12:
                killed.set()
            if acknowledged == 48:
                finished.set()

    try:
        async with asyncio.TaskGroup() as group:
            for index in range(4):
                group.create_task(client(index))
            await killed.wait()
            old.send_signal(signal.SIGKILL)  # clients have requests in flight
            await asyncio.to_thread(old.communicate)
            async with open_memory_manager(store, "kill", take_over=True) as new:
                assert new.epoch > old_epoch
                await finished.wait()  # the clients carry on against the new manager
            final = await Memory(store, "kill").linearizable().read("n")
    finally:
        if old.poll() is None:
            old.kill()
            old.communicate()
    assert acknowledged == 48
    assert final.value == 48
    seen = await epochs(store, "kill")
    assert seen == sorted(seen) and seen[0] == old_epoch and seen[-1] == new.epoch


async def test_a_paused_manager_resumed_after_a_take_over_is_fenced_and_writes_nothing(
    store: EventStore, url: str
) -> None:
    """SIGSTOP, take over, SIGCONT: the old epoch's next write is refused by the store."""
    old, old_epoch = await asyncio.to_thread(start_manager, url, "pause", 60)
    try:
        client = Memory(store, "pause", agent="c", timeout=60).linearizable()
        await client.cas("k", "from the old manager", based_on=0)
        old.send_signal(signal.SIGSTOP)
        async with open_memory_manager(store, "pause", take_over=True) as new:
            await client.cas("k", "from the new manager", based_on=1)
            await client.cas("k", "again", based_on=2)
            before = await store.read_stream(memory_stream("pause"))
            old.send_signal(signal.SIGCONT)  # it finds requests it never answered
            out, err = await asyncio.to_thread(old.communicate, timeout=60)
            after = await store.read_stream(memory_stream("pause"))
    finally:
        if old.poll() is None:
            old.kill()
            old.communicate()
    assert old.returncode == 3 and "fenced" in out, err
    assert after == before
    assert [e.epoch for e in after] == [old_epoch, new.epoch, new.epoch]
    assert len({e.data["request"] for e in after}) == len(after)


def run_workflow(url: str, name: str, run_id: str, times: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            PHALANX,
            "run",
            "tests.memory.workflows:incrementer",
            "--input",
            json.dumps({"name": name, "times": times}),
            "--run-id",
            run_id,
            "--store",
            url,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_two_workflow_processes_update_one_memory_through_one_manager(
    store_factory: StoreFactory, url: str
) -> None:
    """Two `phalanx run` processes increment one counter; every increment lands once."""
    store = await store_factory()
    async with open_memory_manager(store, "shared"):
        runs = [run_workflow(url, "shared", f"inc-{i}", 8) for i in range(2)]
        for process in runs:
            _, err = await asyncio.to_thread(process.communicate, timeout=120)
            assert process.returncode == 0, err
        final = await Memory(store, "shared").linearizable().read("n")
    assert final.value == 16
    stream = await store.read_stream(memory_stream("shared"))
    conflicts_in_memory = sum(e.type == "MemoryConflict" for e in stream)
    conflicts_in_runs = 0
    for run_id in ("inc-0", "inc-1"):
        events = await store.read_stream(run_stream(run_id))
        conflicts_in_runs += sum(
            e.type == "MemoryWriteAnswered" and e.data["result"]["kind"] == "conflict"
            for e in events
        )
    assert conflicts_in_runs == conflicts_in_memory
