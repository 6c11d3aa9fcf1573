"""Every error phalanx raises, in one place.

The hierarchy, so callers can branch on what happened::

    PhalanxError
    ├── UserError                   misuse: fix the call, the input or the configuration
    │   ├── InvalidStoreURLError    a store URL with an unknown scheme or shape
    │   └── EventDataError          event data that is not a JSON object of JSON values
    │       └── PayloadTooLargeError   encoded data above the store's payload limit
    │   ├── ModelConfigError        PHALANX_MODEL unknown, or a provider's key is missing
    │   ├── TelemetryConfigError    OTEL_* settings phalanx cannot apply (SDK missing, bad value)
    │   ├── WorkflowImportError     MODULE:FUNCTION that cannot be imported as a workflow
    │   ├── UnknownRunError         a run id the store has never seen
    │   ├── RunExistsError          starting a run under an id that is already taken
    │   ├── ActorConfigError        an actor setting out of range (capacity, restarts...)
    │   ├── PlanError               a conductor plan that cannot run (unknown agent, cycle...)
    │   ├── UnknownDeadLetterError  a dead-letter entry id the store has never seen
    │   ├── DeadLetterRetryError    a dead-letter entry not retryable here (import, secrets)
    │   └── MCPConfigError          an MCP server phalanx cannot use (SDK missing, bad settings)
    ├── NonDeterminismError         replay asked for another step than the journal holds
    ├── StepError                   a journaled step failure whose type cannot be rebuilt
    ├── SignalTimeoutError          wait_for_signal ran past its timeout (also TimeoutError)
    ├── RunFailedError              a run (e.g. a child run) ended failed or cancelled
    ├── ModelError                  a model call failed: provider, HTTP status, retryable?
    │   ├── ModelRateLimitedError   429; carries the server's Retry-After
    │   ├── ModelTimeoutError       no (complete) answer in time
    │   ├── ModelConnectionError    the endpoint cannot be reached (refused, DNS, TLS)
    │   └── ModelResponseError      an answer that cannot be understood
    ├── PartialResultError          reading a partial fan-out without accepting it
    ├── DeadlineExceededError       a fail_after scope ran past its deadline (also TimeoutError)
    ├── ActorError                  a durable actor's message or child could not go on
    │   ├── MailboxFullError        a mailbox stayed full: fail_fast, or block past the deadline
    │   ├── AskTimeoutError         no reply to an ask in time (also TimeoutError)
    │   └── SupervisorEscalationError  restarts over the intensity limit: the children stopped
    ├── ToolArgumentsError          a tool call's arguments are not valid JSON / break its schema
    ├── ToolFailed                  raised by a tool: this call failed (retryable? HTTP status?)
    ├── ToolError                   a reliable tool call produced no result
    │   ├── ToolAttemptError        one attempt failed: the tool's error type, message, retryable?
    │   │   └── ToolTimeoutError    an attempt ran past the tool's timeout (also TimeoutError)
    │   ├── CircuitOpenError        the tool's circuit breaker is open: refused without calling it
    │   └── ToolDeadLetteredError   the call failed for good and waits in the dead-letter queue
    ├── DeadLetterClosedError       acting on a dead-letter entry already resolved or discarded
    ├── EscalationError             a notifier (e.g. a webhook) did not take an escalation
    ├── MCPCallError                a call to an MCP server failed (raised by an MCP tool)
    │   ├── MCPConnectionError      server not started / unreachable / died (retryable: reconnects)
    │   ├── MCPProtocolError        a JSON-RPC error answer; retryable for internal errors only
    │   └── MCPToolError            the tool ran and reported an error (isError), not retried
    ├── ConversationError           a peer conversation ended without going quiet on its own
    │   ├── RoundLimitError         a chain of messages ran past max_rounds (a loop, stopped)
    │   ├── PeerFailedError         a peer failed, was cancelled or left before the end
    │   └── ConversationTimeoutError  not quiet before its deadline (also TimeoutError)
    ├── ClaimLostError              a claimed task was taken over while its holder was down
    ├── AgentError                  an agent loop could not reach a valid answer
    │   ├── MaxTurnsExceededError   the tool loop hit its turn limit
    │   ├── AgentTimeoutError       the agent ran past its timeout (also TimeoutError)
    │   └── OutputValidationError   structured output stayed invalid after retries
    └── StoreError                  the journal refused or could not do what was asked
        ├── StoreUnavailableError   the store cannot be reached or opened (retryable)
        │   └── LeaseLostError      an outage outlasted a runner's lease: it stopped, resumable
        ├── StoreCorruptError       the store's files are damaged: nothing more is written
        ├── CorruptEventError       a stored row that cannot be decoded
        ├── ConcurrencyError        optimistic append lost: expected version != actual
        ├── FencedError             a write or renewal carried a stale lease epoch
        └── LeaseHeldError          someone else holds a live lease on the stream

Cancellation is not an error here: a cancelled run sees `asyncio.CancelledError`
(a `BaseException`), runs its cleanup, and the runtime journals `RunCancelled`.

Each error takes structured fields, builds its own message (saying how to fix it where
there is a fix) and pickles by its fields, so it survives being journaled and sent
between processes.
"""

