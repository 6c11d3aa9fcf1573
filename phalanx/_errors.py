"""Every error phalanx raises, in one place.

The hierarchy, so callers can branch on what happened::

    PhalanxError
    ├── UserError                   misuse: fix the call, the input or the configuration
    │   ├── ConfigError             a setting phalanx cannot use: store URL, model, telemetry,
    │   │                           MCP server, actor policy (names the setting and the fix)
    │   ├── EventDataError          event data that is not a JSON object of JSON values
    │   │   └── PayloadTooLargeError   encoded data above the store's payload limit
    │   ├── WorkflowImportError     MODULE:FUNCTION that cannot be imported as a workflow
    │   ├── UnknownRunError         a run id the store has never seen
    │   ├── RunExistsError          starting a run under an id that is already taken
    │   ├── RunEndedError           signalling a run that has already ended
    │   ├── WorkflowInputError      inputs that do not match the workflow's signature
    │   ├── PlanError               a conductor plan that cannot run (unknown agent, cycle...)
    │   ├── UnknownMemoryKeyError   reading a key a shared memory has never held
    │   ├── MemoryVersionError      a compare-and-set against a version that never existed
    │   ├── SagaDefinitionError     a saga that cannot run (no compensation, a cycle...)
    │   ├── RubricError             an eval rubric that cannot be used (where, what, the fix)
    │   ├── UnknownDeadLetterError  a dead-letter entry id the store has never seen
    │   ├── DeadLetterRetryError    a dead-letter entry not retryable here (import, secrets)
    │   ├── PictureFormatError      a timeline/diagram file name with an unsupported extension
    │   └── TopologyError           a MODULE:OBJECT whose declared topology cannot be drawn
    ├── StoreError                  the journal refused or could not do what was asked
    │   ├── StoreUnavailableError   the store cannot be reached or opened (retryable)
    │   │   └── LeaseLostError      an outage outlasted a runner's lease: it stopped, resumable
    │   ├── StoreCorruptError       the store's files are damaged: nothing more is written
    │   ├── CorruptEventError       a stored row that cannot be decoded
    │   ├── ConcurrencyError        optimistic append lost: expected version != actual
    │   ├── FencedError             a write or renewal carried a stale lease epoch
    │   └── LeaseHeldError          someone else holds a live lease on the stream
    ├── NonDeterminismError         replay asked for another step than the journal holds
    ├── SimulationStuckError        a simulated world where every task waits forever
    ├── StepError                   a journaled step failure whose type cannot be rebuilt
    ├── StepCrashLoopError          a step's process died on every start: failed, not re-run
    ├── SignalTimeoutError          wait_for_signal ran past its timeout (also TimeoutError)
    ├── RunFailedError              a run (e.g. a child run) ended failed or cancelled
    ├── DeadlineExceededError       a fail_after scope ran past its deadline (also TimeoutError)
    ├── ActorError                  a durable actor's message or child could not go on
    │   ├── MailboxFullError        a mailbox stayed full: fail_fast, or block past the deadline
    │   ├── AskTimeoutError         no reply to an ask in time (also TimeoutError)
    │   └── SupervisorEscalationError  restarts over the intensity limit: the children stopped
    ├── ModelError                  a model call failed: provider, HTTP status, retryable?
    │   ├── ModelRateLimitedError   429; carries the server's Retry-After
    │   ├── ModelTimeoutError       no (complete) answer in time
    │   ├── ModelConnectionError    the endpoint cannot be reached (refused, DNS, TLS)
    │   └── ModelResponseError      an answer that cannot be understood
    ├── AgentError                  an agent loop could not reach a valid answer
    │   ├── MaxTurnsExceededError   the tool loop hit its turn limit
    │   ├── AgentTimeoutError       the agent ran past its timeout (also TimeoutError)
    │   ├── OutputValidationError   structured output stayed invalid after retries
    │   └── BudgetExceededError     a model call would pass its budget; no action could fit it
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
    ├── PartialResultError          reading a partial fan-out without accepting it
    ├── NoConsensusError            a vote found no answer to accept and was told to fail
    ├── MessageTooLargeError        a message between agents over its payload limit (not sent)
    ├── ConversationError           a peer conversation ended without going quiet on its own
    │   ├── RoundLimitError         a chain of messages ran past max_rounds (a loop, stopped)
    │   ├── PeerFailedError         a peer failed, was cancelled or left before the end
    │   └── ConversationTimeoutError  not quiet before its deadline (also TimeoutError)
    ├── ClaimLostError              a claimed task was taken over while its holder was down
    ├── MemoryConflictError         a compare-and-set based on a version that is no longer current
    ├── MemoryStaleError            an eventual read staler than its bound (also TimeoutError)
    ├── MemoryUnavailableError      no memory manager answered a write in time (also TimeoutError)
    └── JudgeError                  an LLM judge gave no usable verdict (carries its raw output)

Cancellation is not an error here: a cancelled run sees `asyncio.CancelledError`
(a `BaseException`), runs its cleanup, and the runtime journals `RunCancelled`.

Each error is a `@dataclass(kw_only=True, eq=False)`: its fields are declared once,
the constructor takes them by keyword (so mypy checks every raise), and `__str__`
builds the message from them, saying how to fix it where there is a fix. `eq=False`
keeps errors compared and hashed by identity, like every other exception. A few
bases (`PhalanxError`, `UserError`, `StoreError`...) also take a plain message.
Every error pickles by its attributes (`PhalanxError.__reduce__`), so it survives
being journaled and sent between processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PhalanxError(Exception):
    """Base of every error phalanx raises on purpose."""

    #: Whether trying the same operation again can succeed without a change. A class
    #: constant for most errors; a field where the raiser decides (`ToolFailed`).
    retryable: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException pickles as `cls(*args)`, which a keyword-only constructor refuses
        # (its fields are not in `args`). Rebuild the bare object and restore its
        # attributes instead: one rule for every subclass, with fields or a plain message,
        # and no constructor run twice (derived fields such as `retryable` come back as
        # they were).
        return (_new_error, (type(self), self.args), self.__dict__)


def _new_error(cls: type[PhalanxError], args: tuple[Any, ...]) -> PhalanxError:
    return cls.__new__(cls, *args)


class UserError(PhalanxError):
    """The caller used phalanx wrongly; the message says how to fix it."""


@dataclass(kw_only=True, eq=False)
class ConfigError(UserError):
    """A setting phalanx cannot use as given; nothing was started with it.

    `setting` names what was set (`"store URL"`, `"model"`, `"MCP server"`, `"OTLP
    protocol"`, `"MailboxPolicy.capacity"`...), `value` the value given (None when
    there is none to show, e.g. a package that is not installed), `reason` what is
    wrong and how to fix it.
    """

    setting: str
    value: object = None
    reason: str

    def __str__(self) -> str:
        given = "" if self.value is None else f" {self.value!r}"
        return f"cannot use {self.setting}{given}: {self.reason}"


# -- the journal ------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class EventDataError(UserError):
    """Event data that cannot be journaled; nothing was written."""

    stream_id: str
    event_type: str
    reason: str
    #: The JSONPath of the first bad value in the event's data (`$.result.items[3]`),
    #: or None when the problem is not one value (the type, the stream id).
    path: str | None = None

    def __str__(self) -> str:
        where = "" if self.path is None else f"{self.path}: "
        return (
            f"cannot journal event {self.event_type!r} on stream {self.stream_id!r}: "
            f"{where}{self.reason}; nothing was written"
        )


@dataclass(kw_only=True, eq=False)
class PayloadTooLargeError(EventDataError):
    """Encoded event data above the store's payload limit; nothing was written."""

    size: int
    limit: int
    reason: str = field(default="payload too large", init=False)
    path: str | None = field(default=None, init=False)

    def __str__(self) -> str:
        return (
            f"cannot journal event {self.event_type!r} on stream {self.stream_id!r}: its "
            f"data is {self.size} bytes encoded, above the {self.limit}-byte limit; store "
            "large blobs elsewhere and journal a reference, or raise the store's limit "
            "(?max_payload_bytes=N on the store URL); nothing was written"
        )


