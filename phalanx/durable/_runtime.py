"""The runtime: start, resume, signal, cancel and list durable runs on one store."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .._clock import Clock, SystemClock
from .._entropy import Entropy, SystemEntropy
from .._errors import (
    ConcurrencyError,
    ConfigError,
    EventDataError,
    FencedError,
    LeaseHeldError,
    RunEndedError,
    RunExistsError,
    UnknownRunError,
)
from .._gc import cyclic_gc_paused
from ..journal import (
    DEFAULT_QUEUE,
    EventStore,
    Lease,
    Metadata,
    NewEvent,
    Submission,
    WorkQueue,
    find_problem,
    open_queue,
    safe_text,
    store_from_url,
    text_problem,
)
from . import _spans as spans
from ._history import (
    STATUS_EVENTS,
    RunHistory,
    RunStatus,
    RunSummary,
    inbox_stream,
    run_stream,
    summarize,
)
from ._journal import HOLD_S
from ._recover import Recovery, recover
from ._runner import Runner, RunOutcome
from ._workflow import load_workflow, workflow_ref

logger = logging.getLogger("phalanx")

Workflow = Callable[..., Awaitable[Any]]


class Runtime:
    """Runs durable workflows on an `EventStore`.

    Example::

        async with phalanx.open_runtime("sqlite:///app.db") as runtime:
            outcome = await runtime.run(research, {"topic": "leases"})
            print(outcome.status, outcome.result)

    `lease_ttl` bounds how long a crashed runner blocks a plain `resume` (a live
    runner renews every third of it). `crash_limit` bounds crash loops: a step whose
    process died that many times in a row on one attempt (counted from its journaled
    starts) fails with `StepCrashLoopError` instead of running again. `start_hold`
    is how long a step's `StepStarted` may wait to ride in the commit of its end
    before it is written alone (a quick step costs one commit; 0 writes each start
    before its step runs, two commits per step). The runtime does not
    own the store's lifecycle unless made by `open_runtime`.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Clock | None = None,
        entropy: Entropy | None = None,
        lease_ttl: float = 15.0,
        inbox_poll: float = 0.05,
        owner: str | None = None,
        crash_limit: int = 10,
        start_hold: float = HOLD_S,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.entropy: Entropy = entropy or SystemEntropy()
        self.lease_ttl = lease_ttl
        self.inbox_poll = inbox_poll
        if crash_limit < 1:
            raise ConfigError(
                setting="crash_limit",
                value=str(crash_limit),
                reason="it must be at least 1 (the starts of a step before it is failed)",
            )
        self.crash_limit = crash_limit
        if start_hold < 0:
            raise ConfigError(
                setting="start_hold",
                value=str(start_hold),
                reason="it must be 0 (each start written before its step) or more seconds",
            )
        self.start_hold = start_hold
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{self.entropy.token(4)}"
        self._host = _Host(self)
        self._work_queue: WorkQueue | None = None

    # -- reading ---------------------------------------------------------------------

    async def history(self, run_id: str) -> RunHistory:
        """The run's folded journal.

        Raises:
            UnknownRunError: no such run.
        """
        if text_problem(run_id) is not None:
            # No run can have it (`run` refuses such ids), and no store can look it up.
            raise UnknownRunError(run_id=safe_text(run_id), store=self.store.url)
        with cyclic_gc_paused():
            history = RunHistory.fold(run_id, await self.store.read_stream(run_stream(run_id)))
        if not history.exists:
            raise UnknownRunError(run_id=run_id, store=self.store.url)
        return history

    async def runs(self, *, status: RunStatus | None = None) -> list[RunSummary]:
        """Every run with its status, oldest first (optionally only one status)."""
        events = []
        after = 0
        types = list(STATUS_EVENTS)
        while page := await self.store.read_indexed(types, after=after, limit=5000):
            events.extend(page)
            after = page[-1].position
        runs = summarize(events)
        return [r for r in runs if status is None or r.status == status]

    # -- starting and resuming -------------------------------------------------------

    async def run(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        force: bool = False,
        deadline_at: float | None = None,
    ) -> RunOutcome:
        """Start a new run of `workflow` and run it to its outcome.

        With `deadline_at` (Unix seconds), the run is cancelled ("deadline exceeded")
        when it passes, wherever it is; its children inherit the deadline.

        Raises:
            RunExistsError: `run_id` is taken.
            FencedError: the run was taken over by another runner meanwhile.
        """
        return await self._start(
            workflow,
            inputs,
            run_id=run_id,
            parent_run_id=parent_run_id,
            force=force,
            deadline_at=deadline_at,
            parent=None,
        )

    async def _start(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None,
        *,
        run_id: str | None,
        parent_run_id: str | None,
        force: bool,
        deadline_at: float | None,
        parent: Runner | None,
        found_empty: bool = False,
    ) -> RunOutcome:
        """`run`, for a top-level run or (with `parent`) a child run executing here.

        `found_empty` says the caller has just read the run's stream empty, with no
        await since: asking the store again would only repeat its answer.
        """
        ref = workflow_ref(workflow)
        run_id = run_id or self.entropy.token(8)
        stream = run_stream(run_id)
        _check_start(stream, run_id, inputs)
        if not found_empty and await self.store.stream_version(stream) > 0:
            raise RunExistsError(run_id=run_id)
        try:
            lease = await self.store.acquire_lease(stream, self.owner, self.lease_ttl)
        except LeaseHeldError as exc:
            if parent is None:
                raise RunExistsError(run_id=run_id) from exc
            # Only the parent's runner starts its children: once we know we still hold
            # the parent (renewing raises FencedError if not), a lease on the empty child
            # stream is a predecessor's, crashed between taking it and writing RunStarted.
            # Waiting it out would fail the parent (found by simulation).
            await parent.journal.renew(self.lease_ttl)
            lease = await self.store.take_over_lease(stream, self.owner, self.lease_ttl)
        started = _run_started(ref, inputs, run_id, parent_run_id, deadline_at)
        try:
            await self.store.append(stream, [started], expected_version=0, epoch=lease.epoch)
        except ConcurrencyError as exc:
            if parent is not None:
                # The predecessor's RunStarted landed before our take-over: continue it.
                return await self._resume(
                    run_id, force=force, workflow=workflow, parent=parent, lease=lease
                )
            await self.store.release_lease(lease)
            raise RunExistsError(run_id=run_id) from exc
        except EventDataError:
            await self.store.release_lease(lease)  # inputs not JSON: nothing written, id free
            raise
        history = await self.history(run_id)
        return await Runner(
            self._host, history, lease, workflow, force=force, parent=parent
        ).execute()

    async def resume(
        self,
        run_id: str,
        *,
        force: bool = False,
        workflow: Workflow | None = None,
    ) -> RunOutcome:
        """Continue a run from its journal; a finished run just reports its outcome.

        Waits for a live lease to expire, or with `force` takes it over at once with a
        higher epoch, fencing out the old runner.

        Raises:
            UnknownRunError: no such run.
            WorkflowImportError: the run's workflow cannot be imported here.
            NonDeterminismError: the code no longer matches the journal.
        """
        return await self._resume(run_id, force=force, workflow=workflow, parent=None)

    async def _resume(
        self,
        run_id: str,
        *,
        force: bool,
        workflow: Workflow | None,
        parent: Runner | None,
        lease: Lease | None = None,
        host: _Host | None = None,
    ) -> RunOutcome:
        """`resume`, for a top-level run or (with `parent`) a child run executing here.

        With `lease` (a worker's claim), the run is executed under that lease; the
        caller releases it if this raises before the runner starts. With `host` (a
        worker's), the runner executes on that host instead of the runtime's.
        """
        history = await self.history(run_id)
        if history.terminal:
            if lease is not None:
                await self.store.release_lease(lease)
            return RunOutcome.of(history)
        fn = workflow or load_workflow(history.workflow)
        lease = lease or await self._take_lease(run_id, force=force)
        # It may have moved on while we waited: fold only what is new.
        for event in await self.store.read_stream(run_stream(run_id), from_seq=history.version + 1):
            history.apply(event)
        if history.terminal:
            await self.store.release_lease(lease)
            return RunOutcome.of(history)
        return await Runner(
            host or self._host, history, lease, fn, force=force, parent=parent, resumed=True
        ).execute()

    async def _take_lease(self, run_id: str, *, force: bool) -> Lease:
        stream = run_stream(run_id)
        if force:
            return await self.store.take_over_lease(stream, self.owner, self.lease_ttl)
        announced: tuple[str, int] | None = None
        while True:
            try:
                return await self.store.acquire_lease(stream, self.owner, self.lease_ttl)
            except LeaseHeldError as exc:
                left = exc.expires_at - self.clock.now()
                if announced != (exc.owner, exc.epoch):  # once per holder, not every second
                    announced = (exc.owner, exc.epoch)
                    logger.info(
                        "run %s is leased by %s for another %.1f s (until %s UTC, unless it "
                        "renews); waiting for it (force takes it over now)",
                        run_id,
                        exc.owner,
                        max(0.0, left),
                        datetime.fromtimestamp(exc.expires_at, tz=UTC).strftime("%H:%M:%S"),
                    )
                await self.clock.sleep(max(0.05, min(1.0, left)))

    async def submit(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
    ) -> str:
        """Record a run for the workers (`phalanx worker`) without running it; its id.

        Workers serving `queue` claim it, higher `priority` first, then oldest first.

        Raises:
            RunExistsError: `run_id` is taken.
            ConfigError: the store cannot hold a work queue (not SQLite or PostgreSQL).
        """
        return await self._submit(
            workflow, inputs, run_id=run_id, queue=queue, priority=priority, parent_run_id=None
        )

    async def _submit(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None,
        *,
        run_id: str | None,
        queue: str,
        priority: int,
        parent_run_id: str | None,
        deadline_at: float | None = None,
    ) -> str:
        """`submit`, for a top-level run or a child run for the workers (`parent_run_id`)."""
        ref = workflow_ref(workflow)
        run_id = run_id or self.entropy.token(8)
        stream = run_stream(run_id)
        _check_start(stream, run_id, inputs)
        if await self.store.stream_version(stream) > 0:
            raise RunExistsError(run_id=run_id)
        started = _run_started(
            ref, inputs, run_id, parent_run_id, deadline_at, queue=queue, priority=priority
        )
        work = await self.work_queue()
        try:
            await work.submit(
                Submission(run_id, stream, inbox_stream(run_id), queue, priority, started)
            )
        except (ConcurrencyError, FencedError) as exc:
            raise RunExistsError(run_id=run_id) from exc
        return run_id

    async def work_queue(self) -> WorkQueue:
        """The store's work queue (its tables created on first use)."""
        if self._work_queue is None:
            work = open_queue(self.store)
            await work.open()
            self._work_queue = work
        return self._work_queue

    async def recover(self) -> Recovery:
        """Resume, side by side, every unfinished top-level run whose lease has lapsed.

        Each run is resumed until it ends or parks (waits for a signal or the
        dead-letter queue, reported `waiting` and handed back, not waited on). A run
        that cannot be resumed here (its workflow does not import, its code diverged,
        another runner took it) is reported with the reason; the others go on.
        """
        return await recover(self)

    # -- talking to runs -------------------------------------------------------------

    async def signal(self, run_id: str, name: str, data: Any = None) -> None:
        """Send a signal to a run; a `wait_for_signal(name)` receives `data` once.

        Raises:
            UnknownRunError: no such run.
            RunEndedError: the run has ended; nobody would ever receive the signal.
        """
        history = await self.history(run_id)
        if history.terminal:
            raise RunEndedError(run_id=run_id, status=history.status)
        await self.store.append(
            inbox_stream(run_id),
            [NewEvent("SignalSent", {"name": name, "data": data}, Metadata(run_id=run_id))],
        )

    async def cancel(self, run_id: str, *, reason: str = "cancel requested") -> bool:
        """Ask a run to cancel at its next await; False if it had already ended.

        A run that no runner is running (crashed) is cancelled when it is next resumed:
        replay catches up and the first operation the journal cannot answer raises the
        cancel, so no step starts (or re-runs) before its cleanup.

        Raises:
            UnknownRunError: no such run.
        """
        history = await self.history(run_id)
        if history.terminal:
            return False
        await self.store.append(
            inbox_stream(run_id),
            [NewEvent("CancelRequested", {"reason": reason}, Metadata(run_id=run_id))],
        )
        return True