from __future__ import annotations

from typing import Any


class PhalanxError(Exception):
    """Base of every error phalanx raises on purpose."""

    #: Whether trying the same operation again can succeed without a change.
    retryable: bool = False

    def __init__(self, message: str, /, **fields: Any) -> None:
        super().__init__(message)
        self._fields = fields
        for name, value in fields.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the structured fields, not from the message, so subclasses with
        # keyword-only constructors round-trip through pickle.
        return (_rebuild_error, (type(self), self._fields, str(self)))


def _rebuild_error(cls: type[PhalanxError], fields: dict[str, Any], message: str) -> PhalanxError:
    error = cls.__new__(cls)
    PhalanxError.__init__(error, message, **fields)
    return error


class UserError(PhalanxError):
    """The caller used phalanx wrongly; the message says how to fix it."""


class InvalidStoreURLError(UserError):
    """A store URL phalanx cannot open."""

    url: str
    reason: str

    def __init__(self, *, url: str, reason: str) -> None:
        super().__init__(
            f"cannot use store URL {url!r}: {reason}. Supported: sqlite:///path/to/file.db "
            "(default ./.phalanx/phalanx.db) and postgresql://user@host:port/database",
            url=url,
            reason=reason,
        )


class EventDataError(UserError):
    """Event data that cannot be journaled; nothing was written."""

    stream_id: str
    event_type: str
    reason: str
    #: The JSONPath of the first bad value in the event's data (`$.result.items[3]`),
    #: or None when the problem is not one value (the type, the stream id).
    path: str | None

    def __init__(
        self, *, stream_id: str, event_type: str, reason: str, path: str | None = None
    ) -> None:
        where = "" if path is None else f"{path}: "
        super().__init__(
            f"cannot journal event {event_type!r} on stream {stream_id!r}: {where}{reason}; "
            "nothing was written",
            stream_id=stream_id,
            event_type=event_type,
            reason=reason,
            path=path,
        )


class PayloadTooLargeError(EventDataError):
    """Encoded event data above the store's payload limit; nothing was written."""

    stream_id: str
    event_type: str
    size: int
    limit: int

    def __init__(self, *, stream_id: str, event_type: str, size: int, limit: int) -> None:
        PhalanxError.__init__(
            self,
            f"cannot journal event {event_type!r} on stream {stream_id!r}: its data is "
            f"{size} bytes encoded, above the {limit}-byte limit; store large blobs elsewhere "
            "and journal a reference, or raise the store's limit (?max_payload_bytes=N on "
            "the store URL); nothing was written",
            stream_id=stream_id,
            event_type=event_type,
            size=size,
            limit=limit,
            reason="payload too large",
            path=None,
        )


class StoreError(PhalanxError):
    """The journal store refused or failed an operation."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached, opened or locked in time; retry when it is back."""

    store: str
    reason: str

    retryable = True

    def __init__(self, *, store: str, reason: str) -> None:
        super().__init__(
            f"store {store} is unavailable: {reason}",
            store=store,
            reason=reason,
        )


class StoreCorruptError(StoreError):
    """The store's files are damaged (SQLite: "database disk image is malformed").

    Nothing more is written to it: writing into a damaged database can spread the
    damage. Not retryable; restore a backup or salvage what is readable.
    """

    store: str
    reason: str

    def __init__(self, *, store: str, reason: str) -> None:
        super().__init__(
            f"store {store} is corrupt: {reason}; phalanx writes nothing more to it. "
            "Restore it from a backup, or salvage what is readable "
            "(for SQLite: sqlite3 FILE .recover | sqlite3 NEW.db)",
            store=store,
            reason=reason,
        )


class LeaseLostError(StoreUnavailableError):
    """A runner could not reach the store before its lease expired; it stopped writing.

    Raised when a store outage outlasts the runner's lease: another runner may now
    take the run over, so this one writes nothing more. The run is not lost: it
    resumes from its journal once the store is back.
    """

    store: str
    reason: str

    def __init__(self, *, store: str, reason: str) -> None:
        StoreError.__init__(
            self,
            f"store {store} is unavailable and the lease ran out: {reason}",
            store=store,
            reason=reason,
        )