class StoreError(PhalanxError):
    """The journal store refused or failed an operation."""


@dataclass(kw_only=True, eq=False)
class StoreUnavailableError(StoreError):
    """The store cannot be reached, opened or locked in time; retry when it is back."""

    store: str
    reason: str

    retryable = True

    def __str__(self) -> str:
        return f"store {self.store} is unavailable: {self.reason}"


@dataclass(kw_only=True, eq=False)
class LeaseLostError(StoreUnavailableError):
    """A runner could not reach the store before its lease expired; it stopped writing.

    Raised when a store outage outlasts the runner's lease: another runner may now
    take the run over, so this one writes nothing more. The run is not lost: it
    resumes from its journal once the store is back.
    """

    def __str__(self) -> str:
        return f"store {self.store} is unavailable and the lease ran out: {self.reason}"


@dataclass(kw_only=True, eq=False)
class StoreCorruptError(StoreError):
    """The store's files are damaged (SQLite: "database disk image is malformed").

    Nothing more is written to it: writing into a damaged database can spread the
    damage. Not retryable; restore a backup or salvage what is readable.
    """

    store: str
    reason: str

    def __str__(self) -> str:
        return (
            f"store {self.store} is corrupt: {self.reason}; phalanx writes nothing more to "
            "it. Restore it from a backup, or salvage what is readable (for SQLite: sqlite3 "
            "FILE .recover | sqlite3 NEW.db)"
        )


@dataclass(kw_only=True, eq=False)
class CorruptEventError(StoreError):
    """A stored event row that cannot be decoded; it names the row to repair."""

    stream_id: str
    seq: int
    position: int
    reason: str

    def __str__(self) -> str:
        return (
            f"corrupt event at stream {self.stream_id!r} seq {self.seq} (global position "
            f"{self.position}): {self.reason}"
        )


