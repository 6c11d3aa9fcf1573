"""Agents, conductors, sub-orchestrators and fenced agents the orchestration tests run.

They live at module level because runs journal their workflow's `module:qualname` and
`resume` (in this process or another) imports it again. In-process tests count real
work in `LEDGER` (by label); the subprocess tests count it in a ledger *file* (one JSON
line per effect, appended with one `write`), which survives the process that wrote it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any

import phalanx
from phalanx import WorkflowContext
from phalanx.durable import lowlevel
from phalanx.patterns import Branch as FanBranch
from phalanx.patterns import (
    Conductor,
    FencedInbox,
    Hierarchy,
    PlanError,
    PlanTask,
    Policy,
    announce_epoch,
    deliver_instruction,
    gather,
    send_instruction,
)
from phalanx.testing import sigkill_self


class Crash(BaseException):
    """A simulated process crash: not an `Exception`, so phalanx journals no outcome."""


#: How many times each label's work really ran (not replayed).
LEDGER: Counter[str] = Counter()
#: label -> the execution of its work (1 = first) that raises `Crash` instead.
CRASH_AT: dict[str, int] = {}
#: Instructions a fenced agent acted on, in order: (id, epoch, payload).
ACTED: list[tuple[str, int, Any]] = []
#: label -> an event a step waits on before answering (a paused runner, in-process).
GATES: dict[str, asyncio.Event] = {}


def reset() -> None:
    """Forget what a previous test left behind."""
    LEDGER.clear()
    CRASH_AT.clear()
    ACTED.clear()
    GATES.clear()


async def _work(label: str, value: Any, delay: float) -> Any:
    LEDGER[label] += 1
    if CRASH_AT.get(label) == LEDGER[label]:
        raise Crash(label)
    if delay:
        await asyncio.sleep(delay)
    return value


async def _boom(label: str, message: str, delay: float) -> None:
    LEDGER[label] += 1
    if delay:
        await asyncio.sleep(delay)
    raise RuntimeError(message)


async def _forever(label: str) -> None:
    LEDGER[label] += 1
    await asyncio.Event().wait()


# -- agents -------------------------------------------------------------------------


@phalanx.workflow
async def worker(ctx: WorkflowContext, label: str, value: Any = None, delay: float = 0.0) -> Any:
    """Do one piece of work (a step) and answer `value`."""
    return await ctx.step("work", _work, label, value, delay)


@phalanx.workflow
async def failing(ctx: WorkflowContext, label: str, message: str = "boom") -> None:
    """Fail with a RuntimeError from a step."""
    await ctx.step("work", _boom, label, message, 0.0)


@phalanx.workflow
async def hanging(ctx: WorkflowContext, label: str) -> None:
    """Hang inside a step (a model call that never answers)."""
    await ctx.step("work", _forever, label)


@phalanx.workflow
async def lead_of_one(ctx: WorkflowContext, label: str) -> None:
    """An agent with a child of its own that hangs (a third level under the top)."""
    await ctx.step("work", _work, label, None, 0.0)
    await ctx.child(hanging, label=f"{label}/child")


AGENTS = {"worker": worker, "failing": failing, "hanging": hanging, "lead_of_one": lead_of_one}


# -- conductors -----------------------------------------------------------------------


@phalanx.workflow
async def research_conductor(ctx: WorkflowContext, after: bool = False) -> dict[str, Any]:
    """A four-task plan: two searches in parallel, a draft from both, a review of it.

    With `after`, a step labelled "after" runs once the plan is done (a place to crash).
    """
    conductor = Conductor(ctx, "research", {"searcher": worker, "writer": worker})
    result = await conductor.run(
        [
            PlanTask("web", "searcher", {"label": "web", "value": "w"}),
            PlanTask("vector", "searcher", {"label": "vector", "value": "v"}),
            PlanTask(
                "draft",
                "writer",
                lambda done: {"label": "draft", "value": f"{done['web']}+{done['vector']}"},
                after=("web", "vector"),
            ),
            PlanTask(
                "review",
                "writer",
                lambda done: {"label": "review", "value": f"ok({done['draft']})"},
                after=("draft",),
            ),
        ]
    )
    if after:
        await ctx.step("after", _work, "after", None, 0.0)
    return {**result.to_json(), "values": result.values}


@phalanx.workflow
async def fallback_conductor(ctx: WorkflowContext, accept: bool = False) -> dict[str, Any]:
    """A failing agent reassigned to a fallback, a hanging one timed out then reassigned,
    and a task left without a value (its dependency failed for good), so it is skipped."""
    conductor = Conductor(
        ctx, "fallbacks", {"flaky": failing, "stuck": hanging, "steady": worker}, max_parallel=2
    )
    plan = [
        PlanTask("a", "flaky", {"label": "a"}, fallbacks=("steady",)),
        PlanTask("b", "stuck", {"label": "b"}, fallbacks=("steady",), deadline=0.3),
        PlanTask("c", "flaky", {"label": "c"}),
        PlanTask("d", "steady", {"label": "d", "value": "never"}, after=("c",)),
    ]
    # Fallback agents get the same inputs; `worker` needs a value: the label will do.
    result = await conductor.run(plan)
    out = result.to_json()
    try:
        out["values"] = result.values
    except phalanx.PartialResultError as exc:
        out["refused"] = str(exc)
        if accept:
            out["values"] = await result.accept_partial("c has no fallback; go on without d")
    return out


@phalanx.workflow
async def stepwise_conductor(ctx: WorkflowContext) -> list[dict[str, Any]]:
    """Assign one task at a time, choosing the next agent from the last result."""
    conductor = Conductor(ctx, "stepwise", {"fast": worker, "careful": worker})
    first = await conductor.assign("triage", "fast", {"label": "triage", "value": "hard"})
    agent = "careful" if first.value == "hard" else "fast"
    second = await conductor.assign("solve", agent, {"label": "solve", "value": "solved"})
    third = await conductor.assign("check", "fast", {"label": "check", "value": "checked"})
    return [first.to_json(), second.to_json(), third.to_json()]


@phalanx.workflow
async def bad_plan(ctx: WorkflowContext, case: str) -> str:
    """Try a malformed plan and report the error it raised."""
    conductor = Conductor(ctx, "bad", {"worker": worker})
    plans = {
        "unknown agent": [PlanTask("a", "nobody")],
        "twice": [PlanTask("a", "worker"), PlanTask("a", "worker")],
        "missing dependency": [PlanTask("a", "worker", after=("ghost",))],
        "cycle": [PlanTask("a", "worker", after=("b",)), PlanTask("b", "worker", after=("a",))],
    }
    try:
        await conductor.run(plans[case])
    except PlanError as exc:
        return str(exc)
    return "no error"


def append_line(path: str, record: dict[str, Any]) -> int:
    """Append one JSON line with a single write; return how many lines hold `record['task']`."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
    return sum(1 for line in read_lines(path) if line.get("task") == record.get("task"))