class CorruptEventError(StoreError):
    """A stored event row that cannot be decoded; it names the row to repair."""

    stream_id: str
    seq: int
    position: int
    reason: str

    def __init__(self, *, stream_id: str, seq: int, position: int, reason: str) -> None:
        super().__init__(
            f"corrupt event at stream {stream_id!r} seq {seq} (global position {position}): "
            f"{reason}",
            stream_id=stream_id,
            seq=seq,
            position=position,
            reason=reason,
        )


class ConcurrencyError(StoreError):
    """An optimistic append found another version than expected; nothing was written.

    Re-read the stream, decide again, and append with the new version.
    """

    stream_id: str
    expected_version: int
    actual_version: int

    retryable = True

    def __init__(self, *, stream_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual_version}, not the expected "
            f"{expected_version}: someone else appended first; nothing was written",
            stream_id=stream_id,
            expected_version=expected_version,
            actual_version=actual_version,
        )


class FencedError(StoreError):
    """A write or lease renewal carried an epoch that is no longer the stream's lease.

    The holder was taken over (or never held the lease) and must stop writing.
    """

    stream_id: str
    epoch: int | None
    current_epoch: int | None

    def __init__(self, *, stream_id: str, epoch: int | None, current_epoch: int | None) -> None:
        if epoch is None:
            detail = f"the stream is leased (epoch {current_epoch}) and the write carried no epoch"
        elif current_epoch is None:
            detail = f"the write carried epoch {epoch} but the stream has no lease"
        else:
            detail = (
                f"the write carried epoch {epoch} but the lease is now at epoch {current_epoch}"
            )
        super().__init__(
            f"fenced out of stream {stream_id!r}: {detail}; another runner owns it, "
            "so this one must stop writing",
            stream_id=stream_id,
            epoch=epoch,
            current_epoch=current_epoch,
        )


class LeaseHeldError(StoreError):
    """Someone else holds a live lease; wait for it to expire or take it over."""

    stream_id: str
    owner: str
    epoch: int
    expires_at: float

    retryable = True

    def __init__(self, *, stream_id: str, owner: str, epoch: int, expires_at: float) -> None:
        super().__init__(
            f"stream {stream_id!r} is leased by {owner!r} (epoch {epoch}) until "
            f"{expires_at:.3f}; wait for the lease to expire or take it over",
            stream_id=stream_id,
            owner=owner,
            epoch=epoch,
            expires_at=expires_at,
        )


class WorkflowImportError(UserError):
    """A `MODULE:FUNCTION` reference that does not name an importable workflow."""

    ref: str
    reason: str

    def __init__(self, *, ref: str, reason: str) -> None:
        super().__init__(
            f"cannot load workflow {ref!r}: {reason}. Give MODULE:FUNCTION, where MODULE "
            "is importable from the current directory or PYTHONPATH (or a path to a .py "
            "file) and FUNCTION is an async def decorated with @phalanx.workflow",
            ref=ref,
            reason=reason,
        )


class UnknownRunError(UserError):
    """No run with this id exists in the store."""

    run_id: str
    store: str

    def __init__(self, *, run_id: str, store: str) -> None:
        super().__init__(
            f"no run {run_id!r} in store {store}; `phalanx runs` lists the known runs "
            "(check --store / PHALANX_STORE)",
            run_id=run_id,
            store=store,
        )


class RunExistsError(UserError):
    """A new run was started under an id that already has a journal."""

    run_id: str

    def __init__(self, *, run_id: str) -> None:
        super().__init__(
            f"run {run_id!r} already exists; continue it with `phalanx resume {run_id}` "
            "or pick another --run-id",
            run_id=run_id,
        )


class NonDeterminismError(PhalanxError):
    """Replayed code asked for a different step than the journal recorded there.

    The workflow's code changed under a running run. Nothing of the new code's results
    is mixed with the old journal: the run stops where they diverge. Restore the old
    code to finish the run, or start a new run.
    """

    run_id: str
    position: int
    expected: str
    actual: str

    def __init__(self, *, run_id: str, position: int, expected: str, actual: str) -> None:
        super().__init__(
            f"run {run_id!r} diverged from its journal at operation {position}: the journal "
            f"holds {expected}, the code now asks for {actual}; the workflow code changed "
            "under a running run. Restore the code it started with to finish it, or start "
            "a new run",
            run_id=run_id,
            position=position,
            expected=expected,
            actual=actual,
        )


class StepError(PhalanxError):
    """A step failed with an exception whose type could not be rebuilt on replay."""

    step: str
    error_type: str
    message: str

    def __init__(self, *, step: str, error_type: str, message: str) -> None:
        super().__init__(
            f"step {step!r} failed with {error_type}: {message}",
            step=step,
            error_type=error_type,
            message=message,
        )