@dataclass(kw_only=True, eq=False)
class ConcurrencyError(StoreError):
    """An optimistic append found another version than expected; nothing was written.

    Re-read the stream, decide again, and append with the new version.
    """

    stream_id: str
    expected_version: int
    actual_version: int

    retryable = True

    def __str__(self) -> str:
        return (
            f"stream {self.stream_id!r} is at version {self.actual_version}, not the "
            f"expected {self.expected_version}: someone else appended first; nothing was "
            "written"
        )


@dataclass(kw_only=True, eq=False)
class FencedError(StoreError):
    """A write or lease renewal carried an epoch that is no longer the stream's lease.

    The holder was taken over (or never held the lease) and must stop writing.
    """

    stream_id: str
    epoch: int | None
    current_epoch: int | None

    def __str__(self) -> str:
        if self.epoch is None:
            detail = (
                f"the stream is leased (epoch {self.current_epoch}) and the write carried no epoch"
            )
        elif self.current_epoch is None:
            detail = f"the write carried epoch {self.epoch} but the stream has no lease"
        else:
            detail = (
                f"the write carried epoch {self.epoch} but the lease is now at epoch "
                f"{self.current_epoch}"
            )
        return (
            f"fenced out of stream {self.stream_id!r}: {detail}; another runner owns it, "
            "so this one must stop writing"
        )


@dataclass(kw_only=True, eq=False)
class LeaseHeldError(StoreError):
    """Someone else holds a live lease; wait for it to expire or take it over."""

    stream_id: str
    owner: str
    epoch: int
    expires_at: float

    retryable = True

    def __str__(self) -> str:
        return (
            f"stream {self.stream_id!r} is leased by {self.owner!r} (epoch {self.epoch}) "
            f"until {self.expires_at:.3f}; wait for the lease to expire or take it over"
        )


# -- durable runs -----------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class WorkflowImportError(UserError):
    """A `MODULE:FUNCTION` reference that does not name an importable workflow."""

    ref: str
    reason: str

    def __str__(self) -> str:
        return (
            f"cannot load workflow {self.ref!r}: {self.reason}. Give MODULE:FUNCTION, where "
            "MODULE is importable from the current directory or PYTHONPATH (or a path to a "
            ".py file) and FUNCTION is an async def decorated with @phalanx.workflow"
        )


@dataclass(kw_only=True, eq=False)
class UnknownRunError(UserError):
    """No run with this id exists in the store."""

    run_id: str
    store: str

    def __str__(self) -> str:
        return (
            f"no run {self.run_id!r} in store {self.store}; `phalanx runs` lists the known "
            "runs (check --store / PHALANX_STORE)"
        )


@dataclass(kw_only=True, eq=False)
class RunExistsError(UserError):
    """A new run was started under an id that already has a journal."""

    run_id: str

    def __str__(self) -> str:
        return (
            f"run {self.run_id!r} already exists; continue it with `phalanx resume "
            f"{self.run_id}` or pick another --run-id"
        )


@dataclass(kw_only=True, eq=False)
class RunEndedError(UserError):
    """A signal was sent to a run that has already ended: nobody would receive it."""

    run_id: str
    status: str

    def __str__(self) -> str:
        return (
            f"run {self.run_id!r} already ended ({self.status}); a signal would never be received"
        )


@dataclass(kw_only=True, eq=False)
class WorkflowInputError(UserError):
    """A run's inputs do not match the workflow's keyword arguments and their types."""

    workflow: str
    errors: str

    def __str__(self) -> str:
        return f"inputs do not match workflow {self.workflow}: {self.errors}"


@dataclass(kw_only=True, eq=False)
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

    def __str__(self) -> str:
        return (
            f"run {self.run_id!r} diverged from its journal at operation {self.position}: "
            f"the journal holds {self.expected}, the code now asks for {self.actual}; the "
            "workflow code changed under a running run. Restore the code it started with "
            "to finish it, or start a new run"
        )


@dataclass(kw_only=True, eq=False)
class SimulationStuckError(PhalanxError):
    """Under simulation, every task waited on something nobody would ever set.

    Outside a simulation this would be a process that hangs silently: a model that
    never answers with no deadline around it, a signal nobody sends. Put a deadline
    (`fail_after`, a fan-out deadline, an agent timeout) around what may hang.
    """

    virtual_time: float

    def __str__(self) -> str:
        return (
            f"every task waits and no timer is left (at virtual t={self.virtual_time:.3f}s): "
            "a hang nothing would ever end; put a deadline around what may hang"
        )


@dataclass(kw_only=True, eq=False)
class StepError(PhalanxError):
    """A step failed with an exception whose type could not be rebuilt on replay."""

    step: str
    error_type: str
    message: str

    def __str__(self) -> str:
        return f"step {self.step!r} failed with {self.error_type}: {self.message}"


