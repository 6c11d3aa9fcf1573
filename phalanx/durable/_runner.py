"""Executing one run: the workflow task, its lease keeper and its inbox watcher.

The three live in one TaskGroup, so none outlives the run. The outcome is journaled
by the runner, not by workflow code: `RunCompleted`, `RunFailed` or `RunCancelled`.
Two kinds of stop are kept apart: a cancel *requested* through the run's inbox is an
outcome (cleanup runs, `RunCancelled` is journaled, children are cancelled); losing
the lease is not (the runner writes nothing more and raises `FencedError`), and
neither is cancellation from outside (Ctrl-C): the run stays resumable, and the runner
hands its lease back (journaling `RunInterrupted`, which changes no status) so the
next `resume` need not wait for the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, assert_never

from .._errors import (
    EventDataError,
    FencedError,
    LeaseLostError,
    NonDeterminismError,
    PhalanxError,
    StoreUnavailableError,
)
from ..journal import Event, Lease, Metadata
from . import _spans as spans
from ._activity import Activity
from ._child_endings import ChildWaiters, ending_notice
from ._context import WorkflowContext
from ._history import RunHistory, RunStatus, inbox_stream
from ._journal import RunJournal
from ._serde import error_to_json
from ._state import Cancelled, Completed, Diverged, Ending, Failed, Phase, RunState, Stopped
from ._step_rules import round_trip

if TYPE_CHECKING:
    from ._host import RunHost

logger = logging.getLogger("phalanx")


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: its status, and its result or error."""

    run_id: str
    status: RunStatus
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        """The `phalanx run --json` form (the traceback left out)."""
        error = None
        if self.error is not None:
            error = {k: v for k, v in self.error.items() if k != "traceback"}
        return {"run_id": self.run_id, "status": self.status, "result": self.result, "error": error}

    @classmethod
    def of(cls, history: RunHistory) -> RunOutcome:
        """The outcome a folded history records."""
        return cls(history.run_id, history.status, history.result, history.error)