def read_lines(path: str) -> list[dict[str, Any]]:
    """The JSON lines of a ledger file ([] if none yet)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


async def _ledgered(ledger: str, task: str, kill_on_first: bool) -> str:
    count = append_line(ledger, {"task": task, "pid": os.getpid()})
    if kill_on_first and count == 1:
        sigkill_self()
    return f"{task} done"


@phalanx.workflow
async def ledger_agent(ctx: WorkflowContext, ledger: str, task: str, kill: bool = False) -> str:
    """Do a task: one line in the ledger file; with `kill`, SIGKILL the process the first time."""
    return await ctx.step("work", _ledgered, ledger, task, kill)


@phalanx.workflow
async def ledger_conductor(ctx: WorkflowContext, ledger: str, kill_at: str) -> dict[str, Any]:
    """A plan of five tasks in a chain of three; the process dies inside task `kill_at`."""
    conductor = Conductor(ctx, "chain", {"agent": ledger_agent})

    def task(name: str, *after: str) -> PlanTask:
        inputs = {"ledger": ledger, "task": name, "kill": name == kill_at}
        return PlanTask(name, "agent", inputs, after=after)

    plan = [task("a"), task("b"), task("c", "a", "b"), task("d", "c"), task("e", "c")]
    result = await conductor.run(plan)
    return result.values


# -- hierarchy ----------------------------------------------------------------------


@phalanx.workflow
async def team_lead(
    ctx: WorkflowContext, members: dict[str, dict[str, Any]], die_after: float | None = None
) -> dict[str, Any]:
    """A sub-orchestrator: fans out to its members; dies (raises) after `die_after` seconds."""
    branches = {
        name: FanBranch(AGENTS[spec["kind"]], {k: v for k, v in spec.items() if k != "kind"})
        for name, spec in members.items()
    }
    try:
        async with asyncio.TaskGroup() as group:
            fan = group.create_task(gather(ctx, "team", branches))
            if die_after is not None:
                group.create_task(
                    ctx.step("die", _boom, "lead", "the team lead crashed", die_after)
                )
    except* RuntimeError as errors:
        raise errors.exceptions[0] from None
    return (await fan).to_json()


@phalanx.workflow
async def top_orchestrator(
    ctx: WorkflowContext,
    policy: str,
    members: dict[str, dict[str, Any]],
    die_after: float | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Delegate to a team lead under `policy` and report the delegation."""
    tree = Hierarchy(ctx, on_middle_death="reparent" if policy == "reparent" else "cancel")
    delegation = await tree.delegate(
        "team", team_lead, {"members": members, "die_after": die_after}, deadline=deadline
    )
    return delegation.to_json()


# -- fencing at the receiver ----------------------------------------------------------


