"""Recovery: resume every run a dead runner left behind, and say what became of each.

Each run is resumed in its own task, side by side, behind a bulkhead: a run that
cannot be resumed (its workflow no longer imports, its code diverged, its data is
refused, another runner took it) is reported with the reason and never stops the
others. Recovering a run means resuming it until it ends or parks: a run (or one of
its child runs) that waits for a signal or for the dead-letter queue, with nothing
else moving in its journals, is handed back (its runner stops from outside, journals
`RunInterrupted` and releases the lease) and reported `waiting`, not waited on; the
signal that wakes it is for whoever resumes it next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._clock import Clock
from .._errors import StoreUnavailableError
from ._history import TERMINAL, run_stream
from ._runner import RunOutcome

if TYPE_CHECKING:
    from ._runtime import Runtime

logger = logging.getLogger("phalanx")

#: How often a resumed run is looked at for parking, and how long it must stay still.
_POLL_S = 0.2
_SETTLE_S = 0.5


@dataclass(frozen=True)
class Recovery:
    """What `Runtime.recover` did.

    `outcomes` holds each resumed run's outcome, in run order: ended (`completed`,
    `failed`, `cancelled`) or parked (`waiting`). `failures` maps each run that could
    not be resumed to why.
    """

    outcomes: list[RunOutcome] = field(default_factory=list)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every run was resumed and none of them failed or was cancelled."""
        return not self.failures and all(o.ok or o.status == "waiting" for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        """The `phalanx recover --json` form."""
        return {
            "recovered": [o.to_json() for o in self.outcomes],
            "failed": [{"run_id": k, "error": v} for k, v in self.failures.items()],
        }


async def recover(runtime: Runtime) -> Recovery:
    """Resume every unfinished top-level run whose lease has lapsed (see the module)."""
    candidates = []
    for summary in await runtime.runs():
        if summary.status in TERMINAL:
            continue
        if summary.parent_run_id is not None:
            continue  # resumed by its parent, which knows its inputs and awaits it
        lease = await runtime.store.get_lease(run_stream(summary.run_id))
        if lease is not None and lease.owner and lease.expires_at > runtime.clock.now():
            continue
        candidates.append(summary.run_id)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_recover_one(runtime, run_id)) for run_id in candidates]
    recovery = Recovery()
    for run_id, task in zip(candidates, tasks, strict=True):
        outcome = task.result()
        if isinstance(outcome, RunOutcome):
            recovery.outcomes.append(outcome)
        else:
            recovery.failures[run_id] = outcome
    return recovery


async def _recover_one(runtime: Runtime, run_id: str) -> RunOutcome | dict[str, str]:
    async with asyncio.TaskGroup() as group:
        resuming = group.create_task(_resume(runtime, run_id))
        if await until_parked(runtime.clock, resuming, lambda: _tree_look(runtime, run_id)):
            resuming.cancel()  # an infrastructure stop: the runner hands its lease back
    if resuming.cancelled():
        return RunOutcome(run_id, "waiting")
    return resuming.result()


async def _resume(runtime: Runtime, run_id: str) -> RunOutcome | dict[str, str]:
    try:
        return await runtime.resume(run_id)
    # A bulkhead: whatever one run raises is that run's report, never the others' end.
    except Exception as exc:
        logger.warning("recover: run %s was not resumed: %s", run_id, exc)
        return {"type": type(exc).__name__, "message": str(exc)}


#: A look at a run: whether it parks (waits with nothing moving) and what moved.
Look = Callable[[], Awaitable[tuple[bool, tuple[int, ...]]]]


async def _tree_look(runtime: Runtime, run_id: str) -> tuple[bool, tuple[int, ...]]:
    """The run and its child runs: is any waiting, and their versions."""
    tree = [
        s for s in await runtime.runs() if s.run_id == run_id or s.run_id.startswith(f"{run_id}.")
    ]
    waiting = any(s.status == "waiting" for s in tree)
    versions = tuple([await runtime.store.stream_version(run_stream(s.run_id)) for s in tree])
    return waiting, versions


async def until_parked(clock: Clock, resuming: asyncio.Task[Any], look: Look) -> tuple[int, ...]:
    """Wait until the resume ends (empty tuple) or the run parks (what `look` last saw).

    Parked means `look` said "waiting" with the same versions for `_SETTLE_S`.
    """
    still_since: float | None = None
    last: tuple[int, ...] = ()
    while not resuming.done():
        await asyncio.wait([resuming], timeout=_POLL_S)
        if resuming.done():
            return ()
        try:
            waiting, versions = await look()
        except StoreUnavailableError:
            continue  # an outage tells us nothing; the runner rides it out or stops
        now = clock.monotonic()
        if not waiting:
            still_since = None
        elif versions != last or still_since is None:
            # Waiting from now on: also when it starts without a write (a wait on a
            # child run or a timer journals nothing more than what came before it).
            still_since = now
        elif now - still_since >= _SETTLE_S:
            return last or (0,)
        last = versions
    return ()
