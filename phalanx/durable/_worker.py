"""A worker: claims submitted runs from the store's work queue and runs them.

Any number of workers, on any number of machines, share one store. A worker claims
runs with the queue's lease-taking claim (`journal._queue`), runs each like `resume`
does (replay, then carry on), and keeps up to `concurrency` runs at once. Each run's
lease is renewed by its own runner; a worker that dies or is cut off simply stops
renewing, and once the lease expires by the store's clock another worker claims the
run with a larger epoch, which fences the old one out if it ever comes back.

A run that parks (only waits: for a signal, a durable timer, or child runs, which
are submitted to the queue for any worker, see `_fleet_host.py`; no step in flight,
nothing moving) is handed back: its runner journals `RunInterrupted` and releases the
lease, and the queue leaves it until its inbox grows (a signal, a cancel, a child's
ending) or the store's clock passes its earliest wake-up (a timer, a signal's timeout,
its deadline), so a waiting run holds no worker slot.

`shutdown()` drains: no new claims; running runs get `grace` seconds to end, then are
handed back the same way (journaled, lease released, other workers woken).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._errors import FencedError, LeaseLostError, PhalanxError, StoreUnavailableError
from ..journal import DEFAULT_QUEUE, Claim, WorkerInfo, WorkQueue, open_queue
from ._fleet_host import FleetHost
from ._history import TERMINAL
from ._recover import until_parked
from ._runner import RunOutcome

if TYPE_CHECKING:
    from ._runtime import Runtime

logger = logging.getLogger("phalanx")

#: The shortest time between two registry heartbeats of one worker.
_MIN_BEAT_GAP = 0.5


class Worker:
    """Claims and runs submitted runs until `shutdown()`.

    Example::

        async with phalanx.open_runtime("postgresql://db/app") as runtime:
            worker = phalanx.Worker(runtime, queues=["default"], concurrency=8)
            await worker.run()          # until worker.shutdown() (e.g. on SIGTERM)

    Its worker id is the runtime's owner, so a run's lease names the worker holding it.
    `poll` bounds how long new work may wait unseen when no wake-up arrives (SQLite,
    or a lost LISTEN connection); `grace` is how long a drain waits for running runs.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        concurrency: int = 4,
        poll: float = 1.0,
        grace: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.runtime = runtime
        self.queues = tuple(queues) or (DEFAULT_QUEUE,)
        self.concurrency = concurrency
        self.poll = poll
        self.grace = runtime.lease_ttl if grace is None else grace
        self.worker_id = runtime.owner
        self.heartbeat_every = max(0.2, runtime.lease_ttl / 3)
        self._queue: WorkQueue | None = None
        self._host = FleetHost(runtime)
        self._active: dict[str, asyncio.Task[None]] = {}
        self._skip: set[str] = set()
        self._stopping = asyncio.Event()
        self._freed = asyncio.Event()
        #: Set when the runs held changed: the registry hears of it soon.
        self._changed = asyncio.Event()
        self._unavailable = False
        #: Runs this worker ended (completed, failed or cancelled), for reports.
        self.finished = 0

    @property
    def running(self) -> int:
        """How many runs this worker holds now."""
        return len(self._active)

    def shutdown(self) -> None:
        """Start draining (idempotent): no new claims, then `run()` returns."""
        self._stopping.set()

    async def run(self) -> None:
        """Claim and run work until `shutdown()`, then drain and deregister."""
        work = open_queue(self.runtime.store)
        await work.open()
        self._queue = work
        try:
            async with asyncio.TaskGroup() as group:
                beat = group.create_task(self._heartbeat(work))
                await self._claim_until_stopped(work, group)
                await self._drain(work)
                beat.cancel()
        finally:
            try:
                async with asyncio.timeout(self.heartbeat_every * 3):
                    await work.deregister(self.worker_id)
            except (PhalanxError, TimeoutError) as exc:
                logger.info("worker %s: not deregistered (%s); it ages out", self.worker_id, exc)
            await work.close()

    # -- claiming --------------------------------------------------------------------

    async def _claim_until_stopped(self, work: WorkQueue, group: asyncio.TaskGroup) -> None:
        runtime = self.runtime
        while not self._stopping.is_set():
            free = self.concurrency - len(self._active)
            claims: list[Claim] = []
            if free > 0:
                try:
                    claims = await work.claim(
                        self.worker_id,
                        self.queues,
                        free,
                        runtime.lease_ttl,
                        # Our own runs too: a renewal late under load must not make us
                        # claim (and so fence) a run we are still running.
                        skip=[*self._skip, *self._active],
                    )
                    self._store_back()
                except StoreUnavailableError as exc:
                    self._store_gone(exc)
            for claim in claims:
                logger.info("worker %s: claimed run %s", self.worker_id, claim.run_id)
                self._active[claim.run_id] = group.create_task(self._drive(work, claim))
                self._changed.set()
            if claims and len(claims) == free:
                continue  # maybe more; the loop waits for a free slot next
            await self._idle(work, full=free <= 0 or len(claims) == free)

    async def _idle(self, work: WorkQueue, *, full: bool) -> None:
        """Until stopping, a slot frees, or (with room) a wake-up or the poll."""
        self._freed.clear()
        async with asyncio.TaskGroup() as group:
            waits: list[asyncio.Task[object]] = [
                group.create_task(self._stopping.wait()),
                group.create_task(self._freed.wait()),
            ]
            if not full:
                waits.append(group.create_task(work.wait(self.poll)))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()

    def _store_gone(self, exc: StoreUnavailableError) -> None:
        if not self._unavailable:
            self._unavailable = True
            logger.warning("worker %s: store unavailable (%s); retrying", self.worker_id, exc)

    def _store_back(self) -> None:
        if self._unavailable:
            self._unavailable = False
            logger.warning("worker %s: store back; claiming again", self.worker_id)

    # -- running one run -------------------------------------------------------------

    async def _drive(self, work: WorkQueue, claim: Claim) -> None:
        run_id = claim.run_id
        try:
            await self._run_one(work, claim)
        except (FencedError, LeaseLostError) as exc:
            # Taken over (we were paused or cut off): it is the new holder's now.
            logger.warning("worker %s: stopped run %s: %s", self.worker_id, run_id, exc)
        except StoreUnavailableError as exc:
            # Its lease lapses if we cannot reach the store; then any worker claims it
            # again, and one that finds it ended only marks it done.
            logger.warning("worker %s: left run %s: %s", self.worker_id, run_id, exc)
        except PhalanxError as exc:
            # Cannot run here (the workflow does not import, the code diverged...): leave
            # it to workers that can, and never claim it again in this process.
            logger.warning("worker %s: cannot run %s here: %s", self.worker_id, run_id, exc)
            self._skip.add(run_id)
            await self._release(claim)
        finally:
            self._active.pop(run_id, None)
            self._freed.set()
            self._changed.set()

    async def _run_one(self, work: WorkQueue, claim: Claim) -> None:
        runtime = self.runtime
        run_id = claim.run_id

        async def resume() -> RunOutcome | Exception:
            # Returned, not raised: a TaskGroup would wrap it in an ExceptionGroup.
            try:
                return await runtime._resume(
                    run_id, force=False, workflow=None, parent=None, lease=claim.lease,
                    host=self._host,
                )  # fmt: skip
            except Exception as exc:
                return exc

        look = _Look(self._host, run_id)
        async with asyncio.TaskGroup() as group:
            resuming = group.create_task(resume())
            if await until_parked(runtime.clock, resuming, look):
                resuming.cancel()  # the runner journals RunInterrupted, releases the lease
        if resuming.cancelled():
            wake_in = None if look.wake_at is None else max(0.0, look.wake_at - runtime.clock.now())
            await work.park(run_id, look.inbox, wake_in)
            logger.info("worker %s: run %s only waits; handed back", self.worker_id, run_id)
            return
        outcome = resuming.result()
        if isinstance(outcome, Exception):
            raise outcome
        if outcome.status in TERMINAL:
            await work.finish(run_id)
            self.finished += 1
            logger.info("worker %s: run %s %s", self.worker_id, run_id, outcome.status)

    async def _release(self, claim: Claim) -> None:
        try:
            await self.runtime.store.release_lease(claim.lease)
        except (FencedError, StoreUnavailableError) as exc:
            logger.info("worker %s: lease of %s not released (%s)", self.worker_id, claim, exc)

    # -- heartbeat and drain ---------------------------------------------------------

    async def _heartbeat(self, work: WorkQueue) -> None:
        """Beat every `heartbeat_every`, and soon after the number of runs held changed.

        At most one beat per `_MIN_BEAT_GAP`, so a stream of short runs does not turn
        into a stream of registry writes.
        """
        clock = self.runtime.clock
        info = WorkerInfo(self.worker_id, socket.gethostname(), os.getpid(), self.queues, 0, 0.0)
        while True:
            self._changed.clear()
            try:
                await work.heartbeat(
                    WorkerInfo(info.worker_id, info.host, info.pid, info.queues,
                               len(self._active), 0.0),
                    ttl=self.heartbeat_every * 3,
                )  # fmt: skip
            except StoreUnavailableError as exc:
                self._store_gone(exc)
            gap = min(_MIN_BEAT_GAP, self.heartbeat_every)
            await clock.sleep(gap)
            with contextlib.suppress(TimeoutError):
                async with clock.timeout(self.heartbeat_every - gap):
                    await self._changed.wait()

    async def _drain(self, work: WorkQueue) -> None:
        running = list(self._active.values())
        if not running:
            return
        logger.warning(
            "worker %s: draining %d run(s), up to %.1fs", self.worker_id, len(running), self.grace
        )
        with contextlib.suppress(TimeoutError):
            async with self.runtime.clock.timeout(self.grace):
                await asyncio.wait(running)
        pending = [task for task in running if not task.done()]
        for task in pending:
            task.cancel()  # each runner journals RunInterrupted and releases its lease
        if pending:
            await asyncio.wait(pending)
            with contextlib.suppress(StoreUnavailableError):
                await work.notify()  # handed back: let the other workers know now


class _Look:
    """What a worker watches of a run it executes: whether it only waits, what moved.

    Also keeps what parking needs: the inbox version the runner had read (a later
    event makes the run claimable again) and the earliest time a wait ends by itself.
    """

    def __init__(self, host: FleetHost, run_id: str) -> None:
        self._host = host
        self._run_id = run_id
        self.inbox = 0
        self.wake_at: float | None = None

    async def __call__(self) -> tuple[bool, tuple[int, ...]]:
        runner = self._host.executing.get(self._run_id)
        if runner is None:
            return False, ()  # not executing yet (or any more)
        self.inbox = len(runner.inbox)
        self.wake_at = runner.activity.wake_at(runner.history.deadline_at)
        return runner.activity.idle, (runner.journal.writes, self.inbox)
