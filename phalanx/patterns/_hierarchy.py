"""Hierarchy: sub-orchestrators with their own agents, and a declared policy for their death.

A top orchestrator delegates to a sub-orchestrator (a child run), which runs agents of
its own (grandchild runs) and perhaps sub-orchestrators of its own. When a middle node
dies (its run fails: its own code raised, say, while its agents were working) its
children lose the one run that was awaiting them. The runtime stops them, since they
were tasks of the dead run, but leaves them `running` and resumable, and nobody would
ever resume them: only a parent resumes its children. Left alone they are orphans,
listed as running forever.

`Hierarchy.delegate` runs the middle node and, once it has ended, looks in the store
for its descendants that are still open and applies the declared policy:

- `"cancel"`: every open descendant is cancelled, deepest first, and resumed here so
  that it runs its cleanup and journals `RunCancelled` itself (a step in flight is not
  re-run: a cancelled run stops before any new work). `SubtreeCancelled` lists them.
- `"reparent"`: the dead node's open children are adopted by the delegating run. Each
  adoption is journaled (`Reparented`), then the child is resumed as this run's own
  child and finishes its work; its own children come along (their parent is alive
  again). The outcomes reach the new parent in `Delegation.adopted`.

A cancel requested for the middle node, or its deadline, is not a death: cancellation
reaches every descendant (structured concurrency) whatever the policy, and anything
the cascade missed is cancelled too. Every step of the policy is journaled and
idempotent, so a top orchestrator that crashes while applying it finishes the job on
resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..durable import (
    RunOutcome,
    RunStatus,
    RunSummary,
    WorkflowContext,
    load_workflow,
    lowlevel,
)
from ..durable.lowlevel import TERMINAL

MiddleDeathPolicy = Literal["cancel", "reparent"]
Workflow = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class AdoptedRun:
    """A dead middle node's child that the delegating run adopted, and how it ended."""

    run_id: str
    workflow: str
    status: RunStatus
    result: Any = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (also what `AdoptedRunFinished` records)."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "result": self.result,
            "error": self.error,
        }


