"""Memory inside a workflow: every read and write journaled in the run, replayed as seen.

`memory(ctx, name)` is a `Memory` whose operations are pattern operations of the run
(`lowlevel.claim`/`record`): a read journals `MemoryRead` with the value, version,
position and staleness it returned; a snapshot journals `MemorySnapshotPinned` with
its position; a write journals `MemoryWriteAnswered` with the manager's answer (a
conflict with the current value it carried); `history(key)` journals
`MemoryHistoryRead` with every version. A replay returns those records and
asks the memory nothing, so "what did the agent see at this decision point" covers
memory too. A write's request id is the operation's (`{run_id}:{op}`): a run that
crashed after sending it sends the same id again, and the manager answers it once.
"""

from __future__ import annotations

from typing import Any

from ..durable import WorkflowContext, lowlevel
from ._client import Memory, Perform, Recorder, Submitter, unrecorded


def recorder(ctx: WorkflowContext) -> Recorder:
    """Journal each memory operation as an operation of the run `ctx` belongs to."""

    async def record(kind: str, name: str, event_type: str, perform: Perform) -> dict[str, Any]:
        op, recorded = lowlevel.claim(ctx, kind, name)
        if recorded is not None and recorded.events:
            return dict(recorded.events[0].data["result"])
        result = await perform(f"{ctx.run_id}:{op}")
        await lowlevel.record(ctx, event_type, {"op": op, "name": name, "result": result})
        return result

    return record


def memory(
    ctx: WorkflowContext,
    name: str,
    *,
    agent: str | None = None,
    manager: Submitter | None = None,
    timeout: float = 30.0,
) -> Memory:
    """Shared memory `name` as workflow `ctx` sees it: journaled, replayed as seen.

    Example::

        @phalanx.workflow
        async def researcher(ctx):
            plan = memory(ctx, "plan", agent="researcher").linearizable()
            await plan.update("findings", lambda f: [*f, "leases fence"], default=[])

    Writes are authored by `agent` in this run. `manager` is the memory's manager
    when it runs in this process (writes skip the request stream); without it they
    reach whichever manager holds the memory's lease.
    """
    return in_run(ctx, name, agent=agent, manager=manager, timeout=timeout, journal=True)


def in_run(
    ctx: WorkflowContext,
    name: str,
    *,
    agent: str | None,
    manager: Submitter | None,
    timeout: float,
    journal: bool,
) -> Memory:
    """Memory `name` authored by `agent` in run `ctx`; its operations journaled if `journal`.

    Tools run inside steps, which journal their results already: they use `journal=False`.
    """
    return Memory(
        lowlevel.store(ctx),
        name,
        agent=agent,
        run=ctx.run_id,
        manager=manager,
        clock=ctx.clock,
        timeout=timeout,
        recorder=recorder(ctx) if journal else unrecorded,
    )
