"""The workflow context (`ctx`): every effect a workflow has goes through it.

Each call is an operation numbered in the order the workflow makes it. The first time
through, the operation runs and its outcome is journaled; on replay the journal's
outcome is returned without running anything, and asking for something other than
what the journal holds at that number raises `NonDeterminismError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from .._clock import Clock
from .._entropy import Entropy
from .._errors import (
    EventDataError,
    NonDeterminismError,
    RunFailedError,
    SignalTimeoutError,
    UserError,
)
from .._executor import run_sync
from ..journal import NewEvent
from . import _spans as spans
from ._history import Operation, RunHistory
from ._journal import RunJournal
from ._retry import NO_RETRY, RetryPolicy
from ._serde import error_from_json, error_to_json
from ._step_rules import can_hold, crash_loop, round_trip

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ._runner import Runner, RunOutcome

T = TypeVar("T")

_current_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "phalanx_idempotency_key", default=None
)
_current_attempt: contextvars.ContextVar[int] = contextvars.ContextVar(
    "phalanx_step_attempt", default=0
)


class WorkflowContext:
    """What a workflow sees of the world; passed as `ctx` to `async def wf(ctx, ...)`.

    Example::

        @phalanx.workflow
        async def research(ctx, topic: str) -> str:
            notes = await ctx.step("search", search, topic)
            await ctx.sleep(5)
            return await ctx.step("write", write, notes)

    Only effects made through `ctx` are durable. Time, random numbers and ids must come
    from `ctx.now()`, `ctx.random()` and `ctx.uuid()` so that replay sees the same ones.
    """

    def __init__(
        self,
        runner: Runner,
        history: RunHistory,
        journal: RunJournal,
        clock: Clock,
        entropy: Entropy,
        *,
        resumed: bool = False,
    ) -> None:
        self._runner = runner
        self._history = history
        self._journal = journal
        self._clock = clock
        self._entropy = entropy
        self._next_op = 1
        self.run_id = history.run_id
        #: Operations claimed through `lowlevel` whose first event is not yet written,
        #: with their kind: that first event carries it (see `_stamp`).
        self._unopened: dict[int, str] = {}
        #: How many `lowlevel.run_shielded` scopes are open: a pending cancel waits.
        self._shielded = 0
        #: Whether a step's StepStarted is written before the step runs (see `_attempts`).
        self._eager_starts = resumed

    # -- bookkeeping -----------------------------------------------------------------

    @property
    def is_replaying(self) -> bool:
        """Whether the next operation is already in the journal."""
        return self._next_op in self._history.operations

    @property
    def idempotency_key(self) -> str:
        """The key of the step now running: the same on every attempt and after a crash.

        Pass it to a tool or API that deduplicates, so a step that was in flight at a
        crash and runs again has its effect once.
        """
        key = _current_key.get()
        if key is None:
            raise UserError("ctx.idempotency_key is only available inside a running step")
        return key

    @property
    def attempt(self) -> int:
        """The attempt number of the step now running: 1, then 2 on its first retry...

        Counted across crashes, like the journal counts it.
        """
        attempt = _current_attempt.get()
        if attempt == 0:
            raise UserError("ctx.attempt is only available inside a running step")
        return attempt

    def _claim(self, kind: str, name: str) -> tuple[int, Operation | None]:
        op = self._next_op
        self._next_op += 1
        recorded = self._history.operations.get(op)
        if recorded is not None and not recorded.holds(kind, name):
            raise NonDeterminismError(
                run_id=self.run_id,
                position=op,
                expected=recorded.describe(),
                actual=f"{kind} {name!r}",
            )
        return op, recorded

    def _deliver_pending_cancel(self) -> None:
        # Replay answers from the journal whatever it holds; the first operation it
        # cannot answer would start new work or redo in-flight work (a step, a wait, a
        # child). A run cancelled while no runner ran it stops here, before any of that,
        # and its cleanup runs. Cancelling the task at its first real await instead
        # would first re-run the in-flight step, which may be the very call to avoid.
        if self._runner.state.pending_cancel is None or self._shielded:
            return  # the common case, on every operation: no call to make
        reason = self._runner.take_pending_cancel()
        if reason is not None:
            raise asyncio.CancelledError(reason)

    def _unclaimed_operations(self) -> list[Operation]:
        """Journaled operations the code has not asked for (yet)."""
        return [o for n, o in sorted(self._history.operations.items()) if n >= self._next_op]

    # -- recorded values -------------------------------------------------------------

    def _value(self, kind: str, draw: Callable[[], T]) -> T:
        op, recorded = self._claim("value", kind)
        if recorded is not None:
            return cast(T, recorded.events[0].data["value"])
        value = draw()
        self._journal.defer("ValueRecorded", {"op": op, "name": kind, "value": value})
        return value

    def now(self) -> float:
        """The current time (Unix seconds), recorded so replay sees the same."""
        return self._value("now", self._clock.now)

    def random(self) -> float:
        """A float in [0, 1), recorded so replay sees the same."""
        return self._value("random", self._entropy.random)

    def uuid(self) -> str:
        """A fresh UUID string, recorded so replay sees the same."""
        return self._value("uuid", self._entropy.uuid)

    # -- steps -----------------------------------------------------------------------

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> T: ...

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., T],
        *args: Any,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> T: ...

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` once, durably, and return its JSON result.

        `fn` may be sync (run in a worker thread so it cannot stall the run) or async.
        The result must be JSON-serialisable; the value returned is its JSON round
        trip, identical to what replay returns. A failure is journaled and re-raised
        (on replay too, as the same type); with `retry`, failed attempts are retried
        with back-off, each attempt and its error journaled.
        """
        return await self._step(name, fn, args, kwargs, retry=retry, tags=None)

    async def _step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        retry: RetryPolicy | None,
        tags: Mapping[str, Any] | None,
    ) -> Any:
        """`step`, with `tags` journaled in its StepStarted and StepCompleted (lowlevel)."""
        policy = retry or NO_RETRY
        op, recorded = self._claim("step", name)
        key = f"{self.run_id}:{op}"
        attempt = 1
        if recorded is not None:
            done = recorded.last("StepCompleted")
            if done is not None:
                return done.data.get("result")
            failed = recorded.last("StepFailed")
            if failed is not None:
                if failed.data.get("retry_at") is None:
                    raise error_from_json(failed.data["error"], step=name)
                attempt = int(failed.data["attempt"]) + 1
                self._deliver_pending_cancel()
                if recorded.events[-1] is failed:
                    await self._clock.sleep(float(failed.data["retry_at"]) - self._clock.now())
            else:
                # In flight at the crash: run it again, same attempt, same key.
                attempt = int(recorded.events[-1].data.get("attempt", 1))
        self._deliver_pending_cancel()
        if recorded is not None and recorded.events[-1].type == "StepStarted":
            # ...unless its process died on every one of its last `crash_limit` starts.
            await self._check_crash_loop(recorded, attempt)
        # Only executed steps get a span: the replayed ones returned above.
        with (
            self._runner.activity.working(),
            spans.step_span(self.run_id, op, name, attempt) as span,
        ):
            return await self._attempts(
                span, op, name, key, attempt, policy, fn, args, kwargs, dict(tags or {})
            )

    async def _attempts(
        self,
        span: Span,
        op: int,
        name: str,
        key: str,
        attempt: int,
        policy: RetryPolicy,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        tags: dict[str, Any],
    ) -> Any:
        """Run a step's attempts, journaling each, until one succeeds or retries end."""
        # Tags only where given: an untagged step's events stay as small as before.
        tagged = {"tags": tags} if tags else {}
        journal = self._journal
        holdable = can_hold(name, tags)
        while True:
            data = {"op": op, "name": name, "attempt": attempt, "key": key, **tagged}
            now = self._clock.now()
            eager = self._eager_starts or journal.hold_s <= 0
            if eager or not holdable or now >= journal.lease.expires_at:
                # A lease past its expiry may have been taken over: a write checks the
                # fencing token before the step's effect, as it did before holding.
                await journal.append("StepStarted", data)
            else:
                # One commit per step: StepStarted rides in StepCompleted's transaction
                # (or is written alone once the step ran `HOLD_S`), stamped with when
                # the step really started. A crash before that commit leaves no trace
                # of the attempt: resume runs it again with the same key, as it would
                # an attempt journaled as started. A resumed runner writes its starts
                # eagerly (`_eager_starts`) until a step completes, so a step that
                # kills its process every time is counted (`_check_crash_loop`).
                journal.check_open()  # a stopped or fenced runner starts nothing
                data["started_at"] = now
                journal.hold(NewEvent("StepStarted", data, journal.metadata))
            started = self._clock.monotonic()
            token = _current_key.set(key)
            attempt_token = _current_attempt.set(attempt)
            try:
                if inspect.iscoroutinefunction(fn):
                    value = await fn(*args, **kwargs)
                else:
                    value = await run_sync(fn, *args, **kwargs)
                result = round_trip(self._journal.stream_id, name, value)
            except Exception as exc:
                retrying = policy.should_retry(exc, attempt)
                delay = policy.delay(attempt, self._entropy.random()) if retrying else 0.0
                hint = getattr(exc, "retry_after", None)
                if retrying and isinstance(hint, int | float):
                    delay = max(delay, float(hint))  # the server knows when it can take more
                retry_at = self._clock.now() + delay if retrying else None
                await self._fail_step(op, name, attempt, exc, started, retry_at)
                if not retrying:
                    raise
                spans.record_retry(span, attempt, exc, delay)
                await self._clock.sleep(delay)
                attempt += 1
                continue
            finally:
                _current_key.reset(token)
                _current_attempt.reset(attempt_token)
            try:
                await journal.append(
                    "StepCompleted",
                    {
                        "op": op,
                        "name": name,
                        "attempt": attempt,
                        "result": result,
                        "duration_s": self._clock.monotonic() - started,
                        **tagged,
                    },
                )
                self._eager_starts = False  # progress: the next crash is counted anew
            except EventDataError as exc:
                # The store refused the result (too large, a lone surrogate...): nothing
                # was written, and it is this step's failure, not the store's. Journal
                # it so the run fails cleanly instead of leaving the step running.
                await self._fail_step(op, name, attempt, exc, started, None)
                raise
            return result

    async def _check_crash_loop(self, recorded: Operation, attempt: int) -> None:
        """Fail an in-flight step, instead of re-running it, if it is a crash loop.

        Raises:
            StepCrashLoopError: the attempt's journaled starts reached `crash_limit`.
        """
        error = crash_loop(self.run_id, recorded, attempt, self._runner.host.crash_limit)
        if error is None:
            return
        now = self._clock.monotonic()
        await self._fail_step(recorded.op, recorded.name, attempt, error, now, None)
        raise error

    async def _fail_step(
        self,
        op: int,
        name: str,
        attempt: int,
        error: BaseException,
        started: float,
        retry_at: float | None,
    ) -> None:
        await self._journal.append(
            "StepFailed",
            {
                "op": op,
                "name": name,
                "attempt": attempt,
                "error": error_to_json(error),
                "duration_s": self._clock.monotonic() - started,
                "retry_at": retry_at,
            },
        )

    # -- timers ----------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Sleep durably: a resumed run waits only for the time that is left."""
        op, recorded = self._claim("sleep", "sleep")
        if recorded is not None and recorded.last("TimerFired") is not None:
            return
        self._deliver_pending_cancel()
        if recorded is None:
            fire_at = self._clock.now() + max(0.0, seconds)
            await self._journal.append(
                "TimerStarted", {"op": op, "name": "sleep", "seconds": seconds, "fire_at": fire_at}
            )
        else:
            fire_at = float(recorded.events[0].data["fire_at"])
        with self._runner.activity.waiting(fire_at):
            await self._clock.sleep(fire_at - self._clock.now())
        await self._journal.append("TimerFired", {"op": op, "name": "sleep"})

    # -- signals ---------------------------------------------------------------------

    async def wait_for_signal(self, name: str, *, timeout: float | None = None) -> Any:
        """Wait for a signal sent with `phalanx signal RUN NAME --data JSON`; return its data.

        The run's status is `waiting` meanwhile. A signal sent before the wait is kept
        and delivered; each signal is delivered to exactly one wait. The timeout counts
        from the first time the wait began, across restarts.

        Raises:
            SignalTimeoutError: no signal arrived within `timeout` seconds.
        """
        op, recorded = self._claim("signal", name)
        if recorded is not None:
            received = recorded.last("SignalReceived")
            if received is not None:
                return received.data.get("data")
            if recorded.last("SignalTimedOut") is not None:
                raise SignalTimeoutError(run_id=self.run_id, name=name, timeout=timeout or 0.0)
        self._deliver_pending_cancel()
        if recorded is not None:
            deadline = recorded.events[0].data.get("deadline")
        else:
            deadline = None if timeout is None else self._clock.now() + timeout
            await self._journal.append(
                "SignalWaiting", {"op": op, "name": name, "timeout": timeout, "deadline": deadline}
            )
        while True:
            self._runner.inbox_changed.clear()
            sent = self._runner.take_signal(name)
            if sent is not None:
                await self._journal.append(
                    "SignalReceived",
                    {"op": op, "name": name, "data": sent.data.get("data"), "inbox_seq": sent.seq},
                )
                return sent.data.get("data")
            remaining = None if deadline is None else float(deadline) - self._clock.now()
            if remaining is not None and remaining <= 0:
                await self._journal.append("SignalTimedOut", {"op": op, "name": name})
                raise SignalTimeoutError(run_id=self.run_id, name=name, timeout=timeout or 0.0)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands as the wait completes, and a cancel request must never be lost.
            wake_at = None if deadline is None else float(deadline)
            with contextlib.suppress(TimeoutError), self._runner.activity.waiting(wake_at):
                async with self._clock.timeout(remaining):
                    await self._runner.inbox_changed.wait()

    # -- child runs ------------------------------------------------------------------

    async def child(self, workflow: Callable[..., Awaitable[T]], /, **inputs: Any) -> T:
        """Run another workflow as a child run and return its result.

        The child has its own journal, linked to this run; it is resumed with this run
        and cancelled with it.

        Raises:
            RunFailedError: the child run failed or was cancelled.
        """
        from ._workflow import workflow_ref

        ref = workflow_ref(workflow)
        op, recorded = self._claim("child", ref)
        if recorded is not None:
            done = recorded.last("ChildCompleted", "ChildFailed")
            if done is not None:
                if done.type == "ChildCompleted":
                    return cast(T, done.data.get("result"))
                raise RunFailedError(**done.data["failure"])
        self._deliver_pending_cancel()
        if recorded is None:
            child_id = f"{self.run_id}.{op}"
            await self._journal.append(
                "ChildStarted", {"op": op, "name": ref, "child_run_id": child_id}
            )
        else:
            child_id = str(recorded.events[0].data["child_run_id"])
        outcome = await self._run_child(child_id, workflow, dict(inputs))
        if outcome.status == "completed":
            await self._journal.append(
                "ChildCompleted",
                {"op": op, "name": ref, "child_run_id": child_id, "result": outcome.result},
            )
            return cast(T, outcome.result)
        failure = {
            "run_id": child_id,
            "status": outcome.status,
            "error_type": str((outcome.error or {}).get("type", "Cancelled")),
            "message": str((outcome.error or {}).get("message", "")),
        }
        await self._journal.append(
            "ChildFailed", {"op": op, "name": ref, "child_run_id": child_id, "failure": failure}
        )
        raise RunFailedError(**failure)

    # -- heartbeats and deadlines --------------------------------------------------

    def heartbeat(self) -> None:
        """Report progress: a watcher will not call this run stalled for a while.

        Every journal write already counts; call this from long work between steps.
        """
        self._runner.touch()

    @property
    def deadline_at(self) -> float | None:
        """When this run is cancelled for running too long (Unix seconds), if ever."""
        return self._history.deadline_at

    @property
    def clock(self) -> Clock:
        """The runtime's clock (for durations; use `now()` for recorded time)."""
        return self._clock

    # -- what `lowlevel` builds on (private: pattern authors use `lowlevel`) ----------

    def _open(self, kind: str, name: str) -> tuple[int, Operation | None]:
        """Take an operation of a pattern's kind; a new one's first event will carry it."""
        op, recorded = self._claim(kind, name)
        if recorded is None:
            self._deliver_pending_cancel()
            self._unopened[op] = kind
        return op, recorded

    def _stamp(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """`data`, with its operation's kind added if it is the operation's first event."""
        op = data.get("op")
        kind = self._unopened.pop(op, None) if isinstance(op, int) else None
        if kind is None:
            return data
        if data.get("op_kind", kind) != kind:
            raise UserError(
                f"the first event of operation {op} ({kind} {data.get('name')!r}) has its own "
                f"'op_kind' ({data.get('op_kind')!r}); that key is the operation's kind: "
                "rename it"
            )
        return {**data, "op_kind": kind}

    async def _run_child(
        self,
        child_id: str,
        workflow: Callable[..., Awaitable[Any]],
        inputs: dict[str, Any],
        *,
        deadline_at: float | None = None,
    ) -> RunOutcome:
        """Start or resume child run `child_id` and wait for its outcome (never raises for it)."""
        try:
            return await self._runner.run_child(child_id, workflow, inputs, deadline_at=deadline_at)
        finally:
            # A child ending wakes whoever waits on the inbox (a pattern watching its
            # children and its messages in one loop).
            self._runner.inbox_changed.set()