@dataclass(kw_only=True, eq=False)
class StepCrashLoopError(PhalanxError):
    """A step's process died on each of its last `crashes` starts, so it was not re-run.

    A step in flight at a crash runs again on resume; one that kills its process every
    time (a native crash, the OOM killer, `os._exit`) would loop for ever. Its starts
    are journaled and counted, and past the runtime's `crash_limit` the step fails with
    this error instead (not retried).
    """

    run_id: str
    step: str
    op: int
    attempt: int
    crashes: int

    def __str__(self) -> str:
        return (
            f"step {self.step!r} (operation {self.op} of run {self.run_id!r}) started "
            f"{self.crashes} times on attempt {self.attempt} and its process died each "
            "time before it finished, so it was failed instead of run again. Find what "
            "kills the process (a native crash, the OOM killer, os._exit), then start a "
            "new run; Runtime(crash_limit=...) sets how many starts are allowed"
        )


@dataclass(kw_only=True, eq=False)
class SignalTimeoutError(PhalanxError, TimeoutError):
    """No signal of the awaited name arrived before the timeout."""

    run_id: str
    name: str
    timeout: float

    def __str__(self) -> str:
        return (
            f"run {self.run_id!r} waited {self.timeout:g}s for signal {self.name!r} and "
            f"none arrived; send one with `phalanx signal {self.run_id} {self.name} --data "
            "JSON`"
        )


@dataclass(kw_only=True, eq=False)
class RunFailedError(PhalanxError):
    """A run ended failed or cancelled; raised where its result was awaited."""

    run_id: str
    status: str
    error_type: str
    message: str

    def __str__(self) -> str:
        return f"run {self.run_id!r} ended {self.status}: {self.error_type}: {self.message}"


# -- actors -----------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class DeadlineExceededError(PhalanxError, TimeoutError):
    """The body of a `fail_after` scope did not finish before its deadline."""

    timeout: float

    def __str__(self) -> str:
        return (
            f"deadline of {self.timeout:g}s exceeded; the work inside the scope was "
            "cancelled. Raise the timeout, or use move_on_after to carry on without the "
            "result"
        )


class ActorError(PhalanxError):
    """A durable actor's message could not be delivered, or its children could not go on."""


@dataclass(kw_only=True, eq=False)
class MailboxFullError(ActorError):
    """A mailbox stayed at capacity (`fail_fast`, or `block` past the sender's deadline).

    The refusal is journaled in the sending run: a replay raises it again.
    """

    path: str
    capacity: int
    message_id: str

    retryable = True

    def __str__(self) -> str:
        return (
            f"mailbox of actor {self.path!r} is full (capacity {self.capacity}); message "
            f"{self.message_id!r} was not delivered. Send again later, slow the sender down, "
            "raise the capacity, or use when_full='block' with a longer tell(deadline=...)"
        )


@dataclass(kw_only=True, eq=False)
class AskTimeoutError(ActorError, TimeoutError):
    """An ask got no reply within its timeout; the actor may still handle the request.

    Journaled in the asking run (`ReplyTimedOut`): a replay raises it again.
    """

    path: str
    timeout: float
    message_id: str

    retryable = True

    def __str__(self) -> str:
        return (
            f"actor {self.path!r} did not answer message {self.message_id!r} within "
            f"{self.timeout:g}s; it may still handle it. Raise the timeout, or ask again (a "
            "new request)"
        )


@dataclass(kw_only=True, eq=False)
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

    def __str__(self) -> str:
        return (
            f"supervisor {self.supervisor!r} gave up: more than {self.restarts} restarts "
            f"within {self.within:g}s, the last after {self.child!r} failed with "
            f"{self.error_type}: {self.error_message}. Its children were cancelled. Fix the "
            "failing actor, or allow more restarts (Supervisor(ctx, name, max_restarts=..., "
            "within=...))"
        )


# -- models and agents ------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class ModelError(PhalanxError):
    """A model call failed. `retryable` says whether the same call may succeed later."""

    provider: str
    status: int | None
    detail: str
    retryable: bool = False

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no HTTP status"
        retry = "; retrying may help" if self.retryable else ""
        return f"{self.provider} model call failed ({where}): {self.detail}{retry}"


@dataclass(kw_only=True, eq=False)
class ModelRateLimitedError(ModelError):
    """The provider said 429: slow down; `retry_after` is its hint in seconds, if any."""

    status: int | None = 429
    retry_after: float | None = None
    retryable: bool = field(default=True, init=False)

    def __str__(self) -> str:
        after = f"; retry after {self.retry_after:g}s" if self.retry_after is not None else ""
        return f"{self.provider} rate-limited the call (HTTP {self.status}): {self.detail}{after}"


@dataclass(kw_only=True, eq=False)
class ModelTimeoutError(ModelError):
    """The model did not answer (or finish answering) in time."""

    status: int | None = None
    retryable: bool = field(default=True, init=False)


@dataclass(kw_only=True, eq=False)
class ModelConnectionError(ModelError):
    """The endpoint could not be reached at all (refused, unknown host, TLS)."""

    status: int | None = None
    retryable: bool = field(default=True, init=False)


