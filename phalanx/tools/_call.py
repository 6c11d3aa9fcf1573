"""A reliable tool call: validate, breaker, timed attempts with retries, dead-letter queue.

Inside a workflow a call is two durable steps and, under the `wait` policy, a wait:

1. the call itself, `ctx.step(step, ...)`: each attempt is one attempt of the step, so
   the journal records every attempt (`StepStarted` / `StepFailed` with the error and
   `retry_at`) and the back-off runs on the runtime's clock, resumes after a crash
   with the time that is left, and honours the server's `retry_after` hint. The step's
   result is `{"tool", "attempt", "result"}`, so replay knows how many attempts it took;
2. if the call failed for good, `ctx.step(step + "/dead-letter", ...)` makes the
   dead-letter entry (once, with every attempt read back from the journal) and
   escalates it;
3. under `wait`, `ctx.wait_for_signal("dlq:ID")`: the run's status is `waiting` until
   a person retries, resolves or discards the entry.

Why the whole call is not one step with its own attempt loop: the step already does
exactly what attempts need (journaling, paced and resumable back-off, a stable
idempotency key), `phalanx show` and the trace tree already present a step's attempts,
and a second loop would have to re-derive all of that from the journal after a crash.

Arguments are validated before anything runs: invalid ones raise
`ToolArgumentsError`, reach neither the tool nor the breaker, and are not a failure.
Outside a workflow (`ctx` None) the same attempts run in memory, with the tool's
breaker in this process, and nothing is journaled: there is no dead-letter entry, and
`wait` cannot wait, so it behaves as `fail`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._clock import Clock, SystemClock
from .._entropy import Entropy, SystemEntropy
from .._errors import CircuitOpenError, ToolAttemptError, ToolDeadLetteredError, ToolError
from ..durable import RetryPolicy, lowlevel
from ._attempt import SINGLE_ATTEMPT, attempt_once, run_attempts
from ._dlq_entry import dead_letter_signal
from ._dlq_record import dead_letter_call
from ._tool import Tool

if TYPE_CHECKING:
    from ..durable import WorkflowContext
    from ..journal import EventStore

#: The dead-letter step retries what the store says is transient.
_DEAD_LETTER_RETRY = RetryPolicy(max_attempts=5, initial_interval=0.2, max_interval=5.0)

UnavailableReason = Literal["dead_lettered", "circuit_open", "discarded"]
CallOutcome = Literal["ok", "resolved", "unavailable"]


@dataclass(frozen=True)
class ToolUnavailable:
    """A tool call that produced no result, as a value its caller can reason about.

    What a `continue` tool's failed call returns (and a `wait` tool's discarded one):
    an agent's model receives it as a JSON object with `"status": "unavailable"`, so
    it can answer without the tool, and say so, instead of guessing.
    """

    tool: str
    reason: UnavailableReason
    message: str
    dead_letter_id: str | None = None
    error_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form a model sees."""
        return {
            "status": "unavailable",
            "tool": self.tool,
            "reason": self.reason,
            "message": self.message,
            "dead_letter_id": self.dead_letter_id,
            "error_type": self.error_type,
            "advice": "Do not call this tool again for this request. Go on without its "
            "result and say plainly which information is missing because of it.",
        }


@dataclass(frozen=True)
class ToolCallReport:
    """How one reliable call went: its value and what it took to get it.

    `outcome` is `ok` (the tool answered, after `attempts` attempts), `resolved` (a
    person supplied the value from the dead-letter queue, by retry or by hand), or
    `unavailable` (`value` is a `ToolUnavailable`).
    """

    tool: str
    step: str
    outcome: CallOutcome
    value: Any
    attempts: int
    dead_letter_id: str | None = None
    error: str | None = None
    resolved_by: str | None = None

    @property
    def troubled(self) -> bool:
        """Whether anything went wrong on the way (a retry, a DLQ entry, no value)."""
        return self.outcome != "ok" or self.attempts > 1


@functools.lru_cache(maxsize=256)
def _step_policy(policy: RetryPolicy) -> RetryPolicy:
    # Attempts raise only `ToolAttemptError` (retryable or not, as the tool's own policy
    # classified the tool's error) or `CircuitOpenError` (never retried: every retry
    # would be refused too). The step retries on that classification alone.
    return dataclasses.replace(policy, retry_on=(ToolAttemptError,), never_retry=())


