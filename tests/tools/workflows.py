"""Tools and workflows the tool-reliability tests run (module level: runs re-import them).

Faults are switched by the tests: `FAULTS[tool]` is how many more calls of that tool
fail; `gateway` and `charge` fail while the file named by `$TOOLS_TEST_FAULT` exists,
so a test can fix the fault for another process (the CLI) by deleting the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import phalanx
from phalanx import RetryPolicy, ToolFailed
from phalanx.agents import Agent, Rule, Script, ScriptedModel, Turn
from phalanx.tools import CircuitBreaker, Escalation, ToolUnavailable, call_tool, tool

CALLS: dict[str, int] = {}
FAULTS: dict[str, int] = {}
ESCALATIONS: list[Escalation] = []
FAULT_ENV = "TOOLS_TEST_FAULT"


def reset() -> None:
    CALLS.clear()
    FAULTS.clear()
    ESCALATIONS.clear()


def _count(name: str) -> bool:
    """Count a call; True if it must fail."""
    CALLS[name] = CALLS.get(name, 0) + 1
    left = FAULTS.get(name, 0)
    if left > 0:
        FAULTS[name] = left - 1
        return True
    return False


def _file_fault() -> bool:
    path = os.environ.get(FAULT_ENV)
    return bool(path) and Path(str(path)).exists()


class Recording:
    """A notifier that keeps what it is told."""

    def __repr__(self) -> str:
        return "Recording()"

    async def notify(self, escalation: Escalation) -> None:
        ESCALATIONS.append(escalation)


#: Backs off 10 s, then 20 s: long enough that real sleeping would show.
BACKOFF = RetryPolicy(max_attempts=3, initial_interval=10.0, backoff=2.0, jitter=0.0)


@tool(retry=BACKOFF)
async def flaky(x: int) -> int:
    """Doubles x; fails while FAULTS['flaky'] > 0."""
    if _count("flaky"):
        raise ConnectionError(f"flaky is down ({FAULTS['flaky']} more failures)")
    return x * 2


@tool(
    retry=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0.0),
    secrets=("api_key",),
    notifiers=[Recording()],
)
async def broken(query: str, api_key: str) -> str:
    """Always fails, echoing its secret in the error (which must be scrubbed)."""
    _count("broken")
    raise RuntimeError(f"backend exploded for {query!r} with key {api_key}")


@tool(retry=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0.0), dead_letter="fail")
async def strict(x: int) -> int:
    """Fails while FAULTS['strict'] > 0; its policy fails the caller."""
    if _count("strict"):
        raise ToolFailed("strict is down", status=503)
    return x


@tool(retry=RetryPolicy(max_attempts=3, initial_interval=0.01), dead_letter="continue")
async def picky(x: int) -> int:
    """Refuses x < 0 with a 400: never retried."""
    _count("picky")
    if x < 0:
        raise ToolFailed(f"x must be >= 0, got {x}", retryable=False, status=400)
    return x


@tool(
    retry=RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=0.0),
    dead_letter="wait",
    notifiers=[Recording()],
)
async def gateway(order: str, amount: int) -> dict[str, Any]:
    """Charges an order; fails while the $TOOLS_TEST_FAULT file exists."""
    _count("gateway")
    if _file_fault():
        raise ConnectionError("payment gateway unreachable")
    return {"order": order, "charged": amount}


@tool(
    breaker=CircuitBreaker(failure_threshold=2, open_for=60.0, refresh_interval=0.0),
    notifiers=[Recording()],
)
async def guarded(x: int) -> int:
    """Fails while FAULTS['guarded'] > 0, behind a breaker that opens after 2 failures."""
    if _count("guarded"):
        raise ConnectionError("guarded is down")
    return x


@phalanx.workflow
async def flaky_flow(ctx: phalanx.WorkflowContext, x: int) -> int:
    return int(await call_tool(ctx, flaky, x=x))


@phalanx.workflow
async def broken_flow(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    result = await call_tool(ctx, broken, {"query": "leases", "api_key": "sk-secret-123"})
    assert isinstance(result, ToolUnavailable)
    return result.to_json()


@phalanx.workflow
async def strict_flow(ctx: phalanx.WorkflowContext) -> int:
    return int(await strict.call(ctx, {"x": 7}))


@phalanx.workflow
async def picky_flow(ctx: phalanx.WorkflowContext, x: Any) -> Any:
    try:
        result = await call_tool(ctx, picky, {"x": x})
    except phalanx.ToolArgumentsError as exc:
        return {"invalid": exc.errors}
    return result.to_json() if isinstance(result, ToolUnavailable) else result


@phalanx.workflow
async def charge_flow(ctx: phalanx.WorkflowContext, order: str = "o-1") -> dict[str, Any]:
    charged = await call_tool(ctx, gateway, order=order, amount=42)
    if isinstance(charged, ToolUnavailable):
        return {"unavailable": charged.to_json()}
    return {"charged": charged}


@phalanx.workflow
async def guarded_flow(ctx: phalanx.WorkflowContext, calls: int) -> list[Any]:
    results = []
    for i in range(calls):
        result = await call_tool(ctx, guarded, x=i)
        results.append(result.reason if isinstance(result, ToolUnavailable) else result)
    return results


# -- agents ---------------------------------------------------------------------------

RESEARCH = Script(
    rules=(
        Rule(
            "research",
            (
                Turn(tool_calls=(("broken", {"query": "leases", "api_key": "sk-secret-123"}),)),
                Turn(tool_calls=(("flaky", {"x": 4}),)),
                Turn(text="done: {tool_results}"),
            ),
        ),
        Rule(
            "strict",
            (Turn(tool_calls=(("strict", {"x": 1}),)), Turn(text="never: {tool_results}")),
        ),
        Rule(
            "invalid",
            (Turn(tool_calls=(("guarded", {"x": "nope"}),)), Turn(text="gave up: {tool_results}")),
        ),
    )
)
MODEL = ScriptedModel(RESEARCH, latency=0.0, seconds_per_token=0.0)


@phalanx.workflow
async def research_flow(ctx: phalanx.WorkflowContext, instructions: str) -> dict[str, Any]:
    agent = Agent(
        "researcher",
        model=MODEL,
        instructions=instructions,
        tools=[broken, flaky, strict, guarded],
    )
    return (await agent.run(ctx, "go")).to_json()
