"""Actor, sender and supervisor workflows the actor tests run.

At module level because runs journal their workflow's `module:qualname` and `resume`
(or a `phalanx run` in another process) imports it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import phalanx
from phalanx import Actor, Mailbox, Supervisor, WorkflowContext, mailbox, tell
from phalanx.actors import reply


def note(ctx: WorkflowContext, body: Any) -> Any:
    """A step per handled message: its count in the journal is what the logic saw."""
    return body


@phalanx.workflow
async def collector(
    ctx: WorkflowContext, expect: int, capacity: int = 1000, when_full: str = "block"
) -> list[Any]:
    """Take `expect` messages; the first one waits for the signal `drain` before the rest."""
    how: Any = when_full
    policy = Mailbox(capacity=capacity, when_full=how)
    seen: list[Any] = []
    async for message in mailbox(ctx, policy):
        seen.append(await ctx.step("handle", note, ctx, message.body))
        if len(seen) == 1:
            await ctx.wait_for_signal("drain")
        if len(seen) == expect:
            break
    return seen


@phalanx.workflow
async def producer(ctx: WorkflowContext, to: str, count: int, deadline: float | None = None) -> int:
    """Tell `count` messages (0, 1, ...) to `to`; return how many went in."""
    for n in range(count):
        await tell(ctx, to, n, deadline=deadline)
    return count


@phalanx.workflow
async def one_shot(ctx: WorkflowContext, to: str, body: Any, release: str) -> str:
    """Tell once, then (until `release` exists) hang without writing: a kill loses the marker."""
    message_id = await tell(ctx, to, body)
    await asyncio.to_thread(_wait_for_file, Path(release))  # not a step: it writes nothing
    return message_id


def _wait_for_file(path: Path) -> None:
    while not path.exists():
        time.sleep(0.05)


@phalanx.workflow
async def worker(ctx: WorkflowContext) -> list[Any]:
    """Handle messages until stopped; fail on the message `crash`."""
    handled: list[Any] = []
    async for message in mailbox(ctx):
        if message.body == "crash":
            raise RuntimeError(f"{ctx.run_id} told to crash")
        handled.append(await ctx.step("handle", note, ctx, message.body))
    return handled


@phalanx.workflow
async def doomed(ctx: WorkflowContext, after: float = 0.0) -> None:
    """Fail every incarnation, after a durable sleep of `after` seconds."""
    if after:
        await ctx.sleep(after)
    raise RuntimeError(f"{ctx.run_id} cannot start")


@phalanx.workflow
async def team(
    ctx: WorkflowContext,
    strategy: str,
    children: list[str],
    script: list[list[Any]],
) -> dict[str, Any]:
    """Spawn `children` (workers) and tell them `script` ([[child, body], ...]) in order.

    Returns each child's address. A `["wait", seconds]` entry sleeps durably.
    """
    async with Supervisor(ctx, "team", strategy=strategy, max_restarts=3, within=60) as sup:  # type: ignore[arg-type]
        addresses = {
            c: await sup.spawn(c, Actor(worker, mailbox=Mailbox(capacity=10))) for c in children
        }
        for child, body in script:
            if child == "wait":
                await ctx.sleep(float(body))
            else:
                await tell(ctx, addresses[child], body)
    return addresses


@phalanx.workflow
async def crash_loop(
    ctx: WorkflowContext, max_restarts: int, after: float = 0.0, hold: float = 0.0
) -> None:
    """Supervise one child that fails every incarnation; the supervisor must escalate."""
    async with Supervisor(ctx, "loop", max_restarts=max_restarts, within=600) as sup:
        await sup.spawn("doomed", Actor(doomed), after=after)
        await ctx.sleep(hold or 3600)


class Crash(BaseException):
    """A simulated process crash: not an `Exception`, so phalanx journals no outcome."""


#: Step labels whose next execution raises `Crash`.
CRASH_AT: set[str] = set()


async def slow(label: str, seconds: float) -> str:
    """A step that takes `seconds` (or crashes the run, once, if its label is armed)."""
    if label in CRASH_AT:
        CRASH_AT.discard(label)
        raise Crash(label)
    await asyncio.sleep(seconds)
    return label


@phalanx.workflow
async def bounded(ctx: WorkflowContext, limit: float, work: float, move_on: bool = False) -> Any:
    """Run a `work`-second step inside a `limit`-second deadline scope."""
    if move_on:
        async with phalanx.move_on_after(ctx, limit) as scope:
            await ctx.step("work", slow, "work", work)
        return {
            "cancelled_caught": scope.cancelled_caught,
            "after": await ctx.step("next", note, ctx, 1),
        }
    async with phalanx.fail_after(ctx, limit):
        await ctx.step("first", slow, "first", 0.0)
        await ctx.step("work", slow, "work", work)
    return "done"


@phalanx.workflow
async def failing_body(ctx: WorkflowContext) -> None:
    """A supervisor scope whose body fails while its child is running."""
    async with Supervisor(ctx, "s") as sup:
        await sup.spawn("w", Actor(worker))
        await ctx.step("first", slow, "first", 0.2)
        raise ValueError("the body failed")


@phalanx.workflow
async def survives_escalation(ctx: WorkflowContext) -> str:
    """Catch the supervisor's escalation and go on (to a step a test may crash)."""
    try:
        async with Supervisor(ctx, "loop", max_restarts=1, within=600) as sup:
            await sup.spawn("doomed", Actor(doomed))
            await ctx.sleep(3600)
    except phalanx.SupervisorEscalationError as exc:
        return str(await ctx.step("after", slow, "after", 0.0)) + f":{exc.child}"
    return "not escalated"


@phalanx.workflow
async def doubler(ctx: WorkflowContext, serve: int) -> int:
    """Answer `serve` asks with twice their body; ignore the answer to a `tell`."""
    served = 0
    async for message in mailbox(ctx):
        if message.reply_to is None:
            with contextlib.suppress(phalanx.UserError):
                await reply(ctx, message, None)  # told, not asked: refused
            continue
        await reply(ctx, message, await ctx.step("double", note, ctx, message.body * 2))
        served += 1
        if served == serve:
            break
    return served


@phalanx.workflow
async def asker(ctx: WorkflowContext, to: str, bodies: list[int], timeout: float = 30) -> list[Any]:
    """Ask `to` about each body in turn; crash once before the second ask if armed."""
    answers = []
    for n, body in enumerate(bodies):
        if n == 1:
            await ctx.step("between", slow, "between", 0.0)
        answers.append(await phalanx.ask(ctx, to, body, timeout=timeout))
    return answers
