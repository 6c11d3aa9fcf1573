"""The lost-update scenario (`phalanx demo memory`): two agents add findings to one plan.

Twice, with the same two agents (`agent_a`, `agent_b`, child runs of the demo's run)
and the same timing: each, round after round, reads the shared plan, thinks (a call
to the scripted model), and writes the plan back with its new finding.

- naive: the write is a blind `put` (last writer wins). Both agents read the same
  version, both write, and the second write silently drops the first one's finding.
- phalanx: the write is a compare-and-set based on the version read. The second
  writer's CAS is refused with the current value (`MemoryConflictError`); the agent
  merges its finding into that value and writes again. Nothing is lost.

The demo's run hosts the memory's manager (taking it over with a larger epoch when
the run is resumed), so `phalanx resume RUN` finishes a killed demo.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from .. import workflow
from .._errors import MemoryConflictError
from ..agents import Message, ModelRequest, Script, ScriptedModel, Turn
from ..durable import WorkflowContext, lowlevel
from ..memory import memory, open_memory_manager
from ._limits import SCRIPTED_CALL_TIMEOUT_S

AGENT_NAMES = ("agent_a", "agent_b")
#: The plan's key in each phase's memory.
PLAN = "plan"

Mode = Literal["naive", "phalanx"]


async def _think(agent: str, round_no: int, plan: list[str], latency: float) -> str:
    """The agent's model call: a finding to add to the plan (scripted, offline)."""
    model = ScriptedModel(Script(default=Turn(text="{prompt}")), latency=latency)
    request = ModelRequest(
        messages=(
            Message.system(f"You are {agent}. Add one finding to the shared plan."),
            Message(role="user", content=f"{agent} finding {round_no} (plan had {len(plan)})"),
        )
    )
    # The loop's timer, so virtual under simulation.
    async with asyncio.timeout(SCRIPTED_CALL_TIMEOUT_S):
        response = await model.complete(request)
    return str(response.text)


@workflow
async def plan_agent(
    ctx: WorkflowContext, memory_name: str, agent: str, mode: str, rounds: int, think_s: float
) -> dict[str, Any]:
    """One agent: `rounds` times read the plan, think, write the plan with a new finding."""
    plan = memory(ctx, memory_name, agent=agent).linearizable()
    writes = conflicts = 0
    findings: list[str] = []
    for round_no in range(1, rounds + 1):
        seen = await plan.read(PLAN)
        value, version = list(seen.value), seen.version
        finding = await ctx.step(f"think {round_no}", _think, agent, round_no, value, think_s)
        findings.append(finding)
        writes += 1
        if mode == "naive":
            await plan.put(PLAN, [*value, finding])
            continue
        while True:
            try:
                await plan.cas(PLAN, [*value, finding], based_on=version)
                break
            except MemoryConflictError as conflict:
                # The model is shown the current plan and merges instead of overwriting.
                conflicts += 1
                value, version = list(conflict.current_value), conflict.current_version
    return {"agent": agent, "writes": writes, "conflicts": conflicts, "findings": findings}


async def _phase(ctx: WorkflowContext, mode: Mode, rounds: int, think_s: float) -> dict[str, Any]:
    name = f"demo-{ctx.run_id}-{mode}"
    plan = memory(ctx, name, agent="orchestrator").linearizable()
    if not await plan.keys():
        await plan.cas(PLAN, [], based_on=0)
    async with asyncio.TaskGroup() as group:
        runs = [
            group.create_task(
                lowlevel.run_child(
                    ctx,
                    f"{ctx.run_id}.{mode}.{agent}",
                    plan_agent,
                    {
                        "memory_name": name,
                        "agent": agent,
                        "mode": mode,
                        "rounds": rounds,
                        "think_s": think_s,
                    },
                )
            )
            for agent in AGENT_NAMES
        ]
    results = []
    for task in runs:
        outcome = task.result()
        if not outcome.ok:
            raise RuntimeError(f"agent run {outcome.run_id} ended {outcome.status}")
        results.append(outcome.result)
    final = await plan.read(PLAN)
    attempted = [f for r in results for f in r["findings"]]
    lost = [f for f in attempted if f not in final.value]
    report: dict[str, Any] = {
        "memory": name,
        "writes": sum(r["writes"] for r in results),
        "lost_updates": len(lost),
        "lost": lost,
        "final": final.value,
        "version": final.version,
    }
    if mode == "phalanx":
        report["conflicts"] = sum(r["conflicts"] for r in results)
    return report


@workflow
async def memory_demo(
    ctx: WorkflowContext, rounds: int = 3, think_s: float = 0.2
) -> dict[str, Any]:
    """Both phases, one after the other, with this run hosting the memories' managers."""
    store = lowlevel.store(ctx)
    report: dict[str, Any] = {}
    for mode in ("naive", "phalanx"):
        # take_over: a resumed demo takes the manager over from its dead predecessor
        # at once, with a larger epoch that fences the old one out.
        async with open_memory_manager(
            store, f"demo-{ctx.run_id}-{mode}", take_over=True, clock=ctx.clock
        ):
            report[mode] = await _phase(ctx, mode, rounds, think_s)
    return report