@dataclass(kw_only=True, eq=False)
class ModelResponseError(ModelError):
    """The provider answered with something that is not a valid response."""

    status: int | None = None
    retryable: bool = True


class AgentError(PhalanxError):
    """An agent's loop ended without a valid answer."""


@dataclass(kw_only=True, eq=False)
class MaxTurnsExceededError(AgentError):
    """The agent used all its turns without a final answer; nothing was truncated."""

    agent: str
    max_turns: int

    def __str__(self) -> str:
        return (
            f"agent {self.agent!r} reached its limit of {self.max_turns} turns without a "
            "final answer; raise max_turns or make the task smaller"
        )


@dataclass(kw_only=True, eq=False)
class AgentTimeoutError(AgentError, TimeoutError):
    """The agent did not finish within its timeout."""

    agent: str
    timeout: float

    def __str__(self) -> str:
        return f"agent {self.agent!r} did not finish within {self.timeout:g}s"


@dataclass(kw_only=True, eq=False)
class OutputValidationError(AgentError):
    """The agent's structured output stayed invalid; carries the last raw output."""

    agent: str
    attempts: int
    last_output: str
    errors: str

    def __str__(self) -> str:
        return (
            f"agent {self.agent!r} gave no valid structured output in {self.attempts} "
            f"attempts; last validation errors: {self.errors}"
        )


# -- tools: reliability and the dead-letter queue ---------------------------------------


@dataclass(kw_only=True, eq=False)
class ToolArgumentsError(PhalanxError):
    """A tool call whose arguments are not JSON or break the tool's schema.

    The agent loop sends the message back to the model instead of running the tool.
    """

    tool: str
    errors: str

    def __str__(self) -> str:
        return f"invalid arguments for tool {self.tool!r}: {self.errors}"


@dataclass(kw_only=True, eq=False)
class ToolFailed(PhalanxError):
    """Raised by a tool to say how its failure should be treated.

    Any exception a tool raises is a failed attempt; raise this one to decide yourself
    whether trying again can help (`retryable`), to report an HTTP `status`, or to
    pass on the server's `retry_after` hint (seconds). Example::

        if response.status_code == 409:
            raise phalanx.ToolFailed("order already exists", retryable=False, status=409)
    """

    reason: str = field(kw_only=False)
    retryable: bool = True
    status: int | None = None
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass(kw_only=True, eq=False)
class ToolError(PhalanxError):
    """A reliable tool call (retries, breaker, dead-letter queue) produced no result."""

    tool: str

    def __str__(self) -> str:
        return f"tool {self.tool!r} produced no result"


@dataclass(kw_only=True, eq=False)
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
    traceback: str = ""
    status: int | None = None
    retryable: bool = True
    retry_after: float | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status is not None else ""
        policy = "" if self.retryable else "; its retry policy does not retry this error"
        return (
            f"tool {self.tool!r} attempt {self.attempt} failed{where}: {self.error_type}: "
            f"{self.message}{policy}"
        )


@dataclass(kw_only=True, eq=False)
class ToolTimeoutError(ToolAttemptError, TimeoutError):
    """An attempt of a tool call ran past the tool's timeout and was cancelled."""

    timeout: float
    error_type: str = field(default="TimeoutError", init=False)
    message: str = field(init=False)
    traceback: str = field(default="", init=False)
    status: int | None = field(default=None, init=False)
    retry_after: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.message = f"no result within the tool's timeout of {self.timeout:g}s"

    def __str__(self) -> str:
        return (
            f"tool {self.tool!r} attempt {self.attempt} timed out: {self.message}; raise "
            "the tool's timeout if the work is legitimately slow"
        )


@dataclass(kw_only=True, eq=False)
class CircuitOpenError(ToolError):
    """The tool's circuit breaker is open: the call was refused without touching the tool.

    `open_until` (Unix seconds) is when the breaker lets a probe call through; the
    error is not retried within the call (every retry would be refused too).
    """

    step: str
    attempt: int
    state: str
    open_until: float
    key: str | None = None

    def __str__(self) -> str:
        why = (
            "its half-open probes are all in use"
            if self.state == "half_open"
            else f"it is open until {self.open_until:.3f}"
        )
        return (
            f"tool {self.tool!r} was not called: its circuit breaker is "
            f"{self.state.replace('_', '-')} and {why}, after too many recent failures. "
            f"Wait for the breaker to close, or fix the tool and see `phalanx tools stats "
            f"--tool {self.tool}`"
        )


@dataclass(kw_only=True, eq=False)
class ToolDeadLetteredError(ToolError):
    """A tool call failed for good and was dead-lettered (its policy is `fail`).

    The entry keeps the call's whole context; `phalanx dlq show ID` prints it.
    """

    dead_letter_id: str
    step: str
    attempts: int
    error_type: str
    message: str

    def __str__(self) -> str:
        entry = self.dead_letter_id
        return (
            f"tool {self.tool!r} failed after {self.attempts} attempt(s) ({self.error_type}: "
            f"{self.message}); the call is dead-lettered as {entry!r}: inspect it with "
            f"`phalanx dlq show {entry}`, and once the fault is fixed `phalanx dlq retry "
            f"{entry}` (or resolve it by hand with `phalanx dlq resolve`)"
        )