def _run_started(
    ref: str,
    inputs: Mapping[str, Any] | None,
    run_id: str,
    parent_run_id: str | None,
    deadline_at: float | None,
    **queued: str | int,
) -> NewEvent:
    """A run's first event; a submitted run's also names its `queue` and `priority`."""
    return NewEvent(
        "RunStarted",
        {
            "workflow": ref,
            "inputs": dict(inputs or {}),
            "parent_run_id": parent_run_id,
            "deadline_at": deadline_at,
            **queued,
        },
        # The context the run was started from (a parent's span, the caller's).
        spans.stamp(Metadata(run_id=run_id, parent_id=parent_run_id)),
        indexed=True,
    )


def _check_start(stream: str, run_id: str, inputs: Mapping[str, Any] | None) -> None:
    """Refuse a run id or inputs the journal cannot hold, before anything is written."""
    problem = text_problem(run_id)
    if problem is not None:
        raise EventDataError(
            stream_id=safe_text(stream), event_type="RunStarted", reason=f"the run id {problem}"
        )
    found = find_problem(inputs or {})
    if found is not None:
        raise EventDataError(
            stream_id=stream,
            event_type="RunStarted",
            path=found[0],
            reason=f"{found[1]} (in the inputs)",
        )


@contextlib.asynccontextmanager
async def open_runtime(
    store: str | EventStore | None = None, **options: Any
) -> AsyncIterator[Runtime]:
    """Open a store (a URL, `$PHALANX_STORE`, or the default file) and a runtime on it.

    The store is closed on exit if this opened it.
    """
    if store is None or isinstance(store, str):
        opened = store_from_url(store, clock=options.get("clock"))
        await opened.open()
        try:
            yield Runtime(opened, **options)
        finally:
            await opened.close()
    else:
        await store.open()
        yield Runtime(store, **options)