async def _durable_attempt(
    ctx: WorkflowContext, tool: Tool, kwargs: dict[str, Any], step: str, call_id: str
) -> dict[str, Any]:
    attempt = ctx.attempt
    breaker = (
        None if tool.breaker is None else tool.breaker.for_tool(tool.name, lowlevel.store(ctx))
    )
    value = await attempt_once(
        tool,
        kwargs,
        step=step,
        attempt=attempt,
        key=ctx.idempotency_key,
        call_id=call_id,
        clock=ctx.clock,
        breaker=breaker,
        run_id=ctx.run_id,
        store=lowlevel.store(ctx),
    )
    return {"tool": tool.name, "attempt": attempt, "result": value}


def _refused(tool: Tool, failure: CircuitOpenError, step: str) -> ToolCallReport:
    unavailable = ToolUnavailable(
        tool.name, "circuit_open", str(failure), error_type="CircuitOpenError"
    )
    return ToolCallReport(
        tool.name, step, "unavailable", unavailable, 0, error=f"CircuitOpenError: {failure}"
    )


async def reliable_call(
    ctx: WorkflowContext,
    tool: Tool,
    arguments: str | Mapping[str, Any],
    *,
    step: str,
    agent: str | None = None,
    call_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    defer_wait: bool = False,
) -> ToolCallReport:
    """Call `tool` durably and reliably; see the module docstring.

    `tags` are journaled with the call's step (see `lowlevel.step`): an agent's tool
    calls carry its name and turn. With `defer_wait`, a `wait` tool's dead-lettered
    call returns at once, `unavailable` with its `dead_letter_id`, and the caller
    journals what it must and then waits with `await_dead_letter` (a saga records
    that a compensation failed, or goes on with the others first).

    Raises:
        ToolArgumentsError: the arguments break the schema (nothing ran).
        ToolDeadLetteredError: the call failed for good under the `fail` policy.
        CircuitOpenError: the breaker refused the call under `fail` / `fail_fast`.
    """
    parsed = tool.parse(arguments)
    kwargs = dict(parsed)
    failure: ToolError
    try:
        done = await lowlevel.step(
            ctx,
            step,
            _durable_attempt,
            ctx,
            tool,
            kwargs,
            step,
            call_id or step,
            retry=_step_policy(tool.retry or SINGLE_ATTEMPT),
            tags=tags,
        )
    except (ToolAttemptError, CircuitOpenError) as exc:
        failure = exc
    else:
        return ToolCallReport(tool.name, step, "ok", done["result"], int(done["attempt"]))
    refused_at_once = isinstance(failure, CircuitOpenError) and failure.attempt == 1
    if refused_at_once and tool.on_open == "fail_fast" and tool.dead_letter != "wait":
        if tool.dead_letter == "fail":
            raise failure
        assert isinstance(failure, CircuitOpenError)
        return _refused(tool, failure, step)
    redacted = tool.redact(parsed.model_dump(mode="json"))
    entry = await ctx.step(
        f"{step}/dead-letter",
        dead_letter_call,
        ctx,
        tool,
        redacted,
        failure,
        step,
        agent,
        call_id,
        retry=_DEAD_LETTER_RETRY,
    )
    entry_id = str(entry["dead_letter_id"])
    attempts = int(entry["attempts"]) or 1
    error = f"{entry['error_type']}: {entry['message']}"
    if tool.dead_letter == "fail":
        raise ToolDeadLetteredError(
            tool=tool.name,
            dead_letter_id=entry_id,
            step=step,
            attempts=attempts,
            error_type=str(entry["error_type"]),
            message=str(entry["message"]),
        )
    unavailable = ToolUnavailable(
        tool.name,
        "dead_lettered",
        f"the call failed after {attempts} attempt(s) ({error}) and was dead-lettered "
        f"as {entry_id}",
        entry_id,
        str(entry["error_type"]),
    )
    report = ToolCallReport(tool.name, step, "unavailable", unavailable, attempts, entry_id, error)
    if tool.dead_letter == "continue" or defer_wait:
        return report
    return await await_dead_letter(ctx, report)