@dataclass(kw_only=True, eq=False)
class UnknownDeadLetterError(UserError):
    """No dead-letter entry with this id exists in the store."""

    dead_letter_id: str
    store: str

    def __str__(self) -> str:
        return (
            f"no dead-letter entry {self.dead_letter_id!r} in store {self.store}; `phalanx "
            "dlq list --status all` lists them (check --store / PHALANX_STORE)"
        )


@dataclass(kw_only=True, eq=False)
class DeadLetterClosedError(PhalanxError):
    """An action on a dead-letter entry that was already resolved or discarded."""

    dead_letter_id: str
    status: str
    by: str

    def __str__(self) -> str:
        return (
            f"dead-letter entry {self.dead_letter_id!r} is already {self.status} (by "
            f"{self.by}); nothing was changed. `phalanx dlq show {self.dead_letter_id}` "
            "shows what happened"
        )


@dataclass(kw_only=True, eq=False)
class DeadLetterRetryError(UserError):
    """A dead-letter entry that cannot be retried here; the reason says what to supply."""

    dead_letter_id: str
    reason: str

    def __str__(self) -> str:
        return f"cannot retry dead-letter entry {self.dead_letter_id!r}: {self.reason}"


@dataclass(kw_only=True, eq=False)
class EscalationError(PhalanxError):
    """A notifier did not accept an escalation; the entry or state change it reports stands.

    Raised by a notifier (the webhook, after its retries); whoever escalates logs it
    and records the failed delivery, never loses the escalated entry because of it.
    """

    notifier: str
    attempts: int
    reason: str

    retryable = True

    def __str__(self) -> str:
        return (
            f"{self.notifier} did not accept the escalation after {self.attempts} "
            f"attempt(s): {self.reason}; check that the endpoint is up and reachable from "
            "this process"
        )


# -- tools: MCP servers -----------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class MCPCallError(PhalanxError):
    """A call to an MCP server failed; raised by an MCP tool, so it is one failed attempt.

    `server` names the server (its command or URL), `tool` the tool called (None for
    the connection itself). Retryability lives on each leaf.
    """

    server: str
    tool: str | None = None

    @property
    def _subject(self) -> str:
        if self.tool is None:
            return f"MCP server {self.server}"
        return f"MCP tool {self.tool!r} on server {self.server}"

    def __str__(self) -> str:
        return f"{self._subject}: call failed"


@dataclass(kw_only=True, eq=False)
class MCPConnectionError(MCPCallError):
    """The MCP server could not be started or reached, or the connection broke mid-call.

    Retryable: the connection is dropped, and the next attempt reconnects (for a
    stdio server, in a new process). A call cut off mid-way may have had its effect
    on the server, so retry only tools that tolerate it.
    """

    reason: str
    retryable: bool = True

    def __str__(self) -> str:
        fix = (
            "; the next call reconnects. If this keeps happening, check the server's "
            "command or URL and its stderr"
            if self.retryable
            else ""
        )
        return f"{self._subject}: connection failed: {self.reason}{fix}"


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


@dataclass(kw_only=True, eq=False)
class MCPProtocolError(MCPCallError):
    """The MCP server answered with a JSON-RPC error, or with an answer that is not MCP.

    `error_code` is the JSON-RPC code (None for an answer that is not valid MCP);
    only an internal error (-32603) or a request timeout (-32001) is retryable.
    """

    error_code: int | None
    detail: str
    data: object = None
    retryable: bool = field(init=False)

    def __post_init__(self) -> None:
        self.retryable = self.error_code in _TRANSIENT_JSONRPC_CODES

    def __str__(self) -> str:
        if self.error_code is None:
            what, fix = "an answer that is not valid MCP", "the server breaks the protocol"
        else:
            what = f"JSON-RPC error {self.error_code}"
            fix = _JSONRPC_FIXES.get(
                self.error_code, "see the server's documentation for this code"
            )
        return f"{self._subject} answered with {what}: {self.detail}; {fix}"


@dataclass(kw_only=True, eq=False)
class MCPToolError(MCPCallError):
    """The MCP tool ran and reported an error (a result with `isError`); `detail` is its text.

    Not retryable unless the tool says so: an error result whose `_meta` (or
    structured content) holds `"retryable": true`.
    """

    tool: str
    detail: str
    retryable: bool = False

    def __str__(self) -> str:
        fix = (
            "; the tool marked the error retryable"
            if self.retryable
            else "; not retried, since the tool ran and failed: change the arguments or fix "
            "what the tool depends on"
        )
        return f"{self._subject} reported an error: {self.detail}{fix}"


# -- orchestration patterns -------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class PartialResultError(PhalanxError):
    """A fan-out's values were read although branches are missing and nobody said so.

    Synthesising from partial data must be a visible decision: call
    `await result.accept_partial(reason)` (journaled), or handle `result.missing`.
    """

    fan_out: str
    missing: list[str]

    def __str__(self) -> str:
        return (
            f"fan-out {self.fan_out!r} is partial (no value from {', '.join(self.missing)}); "
            "call `await result.accept_partial(reason)` to go on without them, visibly"
        )