class SignalTimeoutError(PhalanxError, TimeoutError):
    """No signal of the awaited name arrived before the timeout."""

    run_id: str
    name: str
    timeout: float

    def __init__(self, *, run_id: str, name: str, timeout: float) -> None:
        super().__init__(
            f"run {run_id!r} waited {timeout:g}s for signal {name!r} and none arrived; send "
            f"one with `phalanx signal {run_id} {name} --data JSON`",
            run_id=run_id,
            name=name,
            timeout=timeout,
        )


class RunFailedError(PhalanxError):
    """A run ended failed or cancelled; raised where its result was awaited."""

    run_id: str
    status: str
    error_type: str
    message: str

    def __init__(self, *, run_id: str, status: str, error_type: str, message: str) -> None:
        super().__init__(
            f"run {run_id!r} ended {status}: {error_type}: {message}",
            run_id=run_id,
            status=status,
            error_type=error_type,
            message=message,
        )


class ModelConfigError(UserError):
    """A model that cannot be set up from the configuration; the message names the fix."""

    def __init__(self, *, spec: str, reason: str) -> None:
        super().__init__(f"cannot use model {spec!r}: {reason}", spec=spec, reason=reason)


class TelemetryConfigError(UserError):
    """Telemetry asked for (OTEL_* or configure_tracing) that cannot be set up."""

    def __init__(self, *, setting: str, reason: str) -> None:
        super().__init__(
            f"cannot export telemetry with {setting}: {reason}", setting=setting, reason=reason
        )


class ModelError(PhalanxError):
    """A model call failed. `retryable` says whether the same call may succeed later."""

    provider: str
    status: int | None
    detail: str

    def __init__(
        self, *, provider: str, status: int | None, detail: str, retryable: bool = False
    ) -> None:
        where = f"HTTP {status}" if status is not None else "no HTTP status"
        super().__init__(
            f"{provider} model call failed ({where}): {detail}"
            + ("; retrying may help" if retryable else ""),
            provider=provider,
            status=status,
            detail=detail,
            retryable=retryable,
        )


class ModelRateLimitedError(ModelError):
    """The provider said 429: slow down; `retry_after` is its hint in seconds, if any."""

    retry_after: float | None

    def __init__(
        self, *, provider: str, detail: str, retry_after: float | None = None, status: int = 429
    ) -> None:
        PhalanxError.__init__(
            self,
            f"{provider} rate-limited the call (HTTP {status}): {detail}"
            + (f"; retry after {retry_after:g}s" if retry_after is not None else ""),
            provider=provider,
            status=status,
            detail=detail,
            retryable=True,
            retry_after=retry_after,
        )


class ModelTimeoutError(ModelError):
    """The model did not answer (or finish answering) in time."""

    def __init__(self, *, provider: str, detail: str, status: int | None = None) -> None:
        super().__init__(provider=provider, status=status, detail=detail, retryable=True)


class ModelConnectionError(ModelError):
    """The endpoint could not be reached at all (refused, unknown host, TLS)."""

    def __init__(self, *, provider: str, detail: str, status: int | None = None) -> None:
        super().__init__(provider=provider, status=status, detail=detail, retryable=True)


class ModelResponseError(ModelError):
    """The provider answered with something that is not a valid response."""

    def __init__(
        self, *, provider: str, detail: str, status: int | None = None, retryable: bool = True
    ) -> None:
        super().__init__(provider=provider, status=status, detail=detail, retryable=retryable)


class AgentError(PhalanxError):
    """An agent's loop ended without a valid answer."""


class MaxTurnsExceededError(AgentError):
    """The agent used all its turns without a final answer; nothing was truncated."""

    agent: str
    max_turns: int

    def __init__(self, *, agent: str, max_turns: int) -> None:
        super().__init__(
            f"agent {agent!r} reached its limit of {max_turns} turns without a final "
            "answer; raise max_turns or make the task smaller",
            agent=agent,
            max_turns=max_turns,
        )


class OutputValidationError(AgentError):
    """The agent's structured output stayed invalid; carries the last raw output."""

    agent: str
    attempts: int
    last_output: str
    errors: str

    def __init__(self, *, agent: str, attempts: int, last_output: str, errors: str) -> None:
        super().__init__(
            f"agent {agent!r} gave no valid structured output in {attempts} attempts; "
            f"last validation errors: {errors}",
            agent=agent,
            attempts=attempts,
            last_output=last_output,
            errors=errors,
        )


class ToolArgumentsError(PhalanxError):
    """A tool call whose arguments are not JSON or break the tool's schema.

    The agent loop sends the message back to the model instead of running the tool.
    """

    tool: str
    errors: str

    def __init__(self, *, tool: str, errors: str) -> None:
        super().__init__(f"invalid arguments for tool {tool!r}: {errors}", tool=tool, errors=errors)