class Runner:
    """Runs (or resumes) one workflow run while holding its lease.

    The runner is the only writer of the run's `RunState`: the context, the journal and
    the lowlevel API read it, and ask the runner for every change.
    """

    def __init__(
        self,
        host: RunHost,
        history: RunHistory,
        lease: Lease,
        fn: Callable[..., Awaitable[Any]],
        *,
        force: bool,
        parent: Runner | None = None,
        resumed: bool = False,
    ) -> None:
        self.host = host
        self.parent = parent
        self.state = RunState(lease)
        self.state.open_children = {
            str(o.events[0].data["child_run_id"])
            for o in history.operations.values()
            if o.kind == "child" and o.last("ChildCompleted", "ChildFailed") is None
        }
        self.last_activity = host.clock.monotonic()
        self._writes_seen = 0
        self.run_id = history.run_id
        self.history = history
        self.fn = fn
        self.force = force
        metadata = Metadata(run_id=self.run_id, parent_id=history.parent_run_id)
        self.journal = RunJournal(
            host.store, lease, history.version, metadata, clock=host.clock, hold_s=host.start_hold
        )
        self.ctx = WorkflowContext(
            self, history, self.journal, host.clock, host.entropy, resumed=resumed
        )
        self._inbox: list[Event] = []
        #: Set when the inbox grew or a child run ended; waits on the inbox clear it.
        self.inbox_changed = asyncio.Event()
        #: Its waits and work in flight (a worker parks a run that only waits).
        self.activity = Activity()
        #: Woken when a queued child run's ending reaches the inbox.
        self.child_waiters = ChildWaiters()
        self._consumed: set[int] = {
            int(e.data["inbox_seq"]) for e in history.events if e.type == "SignalReceived"
        }
        self._task: asyncio.Task[Ending] | None = None
        #: Whether this runner wrote the run's `RunStarted` itself (not a resume).
        self._fresh = not resumed

    # -- signals and cancellation, fed by the inbox watcher --------------------------

    @property
    def inbox(self) -> Sequence[Event]:
        """Everything that arrived in the run's inbox so far, oldest first."""
        return self._inbox

    def take_signal(self, name: str) -> Event | None:
        """Consume the oldest undelivered signal called `name`, if one arrived."""
        for event in self._inbox:
            named = event.type == "SignalSent" and event.data.get("name") == name
            if named and event.seq not in self._consumed:
                self._consumed.add(event.seq)
                return event
        return None

    def request_cancel(self, reason: str) -> None:
        """Cancel this run as if asked through its inbox: cleanup runs, RunCancelled."""
        if self.state.phase is not Phase.RUNNING:
            return
        self.state.phase, self.state.reason = Phase.CANCELLING, reason
        # Children first, so each ends cancelled itself (cleanup, RunCancelled) rather
        # than being torn down with our task and left `running`.
        self._cancel_live_children(reason)
        if self._task is not None:
            self._task.cancel()

    def _stop(self, error: BaseException) -> None:
        """Stop writing at once: fenced out, or the lease could not be renewed."""
        if self.state.phase is not Phase.RUNNING:
            return
        # The workflow's cleanup must write nothing (an expired lease's epoch is still
        # accepted until someone takes over): the state now refuses every write.
        self.state.phase, self.state.reason, self.state.error = Phase.STOPPED, str(error), error
        self.journal.close(str(error))
        self.child_waiters.wake_all()
        if self._task is not None:
            self._task.cancel()

    def _cancel_live_children(self, reason: str) -> None:
        for child in list(self.state.children.values()):
            child.request_cancel(f"parent cancelled: {reason}")

    def cancel_child(self, child_id: str, reason: str) -> None:
        """Cancel a child run of this run, now or as soon as it starts executing."""
        child = self.state.children.get(child_id)
        if child is not None:
            child.request_cancel(reason)
        else:
            self.state.child_cancels[child_id] = reason
            self.child_waiters.wake(child_id)  # a queued child's waiter passes it on

    def attach_child(self, child: Runner) -> str | None:
        """Register a child runner executing now; return a cancel that awaited it."""
        self.state.children[child.run_id] = child
        return self.state.child_cancels.pop(child.run_id, None)

    def detach_child(self, child: Runner) -> None:
        """Forget a child runner that stopped executing."""
        self.state.children.pop(child.run_id, None)

    def take_pending_cancel(self) -> str | None:
        """Hand the pending cancel to the operation about to raise it (once)."""
        reason, self.state.pending_cancel = self.state.pending_cancel, None
        task = self._task
        if reason is not None and task is not None and task is not asyncio.current_task():
            task.cancel()  # raised in a sub-task of the workflow: stop the workflow too
        return reason

    def touch(self) -> None:
        """Record progress now (a heartbeat)."""
        self.last_activity = self.host.clock.monotonic()

    def silence(self) -> float:
        """Seconds since this run last made progress (a journal write or a heartbeat)."""
        if self.journal.writes != self._writes_seen:
            self._writes_seen = self.journal.writes
            self.touch()
        return self.host.clock.monotonic() - self.last_activity

    async def _read_inbox(self) -> None:
        fresh = await self.host.store.read_stream(
            inbox_stream(self.run_id), from_seq=len(self._inbox) + 1
        )
        if not fresh:
            return
        self._inbox.extend(fresh)
        for event in fresh:
            if event.type == "CancelRequested":
                self.request_cancel(str(event.data.get("reason") or "cancel requested"))
            self.child_waiters.read(event)
        self.inbox_changed.set()

    async def _watch_inbox(self) -> None:
        while True:
            await self.host.clock.sleep(self.host.inbox_poll)
            try:
                await self._read_inbox()
            except StoreUnavailableError as exc:
                # The journal reports an outage once; polling on is all there is to do.
                logger.debug("run %s: cannot read its inbox (%s); will retry", self.run_id, exc)

    async def _write_held(self) -> None:
        try:
            await self.journal.write_held()
        except PhalanxError as exc:
            # Only for visibility: the step runs on, as it would have with its start
            # written before it, and its end's write meets the same refusal (fenced,
            # lease lost...), which stops the run as any write's refusal does.
            logger.debug("run %s: a held step start was not written early: %s", self.run_id, exc)

    async def _keep_lease(self) -> None:
        ttl = self.host.lease_ttl
        clock = self.host.clock
        while True:
            await clock.sleep(ttl / 3)
            try:
                # Rides out an outage shorter than the lease (see RunJournal).
                self.state.lease = await self.journal.renew(ttl)
            except (FencedError, LeaseLostError) as exc:
                self._stop(exc)
                return

    # -- the run ---------------------------------------------------------------------

    async def run_child(
        self,
        child_id: str,
        fn: Callable[..., Awaitable[Any]],
        inputs: dict[str, Any],
        *,
        deadline_at: float | None = None,
    ) -> RunOutcome:
        """Start or resume a child run of this run, in this process; wait for its outcome.

        The child's deadline is the earlier of `deadline_at` and this run's own. Never
        raises for a failed or cancelled child, but re-raises this run's own cancel if
        the child ended because of it.
        """
        own = self.history.deadline_at
        if own is not None:
            deadline_at = own if deadline_at is None else min(own, deadline_at)
        self.state.open_children.add(child_id)
        outcome = await self.host.run_child(
            child_id, fn, inputs, parent=self, force=self.force, deadline_at=deadline_at
        )
        self.state.open_children.discard(child_id)
        reason = self.state.cancelling
        if reason is not None:
            # The child ended cancelled because we are being cancelled; the cancel that
            # reached us was absorbed on the way, so deliver it to the workflow again.
            raise asyncio.CancelledError(reason)
        return outcome

    async def _enforce_deadline(self, deadline_at: float) -> None:
        clock = self.host.clock
        await clock.sleep(deadline_at - clock.now())
        self.request_cancel("deadline exceeded")

    async def _deliver_pending_cancel(self) -> None:
        # A cancel pending at the start (requested while no runner ran the run, or a
        # deadline already past) is raised by the first operation the journal cannot
        # answer. A workflow that, caught up, awaits anything else (an outside future,
        # a hang, a fan-out resuming its branches) would never see it, and the run would
        # never end: deliver it to the task once replay is over.
        # It waits one poll first even with nothing to replay: a step in flight at the
        # crash may have left no trace (its start rides in its completion's commit), and
        # the workflow's first operations must get the chance to raise it themselves.
        await self.host.clock.sleep(self.host.inbox_poll)
        while self.state.pending_cancel is not None and self.ctx.is_replaying:
            await self.host.clock.sleep(self.host.inbox_poll)
        reason = self.state.pending_cancel
        if reason is None or self._task is None:
            return  # delivered by an operation
        self.state.pending_cancel = None
        self._cancel_live_children(reason)
        self._task.cancel()

    async def _call_workflow(self) -> Ending:
        try:
            result = await self.fn(self.ctx, **self.history.inputs)
        except asyncio.CancelledError:
            if self.state.phase is Phase.CANCELLING:
                return Cancelled(str(self.state.reason))
            raise
        except NonDeterminismError as exc:
            return Diverged(exc)
        except Exception as exc:
            outage = _outage(exc)
            if outage is not None:
                # The store went away under the workflow (starting a child, say): that
                # is no failure of the workflow's. Stop, resumable, as a lost lease does.
                return Stopped(outage)
            return Failed(exc)
        leftover = self.ctx._unclaimed_operations()
        if leftover:
            return Diverged(
                NonDeterminismError(
                    run_id=self.run_id,
                    position=leftover[0].op,
                    expected=leftover[0].describe(),
                    actual="the end of the workflow",
                )
            )
        return Completed(result)

    def _cancel_at_start(self, reason: str) -> None:
        """A cancel that must stop the run before any new work (see `execute`)."""
        self.request_cancel(reason)
        self.state.pending_cancel = reason

    async def execute(self) -> RunOutcome:
        """Run the workflow to an outcome, journal it, release the lease.

        Raises:
            FencedError: another runner took the run over; nothing more was written.
            LeaseLostError: the lease could not be renewed in time; same effect.
            NonDeterminismError: replay diverged from the journal (the run stays
                resumable once the code is restored).
        """
        self.host.executing[self.run_id] = self
        try:
            return await self._execute_watched()
        finally:
            if self.host.executing.get(self.run_id) is self:
                del self.host.executing[self.run_id]

    async def _execute_watched(self) -> RunOutcome:
        if not self._fresh:
            # A run just started cannot have been signalled or cancelled before its
            # `RunStarted` (both need the run to exist): whatever arrives from now on,
            # the watcher reads. Only a resumed run has an inbox to catch up with first.
            await self._read_inbox()
        # Requested while no runner ran it (a crashed run cancelled, then resumed):
        # replay catches up, and the first new operation raises the cancel.
        self.state.pending_cancel = self.state.cancelling
        if self.parent is not None:
            pending = self.parent.attach_child(self)
            if pending is not None:
                self._cancel_at_start(pending)
        deadline_at = self.history.deadline_at
        if (
            self.state.pending_cancel is None
            and deadline_at is not None
            and self.host.clock.now() >= deadline_at
        ):
            # Resumed (or started) past its deadline: stop like a pending cancel, before
            # any new work. The deadline timer alone would fire only once the workflow
            # task ran, after it had started re-running the step in flight at the crash
            # (e.g. a model call nobody is waiting for any more).
            self._cancel_at_start("deadline exceeded")
        try:
            with spans.run_span(self.history, self.state.lease, force=self.force) as span:
                # Every event this runner writes carries its run span's context, so a
                # resume (anywhere) continues the trace.
                self.journal.metadata = spans.stamp(self.journal.metadata, span)
                return spans.ended(span, await self._execute())
        finally:
            if self.parent is not None:
                self.parent.detach_child(self)

    async def _execute(self) -> RunOutcome:
        try:
            return await self._execute_in_group()
        except asyncio.CancelledError:
            if self.state.phase is Phase.DETACHED:
                await self._hand_back()
            raise

    async def _hand_back(self) -> None:
        """Give the lease back after a cancel from outside, saying so in the journal.

        Bounded and best effort: a store that does not answer in time leaves the lease
        to expire, as a crash would. The workflow's own writes stopped before this one.
        """
        try:
            async with self.host.clock.timeout(self.host.lease_ttl / 3):
                await self.journal.write_last(
                    "RunInterrupted", {"reason": "the runner was stopped from outside"}
                )
                await self.host.store.release_lease(self.state.lease)
        except (PhalanxError, TimeoutError) as exc:
            logger.warning(
                "run %s: could not hand its lease back (%s); it will expire", self.run_id, exc
            )

    async def _execute_in_group(self) -> RunOutcome:
        async with asyncio.TaskGroup() as group:
            self._task = group.create_task(self._call_workflow())
            keeper = group.create_task(self._keep_lease())
            watcher = group.create_task(self._watch_inbox())
            holder = group.create_task(self._write_held())
            timer = None
            if self.history.deadline_at is not None:
                timer = group.create_task(self._enforce_deadline(self.history.deadline_at))
            deliverer = None
            if self.state.pending_cancel is not None:
                deliverer = group.create_task(self._deliver_pending_cancel())
            try:
                ending = await asyncio.shield(self._task)
            except asyncio.CancelledError:
                if self.state.phase is Phase.CANCELLING:
                    # Our parent's cancellation reached us too; ours is already under
                    # way: let the workflow's cleanup finish, then journal the outcome.
                    ending = await self._cancelled_ending()
                elif self.state.phase is Phase.RUNNING:
                    # Cancelled from outside: leave the run resumable. The workflow is
                    # cancelled next (by the TaskGroup) and its cleanup must journal
                    # nothing, or replay would find that cleanup where the code, resumed,
                    # asks for the next step: a divergence that strands the run.
                    self.state.phase = Phase.DETACHED
                    self.state.reason = "the runner was cancelled from outside"
                    self.journal.close(self.state.reason)
                    self.child_waiters.wake_all()  # waits on queued children end too
                    raise
                else:
                    ending = self._stopped()
            except BaseException:
                if self.state.phase is not Phase.STOPPED:
                    raise  # the process is going down (SystemExit, ...): stay resumable
                ending = self._stopped()
            finally:
                keeper.cancel()
                watcher.cancel()
                holder.cancel()
                if timer is not None:
                    timer.cancel()
                if deliverer is not None:
                    deliverer.cancel()
        return await self._finish(ending)

    async def _cancelled_ending(self) -> Ending:
        """The workflow's ending once our own cancel is under way."""
        task = self._task
        assert task is not None
        try:
            return await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            # Cancelled before its first line ran: the cancel can win the race with the
            # task's start (the seeded scheduler found it, a child resumed past its
            # deadline), so `_call_workflow` never made it an ending. Ours all the same.
            return Cancelled(str(self.state.reason))

    def _stopped(self) -> Stopped:
        error = self.state.error
        if error is None:
            error = FencedError(
                stream_id=self.journal.stream_id, epoch=self.state.epoch, current_epoch=None
            )
        return Stopped(error)

    async def _finish(self, ending: Ending) -> RunOutcome:
        if self.journal.fenced is not None:
            raise self.journal.fenced
        if self.journal.lost is not None:
            raise self.journal.lost
        match ending:
            case Completed(result=value):
                try:
                    result = round_trip(self.journal.stream_id, "RunCompleted", value)
                    # The store may refuse a JSON result too (too large, a lone surrogate).
                    await self.journal.append(
                        "RunCompleted",
                        {"result": result},
                        tell=ending_notice(self.history, "completed"),
                    )
                except EventDataError as exc:
                    return await self._fail(exc)
                await self._release()
                return RunOutcome(self.run_id, "completed", result)
            case Failed(error=failure):
                return await self._fail(failure)
            case Cancelled(reason=reason):
                error = {"type": "Cancelled", "message": reason}
                await self._cancel_children(reason)
                await self.journal.append(
                    "RunCancelled",
                    {"reason": reason, "error": error},
                    tell=ending_notice(self.history, "cancelled"),
                )
                await self._release()
                return RunOutcome(self.run_id, "cancelled", None, error)
            case Diverged(error=diverged):
                await self._append_quietly("ReplayDiverged", {"error": error_to_json(diverged)})
                await self._release()
                raise diverged
            case Stopped(error=stopped):
                raise stopped
            case _:
                assert_never(ending)

    async def _fail(self, failure: Exception) -> RunOutcome:
        error = error_to_json(failure)
        await self.journal.append(
            "RunFailed", {"error": error}, tell=ending_notice(self.history, "failed")
        )
        await self._release()
        return RunOutcome(self.run_id, "failed", None, error)

    async def _cancel_children(self, reason: str) -> None:
        # A child running in this process was stopped with us (resumable, not ended),
        # and one a crash left behind has no runner at all: request the cancel, then
        # resume each here so it runs its cleanup and journals RunCancelled. None is
        # orphaned in `running` or `waiting`.
        for child_id in sorted(self.state.open_children):
            try:
                await self.host.end_cancelled(
                    child_id, reason=f"parent cancelled: {reason}", force=self.force
                )
            except PhalanxError as exc:
                logger.warning("run %s: could not cancel child %s: %s", self.run_id, child_id, exc)

    async def _append_quietly(self, event_type: str, data: dict[str, Any]) -> None:
        try:
            await self.journal.append(event_type, data)
        except (FencedError, StoreUnavailableError):
            logger.warning("run %s: could not journal %s", self.run_id, event_type)

    async def _release(self) -> None:
        try:
            await self.host.store.release_lease(self.state.lease)
        except (FencedError, StoreUnavailableError):
            logger.warning("run %s: could not release its lease; it will expire", self.run_id)


def _outage(error: BaseException) -> StoreUnavailableError | None:
    """The store outage `error` is (alone or as every leaf of a group), else None.

    Not one a step raised: a step's failure is journaled (`StepFailed`) and replays as
    the same failure, so stopping on it would stop every resume again.
    """
    if isinstance(error, StoreUnavailableError):
        return None if _raised_by_a_step(error) else error
    if isinstance(error, BaseExceptionGroup):
        leaves = [_outage(e) for e in error.exceptions]
        if all(leaves):
            return leaves[0]
    return None


_STEP_CODE = (WorkflowContext._step.__code__, WorkflowContext._attempts.__code__)


def _raised_by_a_step(error: BaseException) -> bool:
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in _STEP_CODE:
            return True
        tb = tb.tb_next
    return False