async def await_dead_letter(ctx: WorkflowContext, report: ToolCallReport) -> ToolCallReport:
    """Wait until a person acts on a dead-lettered call; the run is `waiting` meanwhile.

    `report` is what `reliable_call(..., defer_wait=True)` returned for a `wait` tool's
    call. Returns it `resolved` with the value a person supplied (by retry or by hand),
    or `unavailable` (reason `discarded`) if they discarded the entry.
    """
    entry_id = report.dead_letter_id
    if entry_id is None:
        raise ValueError(f"the call of tool {report.tool!r} was not dead-lettered")
    outcome = await ctx.wait_for_signal(dead_letter_signal(entry_id))
    data = outcome if isinstance(outcome, dict) else {}
    by = data.get("by")
    error = report.error
    if data.get("action") == "discarded":
        unavailable = ToolUnavailable(
            report.tool,
            "discarded",
            f"the call failed ({error}); {by or 'a person'} discarded it: {data.get('reason')}",
            entry_id,
            None if error is None else error.partition(":")[0],
        )
        return dataclasses.replace(report, value=unavailable, resolved_by=by)
    return dataclasses.replace(report, outcome="resolved", value=data.get("result"), resolved_by=by)


async def call_in_memory(
    tool: Tool,
    arguments: str | Mapping[str, Any],
    *,
    clock: Clock | None = None,
    entropy: Entropy | None = None,
    store: EventStore | None = None,
    step: str | None = None,
) -> ToolCallReport:
    """A reliable call outside any workflow: nothing is journaled, nothing dead-lettered.

    The breaker is the tool's in-process one unless a `store` holds its shared state.

    Raises:
        ToolArgumentsError: the arguments break the schema (nothing ran).
        ToolAttemptError: the call failed for good under the `fail` or `wait` policy.
        CircuitOpenError: the breaker refused it under the `fail` or `wait` policy.
    """
    kwargs = dict(tool.parse(arguments))
    name = step or f"tool/{tool.name}"
    the_clock = clock or SystemClock()
    breaker = None if tool.breaker is None else tool.breaker.for_tool(tool.name, store)
    try:
        value, attempt = await run_attempts(
            tool,
            kwargs,
            clock=the_clock,
            entropy=lambda: entropy or SystemEntropy(),
            breaker=breaker,
            step=name,
            call_id=name,
        )
    except (ToolAttemptError, CircuitOpenError) as exc:
        if tool.dead_letter != "continue":
            raise
        if isinstance(exc, CircuitOpenError):
            return _refused(tool, exc, name)
        unavailable = ToolUnavailable(tool.name, "dead_lettered", str(exc), None, exc.error_type)
        return ToolCallReport(
            tool.name, name, "unavailable", unavailable, exc.attempt, error=str(exc)
        )
    return ToolCallReport(tool.name, name, "ok", value, attempt)


async def call_tool(
    ctx: WorkflowContext | None,
    tool: Tool,
    arguments: str | Mapping[str, Any] | None = None,
    /,
    *,
    step: str | None = None,
    **kwargs: Any,
) -> Any:
    """Call a tool reliably from a workflow (or, with `ctx` None, from anywhere).

    Arguments come as a mapping (or a JSON string) or as keyword arguments. Returns
    the tool's result, a person's result from the dead-letter queue, or, when the
    tool is unavailable and its policy says `continue`, a `ToolUnavailable`.

    Example::

        @phalanx.workflow
        async def quote(ctx, sku: str) -> dict:
            price = await phalanx.call_tool(ctx, fetch_price, sku=sku)
            if isinstance(price, phalanx.ToolUnavailable):
                return {"sku": sku, "price": None, "why": price.message}
            return {"sku": sku, "price": price}

    The step is named `step` (default `tool/{name}`).

    Raises:
        ToolArgumentsError: the arguments break the schema; nothing ran.
        ToolDeadLetteredError: (in a workflow) the call failed for good under `fail`.
        CircuitOpenError: the breaker refused the call under `fail`.
        ToolAttemptError: (outside a workflow) the call failed under `fail` or `wait`.
    """
    if arguments is not None and kwargs:
        raise TypeError("give the tool's arguments as one mapping or as keywords, not both")
    given: str | Mapping[str, Any] = kwargs if arguments is None else arguments
    if ctx is None:
        return (await call_in_memory(tool, given, step=step)).value
    report = await reliable_call(ctx, tool, given, step=step or f"tool/{tool.name}")
    return report.value