class AgentTimeoutError(AgentError, TimeoutError):
    """The agent did not finish within its timeout."""

    agent: str
    timeout: float

    def __init__(self, *, agent: str, timeout: float) -> None:
        super().__init__(
            f"agent {agent!r} did not finish within {timeout:g}s", agent=agent, timeout=timeout
        )


class PartialResultError(PhalanxError):
    """A fan-out's values were read although branches are missing and nobody said so.

    Synthesising from partial data must be a visible decision: call
    `await result.accept_partial(reason)` (journaled), or handle `result.missing`.
    """

    fan_out: str
    missing: list[str]

    def __init__(self, *, fan_out: str, missing: list[str]) -> None:
        super().__init__(
            f"fan-out {fan_out!r} is partial (no value from {', '.join(missing)}); call "
            "`await result.accept_partial(reason)` to go on without them, visibly",
            fan_out=fan_out,
            missing=missing,
        )


class ActorConfigError(UserError):
    """An actor setting (mailbox capacity, supervision strategy or limits) outside its range."""

    setting: str
    value: Any
    reason: str

    def __init__(self, *, setting: str, value: Any, reason: str) -> None:
        super().__init__(
            f"invalid actor setting {setting}={value!r}: {reason}",
            setting=setting,
            value=value,
            reason=reason,
        )


class DeadlineExceededError(PhalanxError, TimeoutError):
    """The body of a `fail_after` scope did not finish before its deadline."""

    timeout: float

    def __init__(self, *, timeout: float) -> None:
        super().__init__(
            f"deadline of {timeout:g}s exceeded; the work inside the scope was cancelled. "
            "Raise the timeout, or use move_on_after to carry on without the result",
            timeout=timeout,
        )


class ActorError(PhalanxError):
    """A durable actor's message could not be delivered, or its children could not go on."""


class MailboxFullError(ActorError):
    """A mailbox stayed at capacity (`fail_fast`, or `block` past the sender's deadline).

    The refusal is journaled in the sending run: a replay raises it again.
    """

    path: str
    capacity: int
    message_id: str

    retryable = True

    def __init__(self, *, path: str, capacity: int, message_id: str) -> None:
        super().__init__(
            f"mailbox of actor {path!r} is full (capacity {capacity}); message "
            f"{message_id!r} was not delivered. Send again later, slow the sender down, raise "
            "the capacity, or use when_full='block' with a longer tell(deadline=...)",
            path=path,
            capacity=capacity,
            message_id=message_id,
        )


class AskTimeoutError(ActorError, TimeoutError):
    """An ask got no reply within its timeout; the actor may still handle the request.

    Journaled in the asking run (`ReplyTimedOut`): a replay raises it again.
    """

    path: str
    timeout: float
    message_id: str

    retryable = True

    def __init__(self, *, path: str, timeout: float, message_id: str) -> None:
        super().__init__(
            f"actor {path!r} did not answer message {message_id!r} within {timeout:g}s; it "
            "may still handle it. Raise the timeout, or ask again (a new request)",
            path=path,
            timeout=timeout,
            message_id=message_id,
        )


class SupervisorEscalationError(ActorError):
    """A supervisor hit its restart intensity, stopped its children and gave up.

    Raised out of the `Supervisor` scope, so the supervising run fails (and its own
    supervisor, if it is a supervised actor, decides in turn). The decision is
    journaled (`SupervisorEscalated`): a resumed supervisor raises it again.
    """

    supervisor: str
    child: str
    restarts: int
    within: float
    error_type: str
    error_message: str

    def __init__(
        self,
        *,
        supervisor: str,
        child: str,
        restarts: int,
        within: float,
        error_type: str,
        error_message: str,
    ) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {restarts} restarts within "
            f"{within:g}s, the last after {child!r} failed with {error_type}: {error_message}. "
            "Its children were cancelled. Fix the failing actor, or allow more restarts "
            "(Supervisor(ctx, name, max_restarts=..., within=...))",
            supervisor=supervisor,
            child=child,
            restarts=restarts,
            within=within,
            error_type=error_type,
            error_message=error_message,
        )


# -- tools: reliability and the dead-letter queue --------------------------------------


class ToolFailed(PhalanxError):
    """Raised by a tool to say how its failure should be treated.

    Any exception a tool raises is a failed attempt; raise this one to decide yourself
    whether trying again can help (`retryable`), to report an HTTP `status`, or to
    pass on the server's `retry_after` hint (seconds). Example::

        if response.status_code == 409:
            raise phalanx.ToolFailed("order already exists", retryable=False, status=409)
    """

    reason: str
    status: int | None
    retry_after: float | None

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool = True,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            reason,
            reason=reason,
            retryable=retryable,
            status=status,
            retry_after=retry_after,
        )


