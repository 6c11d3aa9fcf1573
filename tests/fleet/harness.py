"""Driving a fleet of workers (real `phalanx worker` processes, or in this process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import phalanx
from phalanx import store_from_url
from tests.chaos.harness import PHALANX, Proc, Workspace, poll_until
from tests.chaos.workflows import read_ledger

STEPS = "tests.fleet.workflows:steps"


class Fleet:
    """Runs submitted to one store, the workers spawned on it, and each run's ledger."""

    def __init__(self, ws: Workspace, lease_ttl: float) -> None:
        self.ws = ws
        self.lease_ttl = lease_ttl
        self.run_ids: list[str] = []

    def ledger(self, run_id: str) -> str:
        return str(self.ws.root / f"{run_id}.ledger")

    def submit(self, run_id: str, count: int, seconds: float) -> None:
        """Submit `steps` with `count` steps of `seconds` each, its ledger its own file."""
        inputs = {"ledger": self.ledger(run_id), "count": count, "seconds": seconds}
        done = self.ws.cli("submit", STEPS, "--input", json.dumps(inputs), "--run-id", run_id)
        assert done.returncode == 0, done.stderr
        self.run_ids.append(run_id)

    def worker(self, label: str, *args: str, prefix: tuple[str, ...] = ()) -> Proc:
        """Start `phalanx worker` (inside `prefix`, e.g. `ip netns exec NS`)."""
        argv = [*prefix, PHALANX, "worker", "--lease-ttl", str(self.lease_ttl), "--poll", "0.2"]
        return self.ws.spawn(*argv, *args, "--store", self.ws.url, label=label)

    def journals(self) -> dict[str, list[dict[str, Any]]]:
        """Every submitted run's events, read in this process."""

        async def read() -> dict[str, list[dict[str, Any]]]:
            store = store_from_url(self.ws.url)
            await store.open()
            try:
                return {
                    r: [e.to_json() for e in await store.read_stream(f"run:{r}")]
                    for r in self.run_ids
                }
            finally:
                await store.close()

        return asyncio.run(read())

    def effects(self) -> int:
        """Side effects recorded so far, over every run."""
        return sum(len(read_ledger(self.ledger(r))) for r in self.run_ids)

    def wait_effects(self, n: int, timeout: float = 60) -> None:
        poll_until(lambda: self.effects() >= n, timeout, f"{n} side effects", interval=0.05)

    def wait_completed(self, timeout: float) -> dict[str, list[dict[str, Any]]]:
        """Until every run journaled RunCompleted; their journals."""

        def done() -> dict[str, list[dict[str, Any]]] | None:
            journals = self.journals()
            ended = all(any(e["type"] == "RunCompleted" for e in j) for j in journals.values())
            return journals if ended else None

        found: dict[str, list[dict[str, Any]]] = poll_until(
            done, timeout, "every run to complete", interval=0.25
        )
        return found

    def check_exactly_once(self, journals: dict[str, list[dict[str, Any]]]) -> None:
        """Each step completed once; only a step in flight at a takeover ran twice, same key."""
        for run_id, events in journals.items():
            completed = Counter(e["data"]["name"] for e in events if e["type"] == "StepCompleted")
            assert completed and set(completed.values()) == {1}, (run_id, completed)
            ledger = read_ledger(self.ledger(run_id))
            by_step = Counter(line["step"] for line in ledger)
            assert set(by_step) == set(completed), (run_id, by_step)
            for step, n in by_step.items():
                keys = {line["key"] for line in ledger if line["step"] == step}
                assert len(keys) == 1, (run_id, step, keys)  # a repeat reuses the key
                if n > 1:
                    # It ran again: only a step in flight when its holder was taken over
                    # does, once more, and the journal's one completion is the new
                    # holder's (a quick step's start may be journaled with its end only).
                    done_by = [
                        e["epoch"]
                        for e in events
                        if e["type"] == "StepCompleted" and e["data"]["name"] == step
                    ]
                    first_epoch = min(e["epoch"] for e in events if e["epoch"])
                    assert n == 2 and done_by[0] > first_epoch, (run_id, step, n, done_by)

    def check_fenced_after_takeover(self, journals: dict[str, list[dict[str, Any]]]) -> None:
        """In each journal, once a newer epoch wrote, no older epoch wrote again."""
        for run_id, events in journals.items():
            epochs = [e["epoch"] for e in events if e["epoch"] is not None]
            assert epochs == sorted(epochs), (run_id, epochs)


def workers_listed(ws: Workspace) -> list[dict[str, Any]]:
    """`phalanx workers --json`."""
    done = ws.cli("workers", "--json")
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed


@contextlib.asynccontextmanager
async def working(runtime: phalanx.Runtime, **options: object) -> AsyncIterator[phalanx.Worker]:
    """A worker running in the background until the block ends, then drained."""
    worker = phalanx.Worker(runtime, poll=0.05, **options)  # type: ignore[arg-type]  # test kwargs
    async with asyncio.TaskGroup() as group:
        group.create_task(worker.run())
        try:
            yield worker
        finally:
            worker.shutdown()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `check()` is true (within a minute)."""
    async with asyncio.timeout(60):
        while True:  # polling the store: workers change it
            if await check():
                return
            await asyncio.sleep(0.02)


async def until_status(runtime: phalanx.Runtime, run_id: str, *statuses: str) -> str:
    """Wait until the run's status is one of `statuses`; return it."""
    async with asyncio.timeout(60):
        while True:  # polling the store: a worker changes the status
            status = (await runtime.history(run_id)).status
            if status in statuses:
                return status
            await asyncio.sleep(0.02)
