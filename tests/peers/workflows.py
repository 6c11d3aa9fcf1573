"""Peer and coordinator workflows the peers tests run.

They live at module level because runs journal their workflow's `module:qualname` and
`resume` imports it again (in another process, for the SIGKILL test). Test-side
bookkeeping is module state reset before every test by the package's conftest:
`HANDLED` is every execution of a message handler step (agent, message id, idempotency
key), `EFFECTS` counts the work done per task, `CRASH_AT` names handler or task labels
whose next execution raises `Crash`, `GATES` are handler steps that wait for the test.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import phalanx
from phalanx import Peer, RoundLimitError, TaskBoard, WorkflowContext, converse
from phalanx.agents import Agent, Script, ScriptedModel, Turn
from phalanx.patterns import PeerMessage, messages, send


class Crash(BaseException):
    """A simulated process crash: not an `Exception`, so phalanx journals no outcome."""


#: Every execution of a handler step: (agent, message id, idempotency key).
HANDLED: list[tuple[str, str, str]] = []
#: How often each task's work really ran, by task.
EFFECTS: Counter[str] = Counter()
#: Labels whose next run crashes (`agent:round` for handlers, `task:NAME` for work) or,
#: for `fail:NAME`, makes the work raise `ValueError`.
CRASH_AT: set[str] = set()


@dataclass
class Gate:
    """A handler step that blocks until the test opens it."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


GATES: dict[str, Gate] = {}


def gate(label: str) -> Gate:
    """Register (and return) the gate that handler `label` (`agent:round`) waits on."""
    GATES[label] = Gate()
    return GATES[label]


def reset() -> None:
    """Forget what a previous test left behind."""
    HANDLED.clear()
    EFFECTS.clear()
    CRASH_AT.clear()
    GATES.clear()


def _crash_if(label: str) -> None:
    if label in CRASH_AT:
        CRASH_AT.discard(label)
        raise Crash(label)


async def handle(ctx: WorkflowContext, agent: str, message_id: str, round: int) -> str:
    """A message handler's effect: recorded in `HANDLED`, keyed by the message id."""
    label = f"{agent}:{round}"
    found = GATES.get(label)
    if found is not None:
        found.entered.set()
        await found.release.wait()
    _crash_if(label)
    HANDLED.append((agent, message_id, ctx.idempotency_key))
    return message_id


# -- peers ----------------------------------------------------------------------------


@phalanx.workflow
async def volley(ctx: WorkflowContext, other: str, limit: int, delay: float = 0.0) -> int:
    """Ping-pong: answer each number with the next, until `limit`; return how many handled.

    With `delay`, the peer first sleeps (durably) before taking any message: a message
    sent to it meanwhile is in flight, with nobody busy.
    """
    if delay:
        await ctx.sleep(delay)
    handled = 0
    async for message in messages(ctx):
        await ctx.step("handle", handle, ctx, ctx.run_id, message.id, message.round)
        handled += 1
        if int(message.body) < limit:
            await send(ctx, other, int(message.body) + 1)
    return handled


@phalanx.workflow
async def gossip(ctx: WorkflowContext, name: str, friends: list[str]) -> list[str]:
    """Spread a rumour: on first hearing it, tell every friend; return who told us."""
    heard: list[str] = []
    async for message in messages(ctx):
        await ctx.step("handle", handle, ctx, name, message.id, message.round)
        heard.append(message.sender or "coordinator")
        if len(heard) == 1:
            for friend in friends:
                await send(ctx, friend, message.body)
    return heard


@phalanx.workflow
async def failing(ctx: WorkflowContext) -> None:
    """A peer whose handler fails on its first message."""
    async for _ in messages(ctx):
        raise ValueError("this peer cannot cope")


@phalanx.workflow
async def worker(ctx: WorkflowContext, board: str) -> list[str]:
    """Take the task list from the kickoff and try every task; return the ones done here."""
    done: list[str] = []
    tasks = TaskBoard(board)
    async for message in messages(ctx):
        for task in message.body:
            result = await tasks.run(ctx, task, work, task)
            if result.status == "done":
                done.append(task)
    return done


async def work(task: str) -> str:
    """A task's effect: counted in `EFFECTS`, after a pause that lets claimants race."""
    await asyncio.sleep(0.01)
    _crash_if(f"task:{task}")
    if f"fail:{task}" in CRASH_AT:
        CRASH_AT.discard(f"fail:{task}")
        raise ValueError(f"{task} cannot be done now")
    EFFECTS[task] += 1
    return f"{task} done"


@phalanx.workflow
async def solo_worker(ctx: WorkflowContext, board: str, tasks: list[str]) -> dict[str, Any]:
    """A standalone run claiming tasks on a board (no conversation); return each status."""
    statuses: dict[str, Any] = {}
    for task in tasks:
        result = await TaskBoard(board).run(ctx, task, work, task)
        statuses[task] = {"status": result.status, "holder": result.holder}
    return statuses