class ToolError(PhalanxError):
    """A reliable tool call (retries, breaker, dead-letter queue) produced no result."""

    tool: str


class ToolAttemptError(ToolError):
    """One attempt of a tool call failed; the tool's own error is described by the fields.

    `error_type`, `message` and `traceback` are the tool's exception (secrets scrubbed),
    `status` its HTTP status if it had one, `retryable` whether the tool's retry policy
    lets the call be tried again, `key` the call's idempotency key.
    """

    step: str
    attempt: int
    error_type: str
    message: str
    traceback: str
    status: int | None
    retry_after: float | None
    key: str | None

    def __init__(
        self,
        *,
        tool: str,
        step: str,
        attempt: int,
        error_type: str,
        message: str,
        traceback: str = "",
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
        key: str | None = None,
    ) -> None:
        where = f" (HTTP {status})" if status is not None else ""
        super().__init__(
            f"tool {tool!r} attempt {attempt} failed{where}: {error_type}: {message}"
            + ("" if retryable else "; its retry policy does not retry this error"),
            tool=tool,
            step=step,
            attempt=attempt,
            error_type=error_type,
            message=message,
            traceback=traceback,
            status=status,
            retryable=retryable,
            retry_after=retry_after,
            key=key,
        )


class ToolTimeoutError(ToolAttemptError, TimeoutError):
    """An attempt of a tool call ran past the tool's timeout and was cancelled."""

    timeout: float

    def __init__(
        self,
        *,
        tool: str,
        step: str,
        attempt: int,
        timeout: float,
        retryable: bool = True,
        key: str | None = None,
    ) -> None:
        message = f"no result within the tool's timeout of {timeout:g}s"
        PhalanxError.__init__(
            self,
            f"tool {tool!r} attempt {attempt} timed out: {message}; raise the tool's "
            "timeout if the work is legitimately slow",
            tool=tool,
            step=step,
            attempt=attempt,
            timeout=timeout,
            error_type="TimeoutError",
            message=message,
            traceback="",
            status=None,
            retryable=retryable,
            retry_after=None,
            key=key,
        )


class CircuitOpenError(ToolError):
    """The tool's circuit breaker is open: the call was refused without touching the tool.

    `open_until` (Unix seconds) is when the breaker lets a probe call through; the
    error is not retried within the call (every retry would be refused too).
    """

    step: str
    attempt: int
    state: str
    open_until: float
    key: str | None

    def __init__(
        self,
        *,
        tool: str,
        step: str,
        attempt: int,
        state: str,
        open_until: float,
        key: str | None = None,
    ) -> None:
        why = (
            "its half-open probes are all in use"
            if state == "half_open"
            else f"it is open until {open_until:.3f}"
        )
        super().__init__(
            f"tool {tool!r} was not called: its circuit breaker is {state.replace('_', '-')} "
            f"and {why}, after too many recent failures. Wait for the breaker to close, or "
            f"fix the tool and see `phalanx tools stats --tool {tool}`",
            tool=tool,
            step=step,
            attempt=attempt,
            state=state,
            open_until=open_until,
            key=key,
            retryable=False,
        )


class ToolDeadLetteredError(ToolError):
    """A tool call failed for good and was dead-lettered (its policy is `fail`).

    The entry keeps the call's whole context; `phalanx dlq show ID` prints it.
    """

    dead_letter_id: str
    step: str
    attempts: int
    error_type: str
    message: str

    def __init__(
        self,
        *,
        tool: str,
        dead_letter_id: str,
        step: str,
        attempts: int,
        error_type: str,
        message: str,
    ) -> None:
        super().__init__(
            f"tool {tool!r} failed after {attempts} attempt(s) ({error_type}: {message}); "
            f"the call is dead-lettered as {dead_letter_id!r}: inspect it with `phalanx dlq "
            f"show {dead_letter_id}`, and once the fault is fixed `phalanx dlq retry "
            f"{dead_letter_id}` (or resolve it by hand with `phalanx dlq resolve`)",
            tool=tool,
            dead_letter_id=dead_letter_id,
            step=step,
            attempts=attempts,
            error_type=error_type,
            message=message,
        )


class UnknownDeadLetterError(UserError):
    """No dead-letter entry with this id exists in the store."""

    dead_letter_id: str
    store: str

    def __init__(self, *, dead_letter_id: str, store: str) -> None:
        super().__init__(
            f"no dead-letter entry {dead_letter_id!r} in store {store}; `phalanx dlq list "
            "--status all` lists them (check --store / PHALANX_STORE)",
            dead_letter_id=dead_letter_id,
            store=store,
        )


