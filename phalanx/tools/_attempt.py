"""One attempt of a tool call, and the retry loop for calls made outside a workflow.

An attempt asks the breaker, runs the tool under its timeout, tells the breaker how
it went, and turns any failure into a `ToolAttemptError` that says whether the tool's
retry policy lets the call be tried again (its exception types, then its HTTP status
rules). The tool's own exception is kept as fields (type, message, traceback, secret
values scrubbed), so it survives the journal and the dead-letter queue whatever its
class, and is never chained: a chained traceback would carry the secrets back in.

Inside a workflow, each attempt is one attempt of a durable step (see `_call`), so the
journal records it and the runtime's clock paces the back-off. Outside one,
`run_attempts` loops here, on the clock it is given.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback as tb
from collections.abc import Callable, Mapping
from typing import Any

from .._clock import Clock
from .._entropy import Entropy
from .._errors import (
    CircuitOpenError,
    ToolAttemptError,
    ToolFailed,
    ToolTimeoutError,
)
from .._executor import run_sync
from .._simloop import simulated_loop
from .._telemetry import REDACTED
from ..durable import RetryPolicy
from ..journal import EventStore, take_token
from . import _spans as spans
from ._breaker import Admission, Breaker
from ._notify import Escalation, escalate
from ._tool import IDEMPOTENCY_PARAMETER, Tool

#: A tool declared without a retry policy is attempted once.
SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)

#: Tracebacks kept per attempt, in characters (the end, where the error is).
_TRACEBACK_LIMIT = 8000


def status_of(error: BaseException) -> int | None:
    """The HTTP status an exception carries, if any (httpx, requests, urllib, ours)."""
    for holder in (error, getattr(error, "response", None)):
        if holder is None:
            continue
        for name in ("status_code", "status", "code"):
            value = getattr(holder, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def retry_after_of(error: BaseException) -> float | None:
    """The server's back-off hint in seconds: a `retry_after` field or header."""
    hint = getattr(error, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool):
        return float(hint)
    for holder in (error, getattr(error, "response", None)):
        headers = getattr(holder, "headers", None)
        if headers is None or not hasattr(headers, "get"):
            continue
        value = headers.get("retry-after") or headers.get("Retry-After")
        try:
            return max(0.0, float(value)) if value is not None else None
        except (TypeError, ValueError):
            return None  # an HTTP date: the policy's own back-off applies
    return None


def classify(tool: Tool, error: BaseException) -> tuple[bool, int | None, float | None]:
    """Whether `error` is worth retrying under the tool's policy; its status and hint."""
    if isinstance(error, ToolFailed):
        return bool(error.retryable), error.status, error.retry_after
    policy = tool.retry or SINGLE_ATTEMPT
    retryable = (
        isinstance(error, policy.retry_on)
        and not isinstance(error, policy.never_retry)
        and getattr(error, "retryable", True) is not False
    )
    status = status_of(error)
    if status is not None and status not in tool.retry_statuses:
        retryable = False
    return retryable, status, retry_after_of(error)


def secret_values(tool: Tool, kwargs: Mapping[str, Any]) -> list[str]:
    """The values of the call's secret arguments, to scrub from recorded text."""
    values = []
    for name in tool.secrets:
        value = kwargs.get(name)
        text = "" if value is None else str(value)
        if len(text) >= 4:  # shorter ones would scrub innocent text everywhere
            values.append(text)
    return values


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret value replaced."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


async def _invoke(tool: Tool, kwargs: Mapping[str, Any]) -> Any:
    await _simulated_fault(tool)
    if inspect.iscoroutinefunction(tool.fn):
        return await tool.fn(**kwargs)
    # A sync tool runs in a thread; a timeout abandons the thread, it cannot stop it.
    return await run_sync(tool.fn, **kwargs)


async def _paced(
    tool: Tool, kwargs: Mapping[str, Any], store: EventStore | None, clock: Clock
) -> Any:
    if store is not None:
        await take_token(store, f"tool:{tool.name}", clock)
    return await _invoke(tool, kwargs)


async def _simulated_fault(tool: Tool) -> None:
    """The fault a simulation's world injects into this call (see `testing._sim_world`)."""
    sim = simulated_loop()
    kind = None if sim is None or sim.world is None else sim.world.tool_fault(tool.name)
    if kind == "error":
        raise ToolFailed("injected fault (simulation)", status=503)
    if kind == "slow":
        await asyncio.sleep(5.0)
    if kind == "hang":
        await asyncio.Event().wait()  # never set: a tool that silently hangs


def _failure(
    tool: Tool,
    error: Exception,
    *,
    step: str,
    attempt: int,
    key: str | None,
    timed_out: bool,
    kwargs: Mapping[str, Any],
) -> ToolAttemptError:
    if timed_out:
        retryable = classify(tool, TimeoutError())[0]
        return ToolTimeoutError(
            tool=tool.name,
            step=step,
            attempt=attempt,
            timeout=tool.timeout or 0.0,
            retryable=retryable,
            key=key,
        )
    retryable, status, retry_after = classify(tool, error)
    secrets = secret_values(tool, kwargs)
    kind = type(error)
    error_type = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return ToolAttemptError(
        tool=tool.name,
        step=step,
        attempt=attempt,
        error_type=error_type,
        message=scrub(str(error), secrets),
        traceback=scrub("".join(tb.format_exception(error)), secrets)[-_TRACEBACK_LIMIT:],
        status=status,
        retryable=retryable,
        retry_after=retry_after,
        key=key,
    )