class ConversationError(PhalanxError):
    """A peer conversation was stopped before it went quiet on its own.

    Quiet (quiescent) means no peer is handling a message and no message is in
    flight; anything else that ends a conversation is one of these errors, journaled
    in the coordinator's run as `ConversationEnded` with the reason.
    """


@dataclass(kw_only=True, eq=False)
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

    def __str__(self) -> str:
        return (
            f"conversation {self.conversation!r} stopped: peer {self.peer!r} tried to send "
            f"round {self.max_rounds + 1} to {self.to!r}, past max_rounds={self.max_rounds}, "
            "so the peers would have kept talking (a loop?). Make the peers converge, or "
            "raise max_rounds"
        )


@dataclass(kw_only=True, eq=False)
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

    def __str__(self) -> str:
        return (
            f"conversation {self.conversation!r} stopped: peer {self.peer!r} (run "
            f"{self.run_id}) ended {self.status} before the conversation was over: "
            f"{self.error_type}: {self.message}. `phalanx events {self.run_id}` shows what "
            "it did"
        )


@dataclass(kw_only=True, eq=False)
class ConversationTimeoutError(ConversationError, TimeoutError):
    """The conversation was not quiet by its deadline; the peers were cancelled."""

    conversation: str
    timeout: float

    def __str__(self) -> str:
        return (
            f"conversation {self.conversation!r} was still going after its deadline of "
            f"{self.timeout:g}s; its peers were cancelled. Raise the deadline, or bound the "
            "peers' work (max_rounds, agent timeouts)"
        )


@dataclass(kw_only=True, eq=False)
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

    def __str__(self) -> str:
        return (
            f"task {self.task!r} on board {self.board!r} is now claimed by run "
            f"{self.holder!r}: run {self.claimant!r} stopped running while it held the "
            "claim, which was then released and taken over; the task was left to the new "
            "holder"
        )


@dataclass(kw_only=True, eq=False)
class SagaDefinitionError(UserError):
    """A saga declared so that it could not be undone, or could not run at all.

    Raised when the saga is defined, before anything is journaled: a step without a
    compensation where one is required, a compensation that cannot take the step's
    result, a dependency on a step that is not there, steps that depend on each other.
    """

    saga: str
    reason: str

    def __str__(self) -> str:
        return f"saga {self.saga!r} cannot be defined: {self.reason}"


@dataclass(kw_only=True, eq=False)
class PlanError(UserError):
    """A conductor's plan or assignment that cannot run as written.

    Raised before anything is journaled: an agent name the conductor was not given,
    a task name used twice, a dependency missing from the plan, tasks that depend on
    each other.
    """

    plan: str
    reason: str

    def __str__(self) -> str:
        return (
            f"conductor {self.plan!r} cannot run this: {self.reason}; fix the plan (or the "
            "agents given to the Conductor) and run again"
        )


# -- redundancy and backpressure (issue 16) ----------------------------------------------


@dataclass(kw_only=True, eq=False)
class NoConsensusError(PhalanxError):
    """A vote found no answer it could accept, and its policy said fail, not escalate.

    Every replica's answer is in `votes` (and in the run's `DisagreementDetected`).
    """

    vote: str
    reason: str
    votes: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"vote {self.vote!r} reached no consensus ({self.reason}); votes: {self.votes}. "
            "Escalate to a person instead (on_no_consensus='escalate'), add a judge, or "
            "loosen the rule"
        )


# -- shared memory ----------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class MemoryConflictError(PhalanxError):
    """A compare-and-set lost: the key moved past the version the write was based on.

    Nothing was written. Carries the key's current version and value, so the caller
    (or the model, as a tool result) can merge its change into them and try again.
    """

    memory: str
    key: str
    based_on: int
    current_version: int
    current_value: Any = None

    retryable = True

    def __str__(self) -> str:
        return (
            f"memory {self.memory!r}: key {self.key!r} is at version {self.current_version}, "
            f"not {self.based_on} as the write assumed; someone else wrote it first and "
            "nothing was written. Merge your change into the current value and write again "
            f"based on version {self.current_version} (or use update(key, fn))"
        )


@dataclass(kw_only=True, eq=False)
class UnknownMemoryKeyError(UserError):
    """A read (or history) of a key the memory has never held."""

    memory: str
    key: str

    def __str__(self) -> str:
        return (
            f"memory {self.memory!r} has no key {self.key!r}; create it with "
            "cas(key, value, based_on=0), or check the key's spelling"
        )


@dataclass(kw_only=True, eq=False)
class MemoryVersionError(UserError):
    """A compare-and-set based on a version of the key that never existed; nothing written."""

    memory: str
    key: str
    based_on: int
    current_version: int

    def __str__(self) -> str:
        exists = (
            "does not exist yet (version 0)"
            if self.current_version == 0
            else f"is at version {self.current_version}"
        )
        return (
            f"memory {self.memory!r}: key {self.key!r} never had version {self.based_on} (it "
            f"{exists}); base a write on a version you read, or on 0 to create the key; "
            "nothing was written"
        )