class DeadLetterClosedError(PhalanxError):
    """An action on a dead-letter entry that was already resolved or discarded."""

    dead_letter_id: str
    status: str
    by: str

    def __init__(self, *, dead_letter_id: str, status: str, by: str) -> None:
        super().__init__(
            f"dead-letter entry {dead_letter_id!r} is already {status} (by {by}); nothing "
            f"was changed. `phalanx dlq show {dead_letter_id}` shows what happened",
            dead_letter_id=dead_letter_id,
            status=status,
            by=by,
        )


class DeadLetterRetryError(UserError):
    """A dead-letter entry that cannot be retried here; the reason says what to supply."""

    dead_letter_id: str
    reason: str

    def __init__(self, *, dead_letter_id: str, reason: str) -> None:
        super().__init__(
            f"cannot retry dead-letter entry {dead_letter_id!r}: {reason}",
            dead_letter_id=dead_letter_id,
            reason=reason,
        )


class EscalationError(PhalanxError):
    """A notifier did not accept an escalation; the entry or state change it reports stands.

    Raised by a notifier (the webhook, after its retries); whoever escalates logs it
    and records the failed delivery, never loses the escalated entry because of it.
    """

    notifier: str
    attempts: int
    reason: str

    retryable = True

    def __init__(self, *, notifier: str, attempts: int, reason: str) -> None:
        super().__init__(
            f"{notifier} did not accept the escalation after {attempts} attempt(s): {reason}; "
            "check that the endpoint is up and reachable from this process",
            notifier=notifier,
            attempts=attempts,
            reason=reason,
        )


class MCPConfigError(UserError):
    """An MCP server phalanx cannot use as configured; nothing was started or called."""

    server: str
    reason: str

    def __init__(self, *, server: str, reason: str) -> None:
        super().__init__(f"cannot use MCP server {server}: {reason}", server=server, reason=reason)


class MCPCallError(PhalanxError):
    """A call to an MCP server failed; raised by an MCP tool, so it is one failed attempt.

    `server` names the server (its command or URL), `tool` the tool called (None for
    the connection itself). Retryability lives on each leaf.
    """

    server: str
    tool: str | None


def _mcp_subject(server: str, tool: str | None) -> str:
    return f"MCP server {server}" if tool is None else f"MCP tool {tool!r} on server {server}"


class MCPConnectionError(MCPCallError):
    """The MCP server could not be started or reached, or the connection broke mid-call.

    Retryable: the connection is dropped, and the next attempt reconnects (for a
    stdio server, in a new process). A call cut off mid-way may have had its effect
    on the server, so retry only tools that tolerate it.
    """

    reason: str

    def __init__(
        self, *, server: str, tool: str | None = None, reason: str, retryable: bool = True
    ) -> None:
        fix = (
            "; the next call reconnects. If this keeps happening, check the server's "
            "command or URL and its stderr"
            if retryable
            else ""
        )
        super().__init__(
            f"{_mcp_subject(server, tool)}: connection failed: {reason}{fix}",
            server=server,
            tool=tool,
            reason=reason,
            retryable=retryable,
        )


#: JSON-RPC errors a server may not make again: an internal error, a request timeout.
_TRANSIENT_JSONRPC_CODES = frozenset({-32603, -32001})

_JSONRPC_FIXES = {
    -32700: "the server could not parse the request; the client and server disagree on the "
    "protocol",
    -32600: "the server says the request is invalid; check that it supports this MCP version",
    -32601: "the server has no such method or tool; list its tools again (reopen the toolset)",
    -32602: "the server rejects the arguments although they match the schema it listed; its "
    "tools may have changed, so reopen the toolset",
    -32603: "an internal error in the server; retrying may help, else see its logs",
    -32001: "the server timed the request out; retrying may help",
}


class MCPProtocolError(MCPCallError):
    """The MCP server answered with a JSON-RPC error, or with an answer that is not MCP.

    `error_code` is the JSON-RPC code (None for an answer that is not valid MCP);
    only an internal error (-32603) or a request timeout (-32001) is retryable.
    """

    error_code: int | None
    detail: str
    data: object

    def __init__(
        self,
        *,
        server: str,
        tool: str | None,
        error_code: int | None,
        detail: str,
        data: object = None,
    ) -> None:
        if error_code is None:
            what, fix = "an answer that is not valid MCP", "the server breaks the protocol"
        else:
            what = f"JSON-RPC error {error_code}"
            fix = _JSONRPC_FIXES.get(error_code, "see the server's documentation for this code")
        super().__init__(
            f"{_mcp_subject(server, tool)} answered with {what}: {detail}; {fix}",
            server=server,
            tool=tool,
            error_code=error_code,
            detail=detail,
            data=data,
            retryable=error_code in _TRANSIENT_JSONRPC_CODES,
        )


