"""The work queue: runs submitted for workers, claimed under their leases.

A queue row names a run's stream and its inbox; whether the run is free to claim is
decided from the lease row (the same `leases` table and the same `decide_acquire` as
every other lease), so a claim *is* a lease acquisition and fencing works unchanged:
a worker that was SIGSTOPped or cut off and whose run was claimed by another is
refused by the store on its next write.

Claiming, on PostgreSQL (`_pg_queue.py`): one transaction picks the best free rows
(`priority` first, then submission order) with `SELECT ... FOR UPDATE SKIP LOCKED`, so
concurrent workers never wait on each other's candidates, then takes each run's lease
row `FOR UPDATE` and decides the acquisition with the *server's* clock. Lease expiry
therefore never trusts one worker's clock: a worker whose clock runs 30 s ahead does
not see other workers' live leases as expired. On SQLite (`_sqlite_queue.py`) the same
protocol runs inside `BEGIN IMMEDIATE` (one writer at a time is SQLite's own rule),
on the one machine's clock.

A queue may have a global limit (`set_limit`): at most that many of its runs hold a
live lease at once, whichever workers hold them; claimers of a limited queue take
turns on its limit row, count its live leases and claim only what is left.

Rate limits per key (`model:NAME`, `tool:NAME`) are token buckets in the same store,
shared by every worker: see `_buckets.py`.

A run is claimable when it is not done, its `RunStarted` is in the journal, its lease
is free or expired, and, if a worker parked it (it only waits, so it holds no worker
slot), its inbox has grown since (a signal, a cancel, a child run's ending) or the
store's clock passed the wake-up time it was parked with (a durable timer, a timeout,
its deadline). That time is stored as the store's clock at parking plus the delay the
run had left, so it never depends on one worker's clock. Workers register themselves in `workers`
with a heartbeat; a row whose heartbeat is older than its own ttl is not listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._errors import ConfigError
from ._buckets import RateLimit
from ._events import Lease, NewEvent
from ._store import EventStore

#: The queue a run goes to when none is named.
DEFAULT_QUEUE = "default"


@dataclass(frozen=True, slots=True)
class Claim:
    """A run a worker claimed: its queue row and the lease it now holds."""

    run_id: str
    queue: str
    lease: Lease


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker's registry row (`phalanx workers`)."""

    worker_id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    runs: int
    last_seen: float

    def to_json(self) -> dict[str, Any]:
        """The `phalanx workers --json` form."""
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues),
            "runs": self.runs,
            "last_seen": self.last_seen,
        }


@dataclass(frozen=True, slots=True)
class Submission:
    """A run to record for the workers: its streams, queue, priority and first event."""

    run_id: str
    stream_id: str
    inbox_id: str
    queue: str
    priority: int
    started: NewEvent


@runtime_checkable
class WorkQueue(Protocol):
    """Submitted runs and the workers that claim them, kept in the journal's store."""

    async def open(self) -> None:
        """Create the queue's tables if missing; idempotent."""
        ...

    async def close(self) -> None:
        """Stop listening for wake-ups; idempotent (the store stays open)."""
        ...

    async def submit(self, submission: Submission) -> None:
        """Record the run and its queue row; the run's stream must be empty.

        Raises:
            ConcurrencyError: the run's stream already has events (the id is taken).
            FencedError: the run's stream is leased (the id is taken).
        """
        ...

    async def claim(
        self, owner: str, queues: Sequence[str], limit: int, ttl: float, *, skip: Sequence[str] = ()
    ) -> list[Claim]:
        """Lease up to `limit` claimable runs of `queues` for `owner`, best first.

        `skip` names runs this worker will not take (say, their workflow does not
        import here).
        """
        ...

    async def finish(self, run_id: str) -> None:
        """Mark the run done: it ended, no worker claims it again."""
        ...

    async def set_limit(self, queue: str, max_running: int | None) -> None:
        """Allow at most `max_running` runs of `queue` to run at once (None: no limit)."""
        ...

    async def limits(self) -> dict[str, int]:
        """Every queue's limit."""
        ...

    async def set_rate(self, key: str, rate: float | None, burst: float = 1.0) -> None:
        """Declare `key`'s token bucket (`rate` a second, `burst` saved); None clears it.

        Raises:
            ValueError: see `check_rate`.
        """
        ...

    async def rates(self) -> list[RateLimit]:
        """Every declared rate limit, by key."""
        ...

    async def take_token(self, key: str) -> float | None:
        """Take one of `key`'s tokens: 0 if taken, else seconds until one is there.

        None when no limit is declared for `key` (nothing was written).
        """
        ...

    async def park(self, run_id: str, inbox_version: int, wake_in: float | None = None) -> None:
        """Leave the run until its inbox grows past `inbox_version`, or `wake_in` passes.

        The inbox grows with a signal, a cancel or a child run's ending; `wake_in` is
        seconds on the store's clock (a timer, a timeout, the run's deadline).
        """
        ...

    async def heartbeat(self, worker: WorkerInfo, ttl: float) -> None:
        """Register or refresh `worker`; it is listed for `ttl` seconds from now."""
        ...

    async def deregister(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """Live workers (heartbeat within their ttl), oldest registration first."""
        ...

    async def notify(self) -> None:
        """Wake every worker now (work was submitted or handed back)."""
        ...

    async def wait(self, timeout: float) -> None:
        """Return when woken by `notify` (anywhere) or after `timeout` seconds."""
        ...


def within_limits(
    candidates: Sequence[tuple[str, str, str]], room: dict[str, int]
) -> list[tuple[str, str, str]]:
    """The (run_id, stream_id, queue) candidates that fit their queue's room, in order.

    `room` holds, for each limited queue, how many more of its runs may run now;
    queues not in it are unlimited.
    """
    left = dict(room)
    kept = []
    for candidate in candidates:
        queue = candidate[2]
        if queue in left:
            if left[queue] <= 0:
                continue
            left[queue] -= 1
        kept.append(candidate)
    return kept


def check_limit(max_running: int | None) -> None:
    """Refuse a limit that would stop a queue for good or means nothing."""
    if max_running is not None and max_running < 1:
        raise ValueError(f"a queue's limit must be at least 1 (or None), got {max_running}")


def open_queue(store: EventStore) -> WorkQueue:
    """The work queue kept in `store` (not yet opened).

    Raises:
        ConfigError: a store workers cannot share (only SQLite and PostgreSQL can).
    """
    from ._sqlite import SqliteEventStore

    if isinstance(store, SqliteEventStore):
        from ._sqlite_queue import SqliteWorkQueue

        return SqliteWorkQueue(store)
    if type(store).__name__ == "PostgresEventStore":
        from ._pg_queue import PostgresWorkQueue
        from ._postgres import PostgresEventStore

        if isinstance(store, PostgresEventStore):
            return PostgresWorkQueue(store)
    inner = getattr(store, "inner", None)
    if isinstance(inner, EventStore):  # a wrapper (FaultyStore): the queue of what it wraps
        return open_queue(inner)
    raise ConfigError(
        setting="store URL",
        value=store.url,
        reason="it cannot hold a work queue: workers need a store they share, "
        "sqlite:///FILE on one machine or postgresql://... across machines",
    )