async def _act(instruction_id: str, epoch: int, payload: Any, ledger: str | None) -> None:
    ACTED.append((instruction_id, epoch, payload))
    label = payload.get("label") if isinstance(payload, dict) else None
    if label is not None:
        LEDGER[label] += 1
        if CRASH_AT.get(label) == LEDGER[label]:
            raise Crash(label)
    if ledger is not None:
        append_line(ledger, {"id": instruction_id, "epoch": epoch, "payload": payload})


@phalanx.workflow
async def fenced_agent(ctx: WorkflowContext, ledger: str | None = None) -> int:
    """Act on each accepted instruction (a step) until one says "stop"; return how many."""
    inbox = FencedInbox(ctx)
    acted = 0
    while True:
        instruction = await inbox.receive()
        if instruction.payload == "stop":
            return acted
        await ctx.step("act", _act, instruction.id, instruction.epoch, instruction.payload, ledger)
        acted += 1


async def _think_then_instruct(
    ctx: WorkflowContext, agent: str, task: int, think: float, ledger: str | None
) -> int:
    """A step's body: decide (slowly), then tell the agent; the delivery is a plain effect."""
    if ledger is not None:
        append_line(ledger, {"thinking": task, "epoch": lowlevel.epoch(ctx), "pid": os.getpid()})
    gate = GATES.get(f"task-{task}")
    if gate is not None and not gate.is_set():
        GATES.pop(f"task-{task}")  # only the first execution is held up
        await gate.wait()
    await asyncio.sleep(think)
    await deliver_instruction(ctx, agent, {"task": task})
    return task


@phalanx.workflow
async def instructing_orchestrator(
    ctx: WorkflowContext, agent: str, tasks: int, think: float = 0.0, ledger: str | None = None
) -> int:
    """Tell `agent` its tasks one by one, each decided in a step, then tell it to stop."""
    await announce_epoch(ctx, [agent])
    for task in range(tasks):
        await ctx.step(f"instruct {task}", _think_then_instruct, ctx, agent, task, think, ledger)
    await send_instruction(ctx, agent, "stop")
    return tasks


@phalanx.workflow
async def journaled_orchestrator(ctx: WorkflowContext, agent: str, tasks: int) -> int:
    """Send every instruction as a journaled operation, then "stop"; crash-able by label."""
    for task in range(tasks):
        await send_instruction(ctx, agent, {"task": task})
        await ctx.step("pace", _work, f"pace {task}", None, 0.0)
    await send_instruction(ctx, agent, "stop")
    return tasks


# -- step branches (`Branch.step`) ------------------------------------------------------


async def step_answer(label: str, value: Any = None, delay: float = 0.0) -> Any:
    """A step branch's body: answer `value` after `delay` seconds (crash-able by label).

    The crash comes after the delay, so branches that answer sooner are journaled first.
    """
    if delay:
        await asyncio.sleep(delay)
    return await _work(label, value, 0.0)


async def step_fail(label: str) -> None:
    """A step branch's body that fails."""
    await _boom(label, f"{label} failed", 0.0)


async def step_hang(label: str) -> None:
    """A step branch's body that never answers."""
    await _forever(label)


async def step_stubborn(label: str, value: Any) -> Any:
    """Ignore the fan-out's cancel and answer anyway: an answer that arrives too late."""
    LEDGER[label] += 1
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        # Deliberately swallowed: this body models work that answers while it is being
        # stopped, which the fan-out must journal as late and not use.
        return value
    return None


async def step_self_cancelled(label: str) -> None:
    """A step branch's body that raises CancelledError itself, without being cancelled."""
    LEDGER[label] += 1
    gone = asyncio.get_running_loop().create_future()
    gone.cancel("the connection went away")
    await gone


STEP_BODIES = {
    "answer": step_answer,
    "fail": step_fail,
    "hang": step_hang,
    "stubborn": step_stubborn,
    "self_cancelled": step_self_cancelled,
}


@phalanx.workflow
async def step_fan_out(
    ctx: WorkflowContext,
    branches: dict[str, dict[str, Any]],
    policy: str = "all",
    deadline: float | None = None,
) -> dict[str, Any]:
    """Gather step branches ({name: {"kind": ..., **inputs}}; kind "run" is a child run)."""
    specs = {}
    for branch, spec in branches.items():
        inputs = {k: v for k, v in spec.items() if k != "kind"}
        if spec["kind"] == "run":
            specs[branch] = FanBranch(worker, inputs)
        else:
            specs[branch] = FanBranch.step(STEP_BODIES[spec["kind"]], **inputs)
    chosen = {
        "all": Policy.all(),
        "any": Policy.any(),
        "quorum:2": Policy.quorum(2),
        "best_effort": Policy.best_effort(),
    }[policy]
    result = await gather(ctx, "fan", specs, policy=chosen, deadline=deadline)
    return result.to_json()
