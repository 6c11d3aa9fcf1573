"""Child runs in a fleet: submitted to the work queue, so any worker may run them.

Under a `Worker`, a run's children (`ctx.child`, fan-out branches, and every pattern's
`lowlevel.run_child`) are not executed in the parent's process: each is submitted to
the parent's queue, one priority above the parent (a started tree finishes before its
root is woken again, and before new work of the parent's own priority), with the
parent's deadline. The parent then waits for the child's ending, which the child's
runner writes to the parent's inbox in the same commit as its own `RunCompleted`,
`RunFailed` or `RunCancelled`. While the parent only waits, its worker hands it back
(see `_activity.py`), and the notice makes it claimable again: a parent holds no slot
while its children run, so one worker with one slot still runs a whole tree.

Cancels go the same way: a cancelled parent asks each open child to cancel through
the child's inbox, and whichever worker holds (or next claims) the child runs its
cleanup. A child already started in a process (before its parent was ever queued)
stays there: it is resumed in-process as before. A run that waits on another run's
queued child (a hierarchy cancelling or adopting a dead node's subtree) gets no notice
(the child tells its own parent): it looks at that run every second instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import RunExistsError
from ..journal import DEFAULT_QUEUE
from ._history import run_stream
from ._runner import Runner, RunOutcome
from ._runtime import _Host
from ._state import Phase

#: How often a run waiting on a queued run that is not its own child looks at it.
_FOREIGN_POLL_S = 1.0


class FleetHost(_Host):
    """A worker's `RunHost`: child runs go to the work queue, not into this process."""

    async def run_child(
        self,
        child_id: str,
        workflow: Callable[..., Awaitable[Any]],
        inputs: dict[str, Any],
        *,
        parent: Runner,
        force: bool,
        deadline_at: float | None,
    ) -> RunOutcome:
        """Submit the child (once) and wait for its ending, handing the slot back."""
        runtime = self._runtime
        if await self.store.stream_version(run_stream(child_id)) == 0:
            # Taken already: a runner of the parent before us submitted it; wait for it.
            with contextlib.suppress(RunExistsError):
                await runtime._submit(
                    workflow,
                    inputs,
                    run_id=child_id,
                    queue=parent.history.queue or DEFAULT_QUEUE,
                    priority=parent.history.priority + 1,
                    parent_run_id=parent.run_id,
                    deadline_at=deadline_at,
                )
        elif (await runtime.history(child_id)).queue is None:
            # Started in a process before its parent was queued: it stays in-process.
            return await super().run_child(
                child_id, workflow, inputs, parent=parent, force=force, deadline_at=deadline_at
            )
        return await self._wait(child_id, parent)

    async def _wait(self, child_id: str, parent: Runner) -> RunOutcome:
        """Until the child ended; a cancel asked for it meanwhile goes to its inbox."""
        runtime = self._runtime
        waiter = parent.child_waiters.arm(child_id)
        try:
            while True:
                # Armed before the look: an ending noticed after it sets the waiter.
                waiter.clear()
                if parent.state.phase in (Phase.DETACHED, Phase.STOPPED):
                    # Handed back (parked, drained) or fenced: the wait resumes with the
                    # run. A cancel its teardown asks for the child (a supervisor closing)
                    # is not the run's: the child runs on.
                    raise asyncio.CancelledError(parent.state.reason)
                reason = parent.state.child_cancels.pop(child_id, None)
                if reason is not None:
                    await runtime.cancel(child_id, reason=reason)
                history = await runtime.history(child_id)
                if history.terminal:
                    return RunOutcome.of(history)
                # Only a run's own child tells it of its end; another run's (a hierarchy
                # cancelling or adopting a dead node's subtree) is looked at every poll.
                poll = None if history.parent_run_id == parent.run_id else _FOREIGN_POLL_S
                wake_at = None if poll is None else self.clock.now() + poll
                with contextlib.suppress(TimeoutError), parent.activity.waiting(wake_at):
                    async with self.clock.timeout(poll):
                        await waiter.wait()
        finally:
            parent.child_waiters.forget(child_id)

    async def end_cancelled(self, run_id: str, *, reason: str, force: bool) -> None:
        """Ask a queued child to cancel; whichever worker runs it journals the end."""
        if (await self.history(run_id)).queue is None:
            await super().end_cancelled(run_id, reason=reason, force=force)
            return
        await self._runtime.cancel(run_id, reason=reason)
