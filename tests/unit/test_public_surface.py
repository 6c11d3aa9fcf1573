"""The names `import phalanx` offers: a change here is an API change, made on purpose."""

from __future__ import annotations

import importlib
import types

import pytest

import phalanx
import phalanx._errors

PUBLIC = {
    # journal
    "Clock", "SystemClock", "Event", "EventStore", "Lease", "Metadata", "NewEvent",
    "store_from_url",
    # durable workflows
    "workflow", "WorkflowContext", "Runtime", "open_runtime", "RunOutcome", "RetryPolicy",
    # scale-out
    "Worker",
    # tools (loaded on first use)
    "tool", "Tool", "call_tool", "CircuitBreaker", "DeadLetterQueue", "ToolUnavailable",
    # patterns
    "gather", "Branch", "BranchOutcome", "FanOutResult", "Policy", "Peer", "TaskBoard",
    "converse", "vote", "VoteResult", "Saga", "SagaStep", "SagaState", "SagaResult",
    "ForwardRecovery",
    # actors
    "Actor", "Mailbox", "Supervisor", "mailbox", "tell", "ask", "fail_after", "move_on_after",
    # shared memory
    "Memory", "open_memory_manager",
}  # fmt: skip


def test_every_public_name_resolves() -> None:
    """Each documented name is importable from the top-level package."""
    for name in PUBLIC:
        assert getattr(phalanx, name) is not None, name


#: Every error phalanx raises, all importable from `phalanx` (the hierarchy is drawn in
#: phalanx/_errors.py): adding, renaming or removing one is an API change.
ERRORS = {
    "PhalanxError", "UserError", "ConfigError",
    # journal
    "EventDataError", "PayloadTooLargeError", "StoreError", "StoreUnavailableError",
    "LeaseLostError", "StoreCorruptError", "CorruptEventError", "ConcurrencyError", "FencedError",
    "LeaseHeldError",
    # durable runs
    "WorkflowImportError", "UnknownRunError", "RunExistsError", "RunEndedError",
    "WorkflowInputError", "NonDeterminismError", "SimulationStuckError",
    "StepError", "StepCrashLoopError", "SignalTimeoutError", "RunFailedError",
    # actors
    "DeadlineExceededError", "ActorError", "MailboxFullError", "AskTimeoutError",
    "SupervisorEscalationError",
    # models and agents
    "ModelError", "ModelRateLimitedError", "ModelTimeoutError", "ModelConnectionError",
    "ModelResponseError", "AgentError", "MaxTurnsExceededError", "AgentTimeoutError",
    "OutputValidationError", "BudgetExceededError", "MessageTooLargeError",
    # tools, the dead-letter queue, MCP
    "ToolArgumentsError", "ToolFailed", "ToolError", "ToolAttemptError", "ToolTimeoutError",
    "CircuitOpenError", "ToolDeadLetteredError", "UnknownDeadLetterError",
    "DeadLetterClosedError", "DeadLetterRetryError", "EscalationError", "MCPCallError",
    "MCPConnectionError", "MCPProtocolError", "MCPToolError",
    # patterns
    "PartialResultError", "ConversationError", "RoundLimitError", "PeerFailedError",
    "ConversationTimeoutError", "ClaimLostError", "PlanError", "NoConsensusError",
    "SagaDefinitionError",
    # shared memory
    "MemoryConflictError", "MemoryStaleError", "MemoryUnavailableError", "MemoryVersionError",
    "UnknownMemoryKeyError",
    # pictures
    "PictureFormatError", "TopologyError",
    # evals
    "RubricError", "JudgeError",
}  # fmt: skip

#: Each layer's own errors, re-exported next to the rest of its surface.
PACKAGE_ERRORS = {
    "phalanx.agents": {
        "ModelError", "ModelRateLimitedError", "ModelTimeoutError", "ModelConnectionError",
        "ModelResponseError", "AgentError", "MaxTurnsExceededError", "AgentTimeoutError",
        "OutputValidationError", "BudgetExceededError", "MessageTooLargeError",
    },
    "phalanx.durable": {"LeaseLostError"},
    "phalanx.patterns": {"PlanError", "NoConsensusError", "SagaDefinitionError"},
    "phalanx.memory": {
        "MemoryConflictError", "MemoryStaleError", "MemoryUnavailableError", "MemoryVersionError",
        "UnknownMemoryKeyError",
    },
    "phalanx.evals": {"RubricError", "JudgeError"},
}  # fmt: skip


def _exported(module: types.ModuleType) -> set[str]:
    # Subpackages appear as attributes once anything imported them: not API decisions.
    return {
        n
        for n in dir(module)
        if not n.startswith("_") and not isinstance(getattr(module, n), types.ModuleType)
    }


def test_phalanx_exports_exactly_the_pinned_names() -> None:
    """`phalanx` exports the documented names and the pinned errors, nothing else."""
    exported = _exported(phalanx)
    assert exported - PUBLIC - ERRORS == set(), "exported but not pinned"
    assert ERRORS - exported == set(), "pinned but not exported"


def test_every_error_class_is_public_under_its_own_name() -> None:
    """Each error defined in phalanx/_errors.py is `phalanx.<its name>`, and only those."""
    defined = {
        name
        for name, value in vars(phalanx._errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert defined == ERRORS
    for name in ERRORS:
        error = getattr(phalanx, name)
        assert error.__name__ == name and issubclass(error, phalanx.PhalanxError)


@pytest.mark.parametrize("package", sorted(PACKAGE_ERRORS))
def test_packages_re_export_their_errors(package: str) -> None:
    """A layer's package exports its errors, the same classes as `phalanx` does."""
    module = importlib.import_module(package)
    exported = {n for n in _exported(module) if n.endswith(("Error", "Failed"))}
    assert exported == PACKAGE_ERRORS[package]
    for name in exported:
        assert getattr(module, name) is getattr(phalanx, name)


def test_workflow_context_offers_what_a_workflow_author_uses() -> None:
    """`ctx` has the workflow author's names only; pattern machinery is in `lowlevel`."""
    names = {n for n in dir(phalanx.WorkflowContext) if not n.startswith("_")}
    assert names == {
        "step", "sleep", "wait_for_signal", "child", "now", "random", "uuid",
        "idempotency_key", "attempt", "heartbeat", "deadline_at", "clock", "is_replaying",
    }  # fmt: skip


def test_lowlevel_surface_for_pattern_authors() -> None:
    """`phalanx.durable.lowlevel` offers the documented names, each resolvable."""
    from phalanx.durable import lowlevel

    assert set(lowlevel.__all__) == {
        "claim", "record", "record_later", "diverge", "decide", "step", "Operation",
        "run_child", "cancel_child", "child_silence", "inbox", "wait_inbox", "wake", "post",
        "run_is_live", "store", "epoch", "runs", "RunControl", "TERMINAL", "run_stream",
        "inbox_stream", "run_id_of", "run_shielded", "working",
    }  # fmt: skip
    for name in lowlevel.__all__:
        assert getattr(lowlevel, name) is not None, name


def test_child_runs_are_not_started_through_the_public_runtime() -> None:
    """`Runtime.run` and `Runtime.resume` take no `parent`: child runs have a private path."""
    import inspect

    for method in (phalanx.Runtime.run, phalanx.Runtime.resume):
        assert "parent" not in inspect.signature(method).parameters, method.__name__