@dataclass(kw_only=True, eq=False)
class MemoryStaleError(PhalanxError, TimeoutError):
    """An eventual read stayed further behind than its `max_staleness` until its deadline."""

    memory: str
    behind_positions: int
    behind_seconds: float
    max_positions: int | None
    max_seconds: float | None
    waited: float

    retryable = True

    def __str__(self) -> str:
        bound = " and ".join(
            part
            for part in (
                None if self.max_positions is None else f"{self.max_positions} positions",
                None if self.max_seconds is None else f"{self.max_seconds:g}s",
            )
            if part
        )
        return (
            f"memory {self.memory!r}: the projection is {self.behind_positions} positions and "
            f"{self.behind_seconds:.3f}s behind, past the bound of {bound}, after waiting "
            f"{self.waited:g}s; wait longer, loosen max_staleness, or read linearizably"
        )


@dataclass(kw_only=True, eq=False)
class MemoryUnavailableError(PhalanxError, TimeoutError):
    """No memory manager answered a write in time; it may still apply it later.

    The request is in the memory's request stream: a manager that starts (or takes
    over) later handles it, and a retry with the same request id gets that answer.
    """

    memory: str
    request: str
    timeout: float

    retryable = True

    def __str__(self) -> str:
        return (
            f"memory {self.memory!r}: no manager answered request {self.request!r} within "
            f"{self.timeout:g}s; start one (open_memory_manager), take over a dead one "
            "(take_over=True), or wait longer"
        )


@dataclass(kw_only=True, eq=False)
class BudgetExceededError(AgentError):
    """A model call would have gone over its budget, and no declared action could fit it.

    The call was not sent. `limit` names what ran out (`context_tokens`,
    `input_tokens`, `output_tokens`, `cost`), `needed` what the call wanted and
    `available` what was left; `tried` the budget actions that ran first.
    """

    agent: str
    scope: str
    limit: str
    needed: float
    available: float
    tried: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        tried = f" after {', '.join(self.tried)}" if self.tried else ""
        return (
            f"agent {self.agent!r}: the next model call needs {self.needed:g} {self.limit} but "
            f"{self.scope} has {self.available:g} left{tried}; the call was not sent. Raise the "
            "budget, or declare actions that shrink the context (compact, summarize, "
            "final_answer)"
        )


@dataclass(kw_only=True, eq=False)
class MessageTooLargeError(PhalanxError):
    """A message between agents is over its payload limit; refused at the sender, not cut.

    `unit` is `bytes` or `tokens` (tokens estimated as `phalanx.agents` does).
    """

    sender: str
    recipient: str
    unit: str
    size: int
    limit: int

    def __str__(self) -> str:
        return (
            f"message from {self.sender!r} to {self.recipient!r} is {self.size} {self.unit}, "
            f"over the limit of {self.limit}; it was not sent (nothing is truncated). "
            "Summarise it, split it, or raise the limit"
        )


# -- pictures and the dashboard ---------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class PictureFormatError(UserError):
    """An output file whose extension no picture of this kind can be written as."""

    path: str
    picture: str
    formats: list[str]

    def __str__(self) -> str:
        return (
            f"cannot write a {self.picture} to {self.path!r}: give a file ending in "
            f"{', '.join(self.formats)}"
        )


@dataclass(kw_only=True, eq=False)
class TopologyError(UserError):
    """A `MODULE:OBJECT` whose declared topology cannot be drawn."""

    ref: str
    reason: str

    def __str__(self) -> str:
        return (
            f"cannot draw {self.ref!r}: {self.reason}. Give MODULE:OBJECT naming an Agent, a "
            "tool, a workflow, or a list or dict of them"
        )


# -- evals -------------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class RubricError(UserError):
    """A rubric that cannot be used: unknown evaluator, threshold off the scale, ...

    Raised when the rubric is loaded, before any run is scored.
    """

    source: str
    where: str
    problem: str

    def __str__(self) -> str:
        place = f" at {self.where}" if self.where else ""
        return f"rubric {self.source}{place}: {self.problem}"


@dataclass(kw_only=True, eq=False)
class JudgeError(PhalanxError):
    """An LLM judge gave no usable verdict: garbage after repair, a hang, a model error.

    `raw_output` is what the judge last said (empty if it said nothing), so a person can
    see why it was refused.
    """

    judge: str
    criterion: str
    reason: str
    raw_output: str = ""

    def __str__(self) -> str:
        raw = self.raw_output if len(self.raw_output) <= 500 else self.raw_output[:497] + "..."
        said = f"; its raw output: {raw!r}" if self.raw_output else ""
        return (
            f"judge {self.judge!r} gave no usable verdict on {self.criterion!r}: "
            f"{self.reason}{said}"
        )