@phalanx.workflow
async def eager(ctx: WorkflowContext) -> None:
    """A run that sends without having received anything (misuse)."""
    await send(ctx, "anyone", "hello")


# -- coordinators ---------------------------------------------------------------------


@phalanx.workflow
async def ping_pong(
    ctx: WorkflowContext,
    limit: int,
    max_rounds: int = 32,
    delay: float = 0.0,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Two peers volleying numbers 0..limit; `pong` may start late (`delay`)."""
    result = await converse(
        ctx,
        "ping-pong",
        {
            "ping": Peer(volley, {"other": "pong", "limit": limit}),
            "pong": Peer(volley, {"other": "ping", "limit": limit, "delay": delay}),
        },
        start={"ping": 0},
        max_rounds=max_rounds,
        deadline=deadline,
    )
    return result.to_json()


@phalanx.workflow
async def bounded(ctx: WorkflowContext) -> dict[str, Any]:
    """An endless volley bounded at three rounds; the coordinator catches the error."""
    try:
        await converse(
            ctx,
            "short",
            {
                "ping": Peer(volley, {"other": "pong", "limit": 10**9}),
                "pong": Peer(volley, {"other": "ping", "limit": 10**9}),
            },
            start={"ping": 0},
            max_rounds=3,
        )
    except RoundLimitError as exc:
        return {"error": type(exc).__name__, "peer": exc.peer, "max_rounds": exc.max_rounds}
    return {"error": None}


#: Who tells whom in the gossip test: a ring with chords, so rumours cross.
FRIENDS = {"a": ["b", "c"], "b": ["c", "d"], "c": ["d", "a"], "d": ["a", "b"]}


@phalanx.workflow
async def rumour(ctx: WorkflowContext) -> dict[str, Any]:
    """Four gossiping peers; the rumour starts at `a`."""
    result = await converse(
        ctx,
        "gossip",
        {n: Peer(gossip, {"name": n, "friends": f}) for n, f in FRIENDS.items()},
        start={"a": "the lease expired"},
    )
    return result.to_json()


@phalanx.workflow
async def broken(ctx: WorkflowContext) -> dict[str, Any]:
    """A conversation one of whose peers fails."""
    result = await converse(
        ctx,
        "broken",
        {"ok": Peer(volley, {"other": "bad", "limit": 5}), "bad": Peer(failing)},
        start={"ok": 0},
    )
    return result.to_json()


@phalanx.workflow
async def share_work(ctx: WorkflowContext, board: str, tasks: list[str], peers: int) -> Any:
    """`peers` workers each handed every task; the board makes sure each is done once."""
    names = [f"w{i}" for i in range(peers)]
    result = await converse(
        ctx,
        "work",
        {n: Peer(worker, {"board": board}) for n in names},
        start={n: tasks for n in names},
    )
    return result.to_json()


# -- the SIGKILL conversation ---------------------------------------------------------


def write_ledger(ledger: str, agent: str, message_id: str, key: str) -> str:
    """Append one line to the external ledger (one `write`, O_APPEND: never interleaved)."""
    line = json.dumps({"agent": agent, "message_id": message_id, "key": key, "pid": os.getpid()})
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return message_id


#: The scripted model every agent of the SIGKILL conversation thinks with.
MODEL = ScriptedModel(
    Script(default=Turn(text="noted: {prompt}")), latency=0.03, seconds_per_token=0.0005
)
#: The three agents, each handing its notes to the next.
NEXT = {"planner": "critic", "critic": "writer", "writer": "planner"}


@phalanx.workflow
async def agent_peer(ctx: WorkflowContext, name: str, ledger: str) -> int:
    """An LLM agent as a peer: journal the message in the ledger, think, pass it on."""
    agent = Agent(name, model=MODEL, instructions=f"You are the {name}.")
    handled = 0
    async for message in messages(ctx):
        await ctx.step("ledger", _ledger_step, ctx, ledger, name, message)
        thought = await agent.run(
            ctx, f"{message.body['topic']} (hops left {message.body['left']})"
        )
        handled += 1
        if message.body["left"] > 0:
            body = {"topic": message.body["topic"], "left": message.body["left"] - 1}
            body["note"] = thought.text[:40]
            await send(ctx, NEXT[name], body)
    return handled


def _ledger_step(ctx: WorkflowContext, ledger: str, name: str, message: PeerMessage) -> str:
    return write_ledger(ledger, name, message.id, ctx.idempotency_key)


@phalanx.workflow
async def agent_conversation(ctx: WorkflowContext, ledger: str, hops: int) -> dict[str, Any]:
    """Three agents passing two topics round a ring, `hops` hops each."""
    result = await converse(
        ctx,
        "desk",
        {n: Peer(agent_peer, {"name": n, "ledger": ledger}) for n in NEXT},
        start={
            "planner": {"topic": "leases", "left": hops},
            "critic": {"topic": "fencing", "left": hops},
        },
        max_rounds=hops + 2,
    )
    return result.to_json()
