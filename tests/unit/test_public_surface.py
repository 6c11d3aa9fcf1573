"""The names `import phalanx` offers: a change here is an API change, made on purpose."""

from __future__ import annotations

import types

import phalanx

PUBLIC = {
    # journal
    "Clock", "SystemClock", "Event", "EventStore", "Lease", "Metadata", "NewEvent",
    "store_from_url",
    # durable workflows
    "workflow", "WorkflowContext", "Runtime", "open_runtime", "RunOutcome", "RetryPolicy",
    # tools (loaded on first use)
    "tool", "Tool", "call_tool", "CircuitBreaker", "DeadLetterQueue", "ToolUnavailable",
    # patterns
    "gather", "Branch", "BranchOutcome", "FanOutResult", "Policy", "Peer", "TaskBoard",
    "converse",
    # actors
    "Actor", "Mailbox", "Supervisor", "mailbox", "tell", "ask", "fail_after", "move_on_after",
}  # fmt: skip


def test_every_public_name_resolves() -> None:
    """Each documented name is importable from the top-level package."""
    for name in PUBLIC:
        assert getattr(phalanx, name) is not None, name


def test_no_unintended_names() -> None:
    """Besides the documented names, `phalanx` exports only errors."""
    # Subpackages appear as attributes once anything imported them: not API decisions.
    exported = {
        n
        for n in dir(phalanx)
        if not n.startswith("_") and not isinstance(getattr(phalanx, n), types.ModuleType)
    }
    extra = {n for n in exported - PUBLIC if not n.endswith(("Error", "Failed"))}
    assert extra == set()
    errors = exported - PUBLIC
    assert all(issubclass(getattr(phalanx, n), phalanx.PhalanxError) for n in errors)


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
        "inbox_stream",
    }  # fmt: skip
    for name in lowlevel.__all__:
        assert getattr(lowlevel, name) is not None, name