@dataclass(frozen=True)
class Delegation:
    """How a delegation to a sub-orchestrator ended, and what its death policy did.

    `status`, `result` and `error` are the middle node's own; `died` says it failed.
    `cancelled` lists the descendants the policy cancelled (deepest first), `adopted`
    the children re-parented to the delegating run, with their outcomes.
    """

    name: str
    run_id: str
    policy: MiddleDeathPolicy
    status: RunStatus
    result: Any = None
    error: dict[str, Any] | None = None
    died: bool = False
    cancelled: tuple[str, ...] = ()
    adopted: dict[str, AdoptedRun] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the middle node completed."""
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        """JSON form (also what `DelegationCompleted` records)."""
        return {
            "name": self.name,
            "run_id": self.run_id,
            "policy": self.policy,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "died": self.died,
            "cancelled": list(self.cancelled),
            "adopted": {k: v.to_json() for k, v in self.adopted.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delegation:
        """Rebuild a delegation from its journaled form."""
        adopted = {
            k: AdoptedRun(v["run_id"], v["workflow"], v["status"], v.get("result"), v.get("error"))
            for k, v in dict(data.get("adopted") or {}).items()
        }
        return cls(
            name=str(data["name"]),
            run_id=str(data["run_id"]),
            policy=data["policy"],
            status=data["status"],
            result=data.get("result"),
            error=data.get("error"),
            died=bool(data.get("died")),
            cancelled=tuple(data.get("cancelled") or ()),
            adopted=adopted,
        )


class Hierarchy:
    """Delegation to sub-orchestrators under a declared policy for a middle node's death.

    Example::

        @phalanx.workflow
        async def research(ctx, topic: str) -> dict:
            tree = Hierarchy(ctx, on_middle_death="reparent")
            web = await tree.delegate("web", web_team, {"topic": topic})
            if web.died:
                # The team lead failed; its agents finished under us instead.
                return {k: a.result for k, a in web.adopted.items()}
            return web.result

    The middle node is an ordinary workflow run as a child run; it may run its agents
    any way it likes (`ctx.child`, `gather`, a `Conductor`, its own `Hierarchy`). The
    policy applies to the subtree under it, found through the store's run index (each
    run records its parent), so it covers children started by any pattern.
    """

    def __init__(
        self, ctx: WorkflowContext, *, on_middle_death: MiddleDeathPolicy = "cancel"
    ) -> None:
        if on_middle_death not in ("cancel", "reparent"):
            raise ValueError(
                f"on_middle_death must be 'cancel' or 'reparent', not {on_middle_death!r}"
            )
        self._ctx = ctx
        self.policy: MiddleDeathPolicy = on_middle_death

    async def delegate(
        self,
        name: str,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        deadline: float | None = None,
    ) -> Delegation:
        """Run `workflow` as a sub-orchestrator and apply the policy once it has ended.

        Never raises for a failed or cancelled middle node: the delegation says so.
        `deadline` (seconds) bounds the middle node and so its whole subtree.
        """
        ctx = self._ctx
        op, recorded = lowlevel.claim(ctx, "delegation", name)
        events: dict[str, list[dict[str, Any]]] = {}
        if recorded is None:
            started: dict[str, Any] = {
                "op": op,
                "name": name,
                "run_id": f"{ctx.run_id}.{op}",
                "policy": self.policy,
                "deadline_at": None if deadline is None else ctx.clock.now() + deadline,
            }
            await lowlevel.record(ctx, "DelegationStarted", started)
        else:
            for event in recorded.events:
                events.setdefault(event.type, []).append(event.data)
            started = events["DelegationStarted"][0]
            if "DelegationCompleted" in events:
                return Delegation.from_json(events["DelegationCompleted"][0])
        run_id = str(started["run_id"])
        policy: MiddleDeathPolicy = started["policy"]

        if "DelegationEnded" in events:
            ended = events["DelegationEnded"][0]
        else:
            outcome = await lowlevel.run_child(
                ctx, run_id, workflow, dict(inputs or {}), deadline_at=started.get("deadline_at")
            )
            orphans = [r.run_id for depth, r in await self._subtree(run_id) if depth == 1]
            ended = {
                "op": op,
                "name": name,
                "run_id": run_id,
                "status": outcome.status,
                "result": outcome.result,
                "error": outcome.error,
                "died": outcome.status == "failed",
                "orphans": orphans,
            }
            await lowlevel.record(ctx, "DelegationEnded", ended)

        # A cancelled middle node's subtree is cancelled whatever the policy: that is
        # what cancelling it asked for.
        effective = policy if ended["status"] != "cancelled" else "cancel"
        cancelled: list[str] = []
        adopted: dict[str, AdoptedRun] = {}
        if effective == "reparent":
            adopted = await self._adopt(op, name, run_id, list(ended["orphans"]), events)
        # Under `cancel`, the whole open subtree; under `reparent`, whatever is still
        # open once the adopted children are done (a grandchild whose own parent had
        # ended: nobody can resume it), so nothing is left running either way. The
        # list is journaled before any cancel, so a resume cancels the same runs.
        if "SubtreeCancelled" in events:
            cancelled = list(events["SubtreeCancelled"][0]["runs"])
        else:
            cancelled = [r.run_id for _, r in sorted(await self._subtree(run_id), key=_deepest)]
            if cancelled or effective == "cancel":
                await lowlevel.record(
                    ctx,
                    "SubtreeCancelled",
                    {"op": op, "name": name, "middle": run_id, "runs": cancelled},
                )
        await self._cancel_runs(cancelled, run_id, name, ended)
        delegation = Delegation(
            name=name,
            run_id=run_id,
            policy=policy,
            status=ended["status"],
            result=ended.get("result"),
            error=ended.get("error"),
            died=bool(ended.get("died")),
            cancelled=tuple(cancelled),
            adopted=adopted,
        )
        await lowlevel.record(ctx, "DelegationCompleted", {"op": op, **delegation.to_json()})
        return delegation

    # -- the policies ----------------------------------------------------------------

    async def _adopt(
        self,
        op: int,
        name: str,
        middle: str,
        orphans: list[str],
        events: Mapping[str, list[dict[str, Any]]],
    ) -> dict[str, AdoptedRun]:
        """Re-parent `orphans` to this run and wait for each; journaled per child."""
        ctx = self._ctx
        reparented = {e["child_run_id"] for e in events.get("Reparented", [])}
        finished = {
            e["run_id"]: AdoptedRun(
                e["run_id"], e["workflow"], e["status"], e.get("result"), e.get("error")
            )
            for e in events.get("AdoptedRunFinished", [])
        }
        adopted: dict[str, AdoptedRun] = {}

        async def adopt(child_id: str) -> None:
            history = await lowlevel.runs(ctx).history(child_id)
            outcome: RunOutcome = await lowlevel.run_child(
                ctx, child_id, load_workflow(history.workflow), dict(history.inputs)
            )
            run = AdoptedRun(
                child_id, history.workflow, outcome.status, outcome.result, outcome.error
            )
            adopted[child_id] = run
            await lowlevel.record(
                ctx, "AdoptedRunFinished", {"op": op, "name": name, **run.to_json()}
            )

        # Journal every adoption before waiting on any: `Reparented` is the decision,
        # and it must be on record however long the adopted work takes.
        for child_id in orphans:
            if child_id not in reparented:
                await lowlevel.record(
                    ctx,
                    "Reparented",
                    {
                        "op": op,
                        "name": name,
                        "child_run_id": child_id,
                        "from_parent": middle,
                        "to_parent": ctx.run_id,
                    },
                )
        async with asyncio.TaskGroup() as group:
            for child_id in orphans:
                if child_id in finished:
                    adopted[child_id] = finished[child_id]
                else:
                    group.create_task(adopt(child_id))
        return {child_id: adopted[child_id] for child_id in orphans}

    async def _cancel_runs(
        self, run_ids: list[str], middle: str, name: str, ended: Mapping[str, Any]
    ) -> None:
        """Cancel each run still open, in order, and resume it here to journal that.

        Deepest first, so that each run, resumed to journal its own cancellation, finds
        its children already ended and stops at once instead of resuming them. A run
        that already ended (a resume doing this again) is skipped.
        """
        ctx = self._ctx
        runtime = lowlevel.runs(ctx)
        what = "died" if ended.get("died") else f"ended {ended['status']}"
        reason = f"middle node {middle!r} ({name}) {what}"
        for run_id in run_ids:
            history = await runtime.history(run_id)
            if history.terminal:
                continue
            await runtime.cancel(run_id, reason=reason)
            await lowlevel.run_child(
                ctx, run_id, load_workflow(history.workflow), dict(history.inputs)
            )

    async def _subtree(self, root: str) -> list[tuple[int, RunSummary]]:
        """Every open descendant of run `root` with its depth below it, parents first.

        Read from the store's run index, where each run records its parent, so runs
        started by any pattern are found, and those of a crashed process too.
        """
        children: dict[str, list[RunSummary]] = {}
        for run in await lowlevel.runs(self._ctx).runs():
            if run.parent_run_id is not None:
                children.setdefault(run.parent_run_id, []).append(run)
        found: list[tuple[int, RunSummary]] = []
        frontier = [(0, root)]
        while frontier:
            depth, parent = frontier.pop(0)
            for child in children.get(parent, []):
                frontier.append((depth + 1, child.run_id))
                if child.status not in TERMINAL:
                    found.append((depth + 1, child))
        return found


def _deepest(item: tuple[int, RunSummary]) -> int:
    """Sort key: deepest first (a stable sort keeps store order among equals)."""
    return -item[0]