class _Host:
    """The runtime as its runners see it (`RunHost`): children start here, not via `run`."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.store = runtime.store
        self.clock = runtime.clock
        self.entropy = runtime.entropy
        self.lease_ttl = runtime.lease_ttl
        self.inbox_poll = runtime.inbox_poll
        self.crash_limit = runtime.crash_limit
        self.start_hold = runtime.start_hold
        self.executing: dict[str, Runner] = {}

    async def history(self, run_id: str) -> RunHistory:
        """See `Runtime.history`."""
        return await self._runtime.history(run_id)

    async def runs(self, *, status: RunStatus | None = None) -> list[RunSummary]:
        """See `Runtime.runs`."""
        return await self._runtime.runs(status=status)

    async def cancel(self, run_id: str, *, reason: str = "cancel requested") -> bool:
        """See `Runtime.cancel`."""
        return await self._runtime.cancel(run_id, reason=reason)

    async def run_child(
        self,
        child_id: str,
        workflow: Workflow,
        inputs: dict[str, Any],
        *,
        parent: Runner,
        force: bool,
        deadline_at: float | None,
    ) -> RunOutcome:
        """Start a child run, or resume it if a crashed parent had started it."""
        runtime = self._runtime
        if await self.store.stream_version(run_stream(child_id)) == 0:
            try:
                return await runtime._start(
                    workflow,
                    inputs,
                    run_id=child_id,
                    parent_run_id=parent.run_id,
                    force=force,
                    deadline_at=deadline_at,
                    parent=parent,
                    found_empty=True,
                )
            except RunExistsError:
                # A runner of the parent before us (taken over, still running) started
                # it meanwhile: it is ours, if the parent still is (checked below).
                force = True
        if force:
            # Taking a child over fences its runner: only the parent's current runner
            # may, not one taken over itself that has not noticed yet (renewing the
            # parent's lease raises FencedError then). Found by simulation.
            await parent.journal.renew(self.lease_ttl)
        return await runtime._resume(child_id, force=force, workflow=workflow, parent=parent)

    async def end_cancelled(self, run_id: str, *, reason: str, force: bool) -> None:
        """Cancel a run and resume it here, so it runs its cleanup and journals that."""
        if await self._runtime.cancel(run_id, reason=reason):
            await self._runtime.resume(run_id, force=force)