class MCPToolError(MCPCallError):
    """The MCP tool ran and reported an error (a result with `isError`); `detail` is its text.

    Not retryable unless the tool says so: an error result whose `_meta` (or
    structured content) holds `"retryable": true`.
    """

    detail: str

    def __init__(self, *, server: str, tool: str, detail: str, retryable: bool = False) -> None:
        fix = (
            "; the tool marked the error retryable"
            if retryable
            else "; not retried, since the tool ran and failed: change the arguments or fix "
            "what the tool depends on"
        )
        super().__init__(
            f"{_mcp_subject(server, tool)} reported an error: {detail}{fix}",
            server=server,
            tool=tool,
            detail=detail,
            retryable=retryable,
        )


class ConversationError(PhalanxError):
    """A peer conversation was stopped before it went quiet on its own.

    Quiet (quiescent) means no peer is handling a message and no message is in
    flight; anything else that ends a conversation is one of these errors, journaled
    in the coordinator's run as `ConversationEnded` with the reason.
    """


class RoundLimitError(ConversationError):
    """A message would have started round `max_rounds + 1`: the peers were stopped.

    A round is one hop of a chain of messages (the kickoff is round 1, a reply to it
    round 2, ...), so a bound on rounds stops peers that would answer each other
    forever.
    """

    conversation: str
    max_rounds: int
    peer: str
    to: str

    def __init__(self, *, conversation: str, max_rounds: int, peer: str, to: str) -> None:
        super().__init__(
            f"conversation {conversation!r} stopped: peer {peer!r} tried to send round "
            f"{max_rounds + 1} to {to!r}, past max_rounds={max_rounds}, so the peers would "
            "have kept talking (a loop?). Make the peers converge, or raise max_rounds",
            conversation=conversation,
            max_rounds=max_rounds,
            peer=peer,
            to=to,
        )


class PeerFailedError(ConversationError):
    """A peer's run ended before its conversation did; the other peers were stopped.

    A peer that returns early counts too: messages sent to it could never be taken,
    so the conversation could never go quiet.
    """

    conversation: str
    peer: str
    run_id: str
    status: str
    error_type: str
    message: str

    def __init__(
        self,
        *,
        conversation: str,
        peer: str,
        run_id: str,
        status: str,
        error_type: str,
        message: str,
    ) -> None:
        super().__init__(
            f"conversation {conversation!r} stopped: peer {peer!r} (run {run_id}) ended "
            f"{status} before the conversation was over: {error_type}: {message}. "
            f"`phalanx events {run_id}` shows what it did",
            conversation=conversation,
            peer=peer,
            run_id=run_id,
            status=status,
            error_type=error_type,
            message=message,
        )


class ConversationTimeoutError(ConversationError, TimeoutError):
    """The conversation was not quiet by its deadline; the peers were cancelled."""

    conversation: str
    timeout: float

    def __init__(self, *, conversation: str, timeout: float) -> None:
        super().__init__(
            f"conversation {conversation!r} was still going after its deadline of "
            f"{timeout:g}s; its peers were cancelled. Raise the deadline, or bound the "
            "peers' work (max_rounds, agent timeouts)",
            conversation=conversation,
            timeout=timeout,
        )


class ClaimLostError(PhalanxError):
    """A task's claim was taken over while its holder was not running.

    The holder's run died (its lease expired), another run claimed the task, and the
    holder, resumed, finds it no longer holds the claim: it gives the task up instead
    of doing the work a second time.
    """

    board: str
    task: str
    holder: str
    claimant: str

    def __init__(self, *, board: str, task: str, holder: str, claimant: str) -> None:
        super().__init__(
            f"task {task!r} on board {board!r} is now claimed by run {holder!r}: run "
            f"{claimant!r} stopped running while it held the claim, which was then "
            "released and taken over; the task was left to the new holder",
            board=board,
            task=task,
            holder=holder,
            claimant=claimant,
        )


# -- orchestration patterns: conductor -------------------------------------------------


class PlanError(UserError):
    """A conductor's plan or assignment that cannot run as written.

    Raised before anything is journaled: an agent name the conductor was not given,
    a task name used twice, a dependency missing from the plan, tasks that depend on
    each other.
    """

    plan: str
    reason: str

    def __init__(self, *, plan: str, reason: str) -> None:
        super().__init__(
            f"conductor {plan!r} cannot run this: {reason}; fix the plan (or the agents "
            "given to the Conductor) and run again",
            plan=plan,
            reason=reason,
        )