async def attempt_once(
    tool: Tool,
    kwargs: Mapping[str, Any],
    *,
    step: str,
    attempt: int,
    key: str | None,
    call_id: str,
    clock: Clock,
    breaker: Breaker | None,
    run_id: str | None = None,
    store: EventStore | None = None,
) -> Any:
    """Run one attempt: breaker, timeout, tool, breaker; return the tool's value.

    With a `store`, a token of the tool's rate limit (`tool:NAME`, if one is declared)
    is taken first, inside the tool's timeout: waiting for it counts as the attempt's
    time.

    Raises:
        CircuitOpenError: the breaker refused the attempt; the tool was not called.
        ToolAttemptError: the tool failed (`ToolTimeoutError` if it ran out of time).
    """
    admission = None
    if breaker is not None:
        admission = await breaker.admit(clock.now(), clock.monotonic())
        if admission is None:
            raise CircuitOpenError(
                tool=tool.name,
                step=step,
                attempt=attempt,
                state=breaker.state,
                open_until=breaker.fold.open_until,
                key=key,
            )
    call_kwargs = {**kwargs, IDEMPOTENCY_PARAMETER: key} if tool.idempotent else kwargs
    scope = None if tool.timeout is None else clock.timeout(tool.timeout)
    try:
        with spans.tool_span(tool, call_id, kwargs) as traced:
            if scope is None:
                value = await _paced(tool, call_kwargs, store, clock)
            else:
                async with scope:
                    value = await _paced(tool, call_kwargs, store, clock)
            traced.result(value)
    except Exception as exc:
        timed_out = scope is not None and scope.expired()
        failure = _failure(
            tool, exc, step=step, attempt=attempt, key=key, timed_out=timed_out, kwargs=kwargs
        )
        if breaker is not None and admission is not None:
            await _report_failure(tool, breaker, admission, failure, clock, run_id)
        # Not chained: the fields keep the tool's error, scrubbed of secrets.
        raise failure from None
    if breaker is not None and admission is not None:
        await breaker.succeeded(admission, clock.now())
    return value


async def _report_failure(
    tool: Tool,
    breaker: Breaker,
    admission: Admission,
    failure: ToolAttemptError,
    clock: Clock,
    run_id: str | None,
) -> None:
    if not failure.retryable and not isinstance(failure, ToolTimeoutError):
        # A request the tool refused (HTTP 4xx, a non-retryable error): it answered,
        # so it is up. A probe that got this far proves it.
        if admission == "probe":
            await breaker.succeeded("probe", clock.now())
        return
    opened = await breaker.failed(admission, clock.now(), failure.error_type)
    if opened is None:
        return
    summary = (
        f"circuit breaker of tool {tool.name!r} opened: {opened['reason']}; calls fail fast "
        f"for {tool.breaker.open_for if tool.breaker else 0:g}s, then a probe call tries it"
    )
    await escalate(
        tool.notifiers,
        Escalation("breaker_opened", tool.name, summary, clock.now(), opened, run_id=run_id),
    )


async def run_attempts(
    tool: Tool,
    kwargs: Mapping[str, Any],
    *,
    clock: Clock,
    entropy: Callable[[], Entropy],
    breaker: Breaker | None,
    step: str,
    call_id: str,
    key: str | None = None,
    records: list[dict[str, Any]] | None = None,
    first_attempt: int = 1,
) -> tuple[Any, int]:
    """Attempts under the tool's retry policy, outside any journal (in memory).

    Returns the value and the number of the attempt that produced it. `entropy` is
    called only when a back-off needs jitter; with `records`, each attempt is
    appended there (time, duration, error) for whoever reports it. Attempts are
    numbered from `first_attempt` (a call retried from the dead-letter queue goes on
    counting from the attempts it already had); the policy still allows its
    `max_attempts` more.

    Raises:
        CircuitOpenError: the breaker refused an attempt.
        ToolAttemptError: the last attempt failed and the policy does not retry.
    """
    policy = tool.retry or SINGLE_ATTEMPT
    attempt = first_attempt
    while True:
        started = clock.now() if records is not None else 0.0
        began = clock.monotonic() if records is not None else 0.0
        try:
            value = await attempt_once(
                tool,
                kwargs,
                step=step,
                attempt=attempt,
                key=key,
                call_id=call_id,
                clock=clock,
                breaker=breaker,
            )
        except ToolAttemptError as exc:
            if records is not None:
                records.append(_record(exc, started, clock.monotonic() - began))
            tries = attempt - first_attempt + 1
            if not exc.retryable or tries >= policy.max_attempts:
                raise
            delay = policy.delay(tries, entropy().random())
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            await clock.sleep(delay)
            attempt += 1
            continue
        if records is not None:
            records.append(
                {
                    "attempt": attempt,
                    "started_at": started,
                    "duration_s": clock.monotonic() - began,
                    "ok": True,
                }
            )
        return value, attempt


def _record(error: ToolAttemptError, started: float, duration: float) -> dict[str, Any]:
    return {
        "attempt": error.attempt,
        "started_at": started,
        "duration_s": duration,
        "ok": False,
        "error_type": error.error_type,
        "message": error.message,
        "traceback": error.traceback,
        "status": error.status,
    }
