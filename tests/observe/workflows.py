"""Workflows the observability tests run in subprocesses (`phalanx run tests.observe...`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pydantic

import phalanx
from phalanx.agents import Agent, Rule, Script, ScriptedModel, Turn
from phalanx.durable import lowlevel
from phalanx.patterns import Branch, Policy, gather
from phalanx.tools import tool

SECRET = "sk-SECRET-7f3a9c21"

SCRIPT = Script(
    rules=(
        Rule(
            "You are helper",
            (
                Turn(tool_calls=(("login", {"user": "ada", "api_key": SECRET}),)),
                Turn(text="Done: {tool_results}"),
            ),
        ),
        Rule(
            "You are researcher",
            (
                Turn(tool_calls=(("lookup", {"topic": "leases"}),)),
                Turn(text="Leases fence stale writers. {tool_results}"),
            ),
        ),
    )
)


def model() -> ScriptedModel:
    return ScriptedModel(SCRIPT, latency=0.01, seconds_per_token=0.0)


@tool(secrets=("api_key",))
def login(user: str, api_key: str) -> str:
    """Log in to the test service."""
    # Echoes the key on purpose: redaction must scrub it from the captured result too.
    return f"session for {user} opened with {api_key}"


@tool
def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"notes on {topic}"


_flaky_calls = 0


def flaky() -> str:
    """Fails on its first call in this process, then succeeds."""
    global _flaky_calls
    _flaky_calls += 1
    if _flaky_calls == 1:
        raise ConnectionError("transient failure")
    return "ok"


@phalanx.workflow
async def secret_agent(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    """An agent that calls a tool with a secret argument, and a step that retries once."""
    helper = Agent(
        "helper",
        role="assistant",
        model=model(),
        instructions="You are helper. Log in for the user.",
        tools=[login],
    )
    result = await helper.run(ctx, "Please log in as ada.")
    retried = await ctx.step(
        "flaky", flaky, retry=phalanx.RetryPolicy(max_attempts=3, initial_interval=0.01)
    )
    return {"answer": result.text, "retried": retried, "usage": result.usage.model_dump()}


def _fail(message: str) -> None:
    raise RuntimeError(message)


@phalanx.workflow
async def branch(ctx: phalanx.WorkflowContext, topic: str, fail: bool = False) -> str:
    """A fan-out branch: an agent turn, or a failing step."""
    if fail:
        await ctx.step("broken", _fail, f"no source for {topic}")
    researcher = Agent(
        "researcher",
        role="research",
        model=model(),
        instructions="You are researcher.",
        tools=[lookup],
    )
    return (await researcher.run(ctx, f"Research {topic}.")).text


@phalanx.workflow
async def fan_out(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    """Two branches, best effort; one fails, so the result is partial (yet satisfied)."""
    result = await gather(
        ctx,
        "sources",
        {
            "good": Branch(branch, {"topic": "leases"}),
            "bad": Branch(branch, {"topic": "fencing", "fail": True}),
        },
        policy=Policy.best_effort(),
        deadline=30,
    )
    values = await result.accept_partial("one source is enough for a test")
    return {"values": values, "missing": result.missing}


def _ledger(line: str) -> None:
    with Path(os.environ["OBSERVE_LEDGER"]).open("a") as f:
        f.write(line + "\n")


def record(name: str) -> str:
    _ledger(name)
    return name


def wait_for_release(name: str) -> str:
    """Blocks until the test creates the release file (the process is killed meanwhile)."""
    _ledger(name)
    release = Path(os.environ["OBSERVE_LEDGER"] + ".release")
    while not release.exists():
        time.sleep(0.02)
    return name


@phalanx.workflow
async def crash_child(ctx: phalanx.WorkflowContext) -> str:
    """A child run: one step, then a step the test kills the process in."""
    await ctx.step("child-first", record, "child-first")
    return await ctx.step("child-blocked", wait_for_release, "child-blocked")


@phalanx.workflow
async def crash_parent(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    """An agent turn and a step, then a child run that is killed mid-step."""
    researcher = Agent(
        "researcher",
        role="research",
        model=model(),
        instructions="You are researcher.",
        tools=[lookup],
    )
    text = (await researcher.run(ctx, "Research leases.")).text
    await ctx.step("parent-first", record, "parent-first")
    child = await ctx.child(crash_child)
    await ctx.step("parent-last", record, "parent-last")
    return {"text": text, "child": child}


@tool(breaker=phalanx.CircuitBreaker(failure_threshold=1, open_for=60), dead_letter="continue")
def always_down() -> str:
    """A dependency that is down for the whole test."""
    raise phalanx.ToolFailed("service unavailable", status=503)


@phalanx.workflow
async def dead_letters(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    """One call dead-lettered (its failure also opens the breaker)."""
    outcome = await phalanx.call_tool(ctx, always_down)
    return {"unavailable": isinstance(outcome, phalanx.ToolUnavailable)}


class Verdict(pydantic.BaseModel):
    answer: str
    confidence: float


@phalanx.workflow
async def confident_agent(ctx: phalanx.WorkflowContext) -> dict[str, Any]:
    """An agent whose structured output reports its confidence."""
    judge = Agent(
        "judge",
        model=ScriptedModel(
            Script(rules=(Rule("judge", (Turn(text='{"answer": "yes", "confidence": 0.8}'),)),)),
            latency=0.001,
            seconds_per_token=0.0,
        ),
        instructions="You are judge. Answer with a verdict.",
        output_type=Verdict,
    )
    return (await judge.run(ctx, "Is the sky blue?")).to_json()


def _answer() -> dict[str, Any]:
    return {"model": "m", "provider": "p", "usage": {"input_tokens": 3, "output_tokens": 2}}


@phalanx.workflow
async def tagged_steps(ctx: phalanx.WorkflowContext) -> str:
    """One step tagged as an agent's chat under a plain name; one agent-like name untagged."""
    tags = {"agent": "solo", "turn": 1, "operation": "chat"}
    await lowlevel.step(ctx, "ask the model", _answer, tags=tags)
    await ctx.step("impostor/model/1", _answer)
    return "done"
