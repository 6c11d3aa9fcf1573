"""Executing one run: the workflow task, its lease keeper and its inbox watcher.

The three live in one TaskGroup, so none outlives the run. The outcome is journaled
by the runner, not by workflow code: `RunCompleted`, `RunFailed` or `RunCancelled`.
Two kinds of stop are kept apart: a cancel *requested* through the run's inbox is an
outcome (cleanup runs, `RunCancelled` is journaled, children are cancelled); losing
the lease is not (the runner writes nothing more and raises `FencedError`), and
neither is cancellation from outside (Ctrl-C): the run stays resumable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
from ._context import WorkflowContext, _round_trip
from ._history import RunHistory, RunStatus, inbox_stream
from ._journal import RunJournal
from ._serde import error_to_json

if TYPE_CHECKING:
    from ._runtime import Runtime

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
    """Runs (or resumes) one workflow run while holding its lease."""

    def __init__(
        self,
        runtime: Runtime,
        history: RunHistory,
        lease: Lease,
        fn: Callable[..., Awaitable[Any]],
        *,
        force: bool,
        parent: Runner | None = None,
    ) -> None:
        self.runtime = runtime
        self.parent = parent
        #: Child runs executing in this process, by run id (for deadlines and cancels).
        self.children: dict[str, Runner] = {}
        self._child_cancels: dict[str, str] = {}
        self.last_activity = runtime.clock.monotonic()
        self._writes_seen = 0
        self.run_id = history.run_id
        self.history = history
        self.lease = lease
        self.fn = fn
        self.force = force
        metadata = Metadata(run_id=self.run_id, parent_id=history.parent_run_id)
        self.journal = RunJournal(
            runtime.store, lease, history.version, metadata, clock=runtime.clock
        )
        self.ctx = WorkflowContext(self, history, self.journal, runtime.clock, runtime.entropy)
        self._inbox: list[Event] = []
        self._consumed: set[int] = {
            int(e.data["inbox_seq"]) for e in history.events if e.type == "SignalReceived"
        }
        self._stop: BaseException | None = None
        self._cancel_reason: str | None = None
        self._task: asyncio.Task[Any] | None = None

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

    @property
    def cancelling(self) -> str | None:
        """The reason this run is being cancelled, if it is."""
        return self._cancel_reason

    def request_cancel(self, reason: str) -> None:
        """Cancel this run as if asked through its inbox: cleanup runs, RunCancelled."""
        self._halt(None, cancel_reason=reason)

    def cancel_child(self, child_id: str, reason: str) -> None:
        """Cancel a child run of this run, now or as soon as it starts executing."""
        child = self.children.get(child_id)
        if child is not None:
            child.request_cancel(reason)
        else:
            self._child_cancels[child_id] = reason

    def touch(self) -> None:
        """Record progress now (a heartbeat)."""
        self.last_activity = self.runtime.clock.monotonic()

    def silence(self) -> float:
        """Seconds since this run last made progress (a journal write or a heartbeat)."""
        if self.journal.writes != self._writes_seen:
            self._writes_seen = self.journal.writes
            self.touch()
        return self.runtime.clock.monotonic() - self.last_activity

    def cancel_workflow(self) -> None:
        """Cancel the workflow's task, unless that is the task asking (it raises itself)."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def _halt(self, reason: BaseException | None, cancel_reason: str | None = None) -> None:
        if self._stop is None and self._cancel_reason is None:
            self._stop = reason
            self._cancel_reason = cancel_reason
            if cancel_reason is not None:
                # Children first, so each ends cancelled itself (cleanup, RunCancelled)
                # rather than being torn down with our task and left `running`.
                for child in list(self.children.values()):
                    child.request_cancel(f"parent cancelled: {cancel_reason}")
            if reason is not None:
                # Fenced or lease lost: the workflow's cleanup must write nothing (an
                # expired lease's epoch is still accepted until someone takes over).
                self.journal.close(str(reason))
            if self._task is not None:
                self._task.cancel()

    async def _read_inbox(self) -> None:
        fresh = await self.runtime.store.read_stream(
            inbox_stream(self.run_id), from_seq=len(self._inbox) + 1
        )
        if not fresh:
            return
        self._inbox.extend(fresh)
        for event in fresh:
            if event.type == "CancelRequested":
                reason = str(event.data.get("reason") or "cancel requested")
                self._halt(None, cancel_reason=reason)
        self.ctx._inbox_changed.set()

    async def _watch_inbox(self) -> None:
        while True:
            await self.runtime.clock.sleep(self.runtime.inbox_poll)
            try:
                await self._read_inbox()
            except StoreUnavailableError as exc:
                # The journal reports an outage once; polling on is all there is to do.
                logger.debug("run %s: cannot read its inbox (%s); will retry", self.run_id, exc)

    async def _keep_lease(self) -> None:
        ttl = self.runtime.lease_ttl
        clock = self.runtime.clock
        while True:
            await clock.sleep(ttl / 3)
            try:
                # Rides out an outage shorter than the lease (see RunJournal).
                self.lease = await self.journal.renew(ttl)
            except (FencedError, LeaseLostError) as exc:
                self._halt(exc)
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
        """Start or resume a child run of this run, in this process.

        The child's deadline is the earlier of `deadline_at` and this run's own.
        """
        own = self.history.deadline_at
        if own is not None:
            deadline_at = own if deadline_at is None else min(own, deadline_at)
        return await self.runtime.run_or_resume_child(
            child_id, fn, inputs, parent=self, force=self.force, deadline_at=deadline_at
        )

    async def _enforce_deadline(self, deadline_at: float) -> None:
        clock = self.runtime.clock
        await clock.sleep(deadline_at - clock.now())
        self.request_cancel("deadline exceeded")

    async def _deliver_pending_cancel(self) -> None:
        # A cancel pending at the start (requested while no runner ran the run, or a
        # deadline already past) is raised by the first operation the journal cannot
        # answer. A workflow that, caught up, awaits anything else (an outside future,
        # a hang, a fan-out resuming its branches) would never see it, and the run would
        # never end: deliver it to the task once replay is over.
        while self.ctx._cancel_pending is not None and self.ctx.is_replaying:
            await self.runtime.clock.sleep(self.runtime.inbox_poll)
        reason = self.ctx._cancel_pending
        if reason is None or self._task is None:
            return  # delivered by an operation
        self.ctx._cancel_pending = None
        for child in list(self.children.values()):
            child.request_cancel(f"parent cancelled: {reason}")
        self._task.cancel()

    async def _call_workflow(self) -> tuple[str, Any]:
        try:
            result = await self.fn(self.ctx, **self.history.inputs)
        except asyncio.CancelledError:
            if self._cancel_reason is not None:
                return "cancelled", self._cancel_reason
            raise
        except NonDeterminismError as exc:
            return "diverged", exc
        except Exception as exc:
            return "failed", exc
        leftover = self.ctx._unclaimed_operations()
        if leftover:
            return "diverged", NonDeterminismError(
                run_id=self.run_id,
                position=leftover[0].op,
                expected=leftover[0].describe(),
                actual="the end of the workflow",
            )
        return "completed", result

    async def execute(self) -> RunOutcome:
        """Run the workflow to an outcome, journal it, release the lease.

        Raises:
            FencedError: another runner took the run over; nothing more was written.
            LeaseLostError: the lease could not be renewed in time; same effect.
            NonDeterminismError: replay diverged from the journal (the run stays
                resumable once the code is restored).
        """
        await self._read_inbox()
        # Requested while no runner ran it (a crashed run cancelled, then resumed):
        # replay catches up, and the first new operation raises the cancel.
        self.ctx._cancel_pending = self._cancel_reason
        if self.parent is not None:
            self.parent.children[self.run_id] = self
            pending = self.parent._child_cancels.pop(self.run_id, None)
            if pending is not None:
                self._halt(None, cancel_reason=pending)
                self.ctx._cancel_pending = pending
        deadline_at = self.history.deadline_at
        if (
            self.ctx._cancel_pending is None
            and deadline_at is not None
            and self.runtime.clock.now() >= deadline_at
        ):
            # Resumed (or started) past its deadline: stop like a pending cancel, before
            # any new work. The deadline timer alone would fire only once the workflow
            # task ran, after it had started re-running the step in flight at the crash
            # (e.g. a model call nobody is waiting for any more).
            self._halt(None, cancel_reason="deadline exceeded")
            self.ctx._cancel_pending = "deadline exceeded"
        try:
            with spans.run_span(self.history, self.lease, force=self.force) as span:
                # Every event this runner writes carries its run span's context, so a
                # resume (anywhere) continues the trace.
                self.journal.metadata = spans.stamp(self.journal.metadata, span)
                return spans.ended(span, await self._execute())
        finally:
            if self.parent is not None:
                self.parent.children.pop(self.run_id, None)

    async def _execute(self) -> RunOutcome:
        async with asyncio.TaskGroup() as group:
            self._task = group.create_task(self._call_workflow())
            keeper = group.create_task(self._keep_lease())
            watcher = group.create_task(self._watch_inbox())
            timer = None
            if self.history.deadline_at is not None:
                timer = group.create_task(self._enforce_deadline(self.history.deadline_at))
            deliverer = None
            if self.ctx._cancel_pending is not None:
                deliverer = group.create_task(self._deliver_pending_cancel())
            try:
                kind, value = await asyncio.shield(self._task)
            except asyncio.CancelledError:
                if self._cancel_reason is not None:
                    # Our parent's cancellation reached us too; ours is already under
                    # way: let the workflow's cleanup finish, then journal the outcome.
                    kind, value = await self._task
                elif self._stop is None:
                    # Cancelled from outside: leave the run resumable. The workflow is
                    # cancelled next (by the TaskGroup) and its cleanup must journal
                    # nothing, or replay would find that cleanup where the code, resumed,
                    # asks for the next step: a divergence that strands the run.
                    self.journal.close("the runner was cancelled from outside")
                    raise
                else:
                    kind, value = "stopped", self._stop
            except BaseException:
                if self._stop is None:
                    raise  # the process is going down (SystemExit, ...): stay resumable
                kind, value = "stopped", self._stop
            finally:
                keeper.cancel()
                watcher.cancel()
                if timer is not None:
                    timer.cancel()
                if deliverer is not None:
                    deliverer.cancel()
        return await self._finish(kind, value)

    async def _finish(self, kind: str, value: Any) -> RunOutcome:
        if self.journal.fenced is not None:
            raise self.journal.fenced
        if self.journal.lost is not None:
            raise self.journal.lost
        if kind == "stopped":
            raise (
                value
                if isinstance(value, BaseException)
                else FencedError(
                    stream_id=self.journal.stream_id, epoch=self.lease.epoch, current_epoch=None
                )
            )
        if kind == "diverged":
            await self._append_quietly("ReplayDiverged", {"error": error_to_json(value)})
            await self._release()
            raise value
        if kind == "completed":
            try:
                result = _round_trip(self.journal.stream_id, "RunCompleted", value)
                # The store may refuse a JSON result too (too large, a lone surrogate).
                await self.journal.append("RunCompleted", {"result": result})
            except EventDataError as exc:
                kind, value = "failed", exc
            else:
                await self._release()
                return RunOutcome(self.run_id, "completed", result)
        if kind == "cancelled":
            error = {"type": "Cancelled", "message": str(value)}
            await self._cancel_children(str(value))
            await self.journal.append("RunCancelled", {"reason": str(value), "error": error})
            await self._release()
            return RunOutcome(self.run_id, "cancelled", None, error)
        error = error_to_json(value)
        await self.journal.append("RunFailed", {"error": error})
        await self._release()
        return RunOutcome(self.run_id, "failed", None, error)

    async def _cancel_children(self, reason: str) -> None:
        # A child running in this process was stopped with us (resumable, not ended),
        # and one a crash left behind has no runner at all: request the cancel, then
        # resume each here so it runs its cleanup and journals RunCancelled. None is
        # orphaned in `running` or `waiting`.
        for child_id in sorted(self.ctx._open_children):
            try:
                if await self.runtime.cancel(child_id, reason=f"parent cancelled: {reason}"):
                    await self.runtime.resume(child_id, force=self.force)
            except PhalanxError as exc:
                logger.warning("run %s: could not cancel child %s: %s", self.run_id, child_id, exc)

    async def _append_quietly(self, event_type: str, data: dict[str, Any]) -> None:
        try:
            await self.journal.append(event_type, data)
        except (FencedError, StoreUnavailableError):
            logger.warning("run %s: could not journal %s", self.run_id, event_type)

    async def _release(self) -> None:
        try:
            await self.runtime.store.release_lease(self.lease)
        except (FencedError, StoreUnavailableError):
            logger.warning("run %s: could not release its lease; it will expire", self.run_id)
