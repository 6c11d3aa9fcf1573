"""The conductor: a central, durable plan that assigns work to agents.

One orchestrator decides who does what. Each decision is an event in the conductor's
own journal before the work starts (`AssignmentMade`: which task, which agent, which
attempt, with which inputs, as which child run), and each result is one after it ends
(`AssignmentCompleted`). The work itself runs as child runs, each with its own
journal. So a conductor that crashes resumes from its journal: a finished assignment
returns its recorded result without running anything, an assignment in flight resumes
its child run (whose finished steps are not redone either), and only what was never
assigned is decided again. Decisions that came from a model or from earlier results
are replayed as made, not re-derived.

Two ways to use it, on one runtime:

- `Conductor.run(plan)`: a declared plan of `PlanTask`s with dependencies, dispatched as
  soon as their dependencies completed, at most `max_parallel` at a time. A task whose
  dependency did not complete is skipped, visibly (`AssignmentSkipped`).
- `Conductor.assign(task, agent)`: one assignment at a time, for conductors whose next
  decision depends on the last result in code.

A failed (or timed out) assignment is reassigned to the task's `fallbacks`, in order,
each attempt its own `AssignmentMade`. The result says what happened to every task;
reading the values of a plan that is not whole needs `accept_partial(reason)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import PartialResultError, PlanError
from ..durable import RunOutcome, WorkflowContext, lowlevel
from ..durable.lowlevel import Operation

AssignmentStatus = Literal["completed", "failed", "timed_out", "cancelled", "skipped"]
Workflow = Callable[..., Awaitable[Any]]
#: A task's inputs: fixed, or computed from its dependencies' values when it is assigned.
Inputs = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]]

#: Outcomes after which a task gets its next fallback agent, if it has one.
_REASSIGNABLE: frozenset[str] = frozenset({"failed", "timed_out"})


@dataclass(frozen=True)
class PlanTask:
    """One unit of a conductor's plan: what to do, by which agent, after what.

    `inputs` may be a function of the values of the tasks in `after` (by name); it is
    called once, when the task is assigned, and what it returns is journaled.
    `fallbacks` are agents to reassign the task to, in order, if it fails or times out.
    `deadline` (seconds from the assignment) bounds each attempt.
    """

    name: str
    agent: str
    inputs: Inputs = field(default_factory=dict)
    after: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    deadline: float | None = None

    def describe(self) -> dict[str, Any]:
        """The task as the journal records it in the plan (inputs come at assignment)."""
        return {
            "name": self.name,
            "agent": self.agent,
            "after": list(self.after),
            "fallbacks": list(self.fallbacks),
        }


@dataclass(frozen=True)
class Assignment:
    """How one task ended: by which agent, on which attempt, with what value or error."""

    task: str
    agent: str
    status: AssignmentStatus
    value: Any = None
    error: str | None = None
    run_id: str | None = None
    attempt: int = 1
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the task completed."""
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        """JSON form (also what `AssignmentCompleted` records)."""
        return {
            "task": self.task,
            "agent": self.agent,
            "status": self.status,
            "value": self.value,
            "error": self.error,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "duration_s": round(self.duration_s, 3),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assignment:
        """Rebuild an assignment from its journaled form."""
        return cls(
            task=str(data["task"]),
            agent=str(data["agent"]),
            status=data["status"],
            value=data.get("value"),
            error=data.get("error"),
            run_id=data.get("run_id"),
            attempt=int(data.get("attempt", 1)),
            duration_s=float(data.get("duration_s", 0.0)),
        )


@dataclass
class PlanResult:
    """One `Assignment` per task of the plan, in plan order, and whether it is whole.

    Reading `values` of a plan that is not whole raises `PartialResultError` until the
    code calls `await result.accept_partial(reason)`, which journals the decision.
    """

    name: str
    assignments: dict[str, Assignment]
    accepted_reason: str | None = None
    _ctx: WorkflowContext | None = field(default=None, repr=False)

    @property
    def partial(self) -> bool:
        """Whether any task did not complete."""
        return any(not a.ok for a in self.assignments.values())

    @property
    def missing(self) -> list[str]:
        """Tasks without a value, in plan order."""
        return [n for n, a in self.assignments.items() if not a.ok]

    @property
    def values(self) -> dict[str, Any]:
        """Values of the tasks that completed.

        Raises:
            PartialResultError: some task did not complete and nobody accepted that.
        """
        if self.partial and self.accepted_reason is None:
            raise PartialResultError(fan_out=self.name, missing=self.missing)
        return {n: a.value for n, a in self.assignments.items() if a.ok}

    async def accept_partial(self, reason: str) -> dict[str, Any]:
        """Decide, visibly, to go on with what completed; journaled; returns the values."""
        if self._ctx is None:
            raise RuntimeError("this result is not bound to a workflow context")
        await lowlevel.decide(
            self._ctx, f"accept_partial:{self.name}", {"reason": reason, "missing": self.missing}
        )
        self.accepted_reason = reason
        return self.values

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "partial": self.partial,
            "missing": self.missing,
            "accepted_reason": self.accepted_reason,
            "assignments": {n: a.to_json() for n, a in self.assignments.items()},
        }


@dataclass
class _Progress:
    """What the journal says about one task: its attempts so far and its outcome."""

    made: dict[str, Any] | None = None  # the latest AssignmentMade's data
    attempt: int = 0  # the latest attempt made
    outcome: Assignment | None = None  # the final outcome, once there is one
    last: Assignment | None = None  # the latest attempt's outcome

    def apply(self, event_type: str, data: Mapping[str, Any]) -> None:
        if event_type == "AssignmentMade":
            self.made = dict(data)
            self.attempt = int(data["attempt"])
        elif event_type == "AssignmentCompleted":
            self.last = Assignment.from_json(data)
            if data.get("final"):
                self.outcome = self.last
        elif event_type == "AssignmentSkipped":
            self.outcome = Assignment(
                str(data["task"]), str(data.get("agent", "")), "skipped", None, data.get("reason")
            )

    @property
    def in_flight(self) -> bool:
        """Assigned, and its latest attempt has not ended."""
        return self.made is not None and (self.last is None or self.last.attempt < self.attempt)


class Conductor:
    """A central orchestrator whose every assignment is a journaled decision.

    Example::

        @phalanx.workflow
        async def report(ctx, topic: str) -> dict:
            conductor = Conductor(ctx, "report", agents={"search": search, "write": write})
            result = await conductor.run([
                PlanTask("find", "search", {"topic": topic}),
                PlanTask("draft", "write", lambda done: {"notes": done["find"]}, after=("find",)),
            ])
            return result.values

    Each assignment runs its agent's workflow as a child run of the conductor's run, so
    it is cancelled with the conductor and resumed with it. Agents are workflows
    (decorated with `@phalanx.workflow`), named by the keys of `agents`.

    Raises:
        PlanError: on misuse, before anything is journaled: an unknown agent, a task
            name used twice, a dependency that is not in the plan, a cycle.
    """

    def __init__(
        self,
        ctx: WorkflowContext,
        name: str,
        agents: Mapping[str, Workflow],
        *,
        max_parallel: int | None = None,
    ) -> None:
        if not agents:
            raise PlanError(plan=name, reason="a conductor needs at least one agent")
        if max_parallel is not None and max_parallel < 1:
            raise PlanError(plan=name, reason=f"max_parallel must be >= 1, not {max_parallel}")
        self._ctx = ctx
        self.name = name
        self._agents = dict(agents)
        self._max_parallel = max_parallel
        self._assigned: set[str] = set()

    # -- one assignment at a time ------------------------------------------------------

    async def assign(
        self,
        task: str,
        agent: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        fallbacks: Sequence[str] = (),
        deadline: float | None = None,
    ) -> Assignment:
        """Assign `task` to `agent` now, wait for it, and return how it ended.

        Never raises for a failed task: the assignment says so. On replay, a finished
        assignment returns its journaled outcome and runs nothing.

        Raises:
            PlanError: unknown agent, or a task name this conductor already assigned.
            NonDeterminismError: the journal assigned this task to another agent.
        """
        spec = PlanTask(task, agent, dict(inputs or {}), (), tuple(fallbacks), deadline)
        self._check_agents([spec])
        if task in self._assigned:
            raise PlanError(plan=self.name, reason=f"task {task!r} was already assigned")
        self._assigned.add(task)
        op, recorded = lowlevel.claim(self._ctx, "assignment", f"{self.name}:{task}")
        progress = _Progress()
        if recorded is not None:
            self._fold(recorded, {task: progress})
            first = recorded.events[0].data
            if first.get("agent") != agent:
                lowlevel.diverge(
                    self._ctx,
                    op,
                    f"assignment of {task!r} to {first.get('agent')!r}",
                    f"to {agent!r}",
                )
            if progress.outcome is not None:
                return progress.outcome
        return await self._carry_out(op, f"{self.name}:{task}", spec, progress, {})

    # -- a declared plan -----------------------------------------------------------------

    async def run(self, plan: Sequence[PlanTask]) -> PlanResult:
        """Carry out `plan`: each task once its dependencies completed, journaled throughout.

        Returns when every task completed, failed, timed out, was cancelled or was
        skipped because a dependency did not complete.

        Raises:
            PlanError: the plan is malformed (see the class).
            NonDeterminismError: the journal recorded a different plan under this name.
        """
        tasks = self._check_plan(plan)
        ctx = self._ctx
        op, recorded = lowlevel.claim(ctx, "plan", self.name)
        progress = {name: _Progress() for name in tasks}
        described = [t.describe() for t in plan]
        if recorded is None:
            await lowlevel.record(
                ctx, "PlanRecorded", {"op": op, "name": self.name, "tasks": described}
            )
        else:
            if recorded.events[0].data.get("tasks") != described:
                lowlevel.diverge(
                    ctx, op, recorded.describe(), f"plan {self.name!r} with other tasks"
                )
            self._fold(recorded, progress)
            if recorded.last("PlanCompleted") is not None:
                return self._result(tasks, progress)

        running: dict[str, asyncio.Task[Assignment]] = {}
        async with asyncio.TaskGroup() as group:
            while True:
                await self._skip_unreachable(op, tasks, progress)
                for name, task in tasks.items():
                    if name in running or progress[name].outcome is not None:
                        continue
                    if not all(_ok(progress[d]) for d in task.after):
                        continue
                    full = self._max_parallel is not None and len(running) >= self._max_parallel
                    if full and not progress[name].in_flight:
                        continue
                    values = {d: _final(progress[d]).value for d in task.after}
                    running[name] = group.create_task(
                        self._carry_out(op, self.name, task, progress[name], values)
                    )
                if not running:
                    break
                await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                for name in [n for n, t in running.items() if t.done()]:
                    progress[name].outcome = running.pop(name).result()
        await lowlevel.record(
            ctx,
            "PlanCompleted",
            {
                "op": op,
                "name": self.name,
                "statuses": {n: p.outcome.status for n, p in progress.items() if p.outcome},
            },
        )
        return self._result(tasks, progress)

    # -- the work ------------------------------------------------------------------------

    async def _carry_out(
        self,
        op: int,
        name: str,
        task: PlanTask,
        progress: _Progress,
        values: Mapping[str, Any],
    ) -> Assignment:
        """Assign (or resume) `task`'s attempts until one completes or agents run out."""
        ctx = self._ctx
        clock = ctx.clock
        agents = (task.agent, *task.fallbacks)
        while True:
            made = progress.made if progress.in_flight else None
            if made is None:
                attempt = progress.attempt + 1
                agent = agents[attempt - 1]
                base = f"{ctx.run_id}.{op}.{task.name}"
                made = {
                    "op": op,
                    "name": name,
                    "task": task.name,
                    "agent": agent,
                    "attempt": attempt,
                    "run_id": base if attempt == 1 else f"{base}~{attempt}",
                    "inputs": dict(task.inputs(values) if callable(task.inputs) else task.inputs),
                    "deadline_at": None if task.deadline is None else clock.now() + task.deadline,
                    "reassigned_from": progress.last.agent if progress.last else None,
                }
                await lowlevel.record(ctx, "AssignmentMade", made)
                progress.apply("AssignmentMade", made)
            started = clock.monotonic()
            outcome = await lowlevel.run_child(
                ctx,
                str(made["run_id"]),
                self._agents[str(made["agent"])],
                dict(made["inputs"]),
                deadline_at=made.get("deadline_at"),
            )
            assignment = _assignment(made, outcome, clock.monotonic() - started)
            final = assignment.status not in _REASSIGNABLE or assignment.attempt >= len(agents)
            data = {"op": op, "name": name, **assignment.to_json(), "final": final}
            await lowlevel.record(ctx, "AssignmentCompleted", data)
            progress.apply("AssignmentCompleted", data)
            if final:
                return assignment

    async def _skip_unreachable(
        self, op: int, tasks: Mapping[str, PlanTask], progress: dict[str, _Progress]
    ) -> None:
        """Journal as skipped every task a dependency of which ended without completing."""
        changed = True
        while changed:  # a skip can make a later task unreachable too
            changed = False
            for name, task in tasks.items():
                state = progress[name]
                if state.outcome is not None or state.in_flight:
                    continue
                lost = [d for d in task.after if _ended(progress[d]) and not _ok(progress[d])]
                if not lost:
                    continue
                data = {
                    "op": op,
                    "name": self.name,
                    "task": name,
                    "agent": task.agent,
                    "reason": f"dependency {lost[0]!r} ended {_final(progress[lost[0]]).status}",
                }
                await lowlevel.record(self._ctx, "AssignmentSkipped", data)
                state.apply("AssignmentSkipped", data)
                changed = True

    # -- checks and folds ----------------------------------------------------------------

    def _check_agents(self, plan: Sequence[PlanTask]) -> None:
        for task in plan:
            for agent in (task.agent, *task.fallbacks):
                if agent not in self._agents:
                    known = ", ".join(sorted(self._agents))
                    raise PlanError(
                        plan=self.name,
                        reason=f"task {task.name!r} names agent {agent!r}; known agents: {known}",
                    )

    def _check_plan(self, plan: Sequence[PlanTask]) -> dict[str, PlanTask]:
        self._check_agents(plan)
        tasks: dict[str, PlanTask] = {}
        for task in plan:
            if task.name in tasks:
                raise PlanError(plan=self.name, reason=f"task {task.name!r} appears twice")
            tasks[task.name] = task
        for task in plan:
            for dep in task.after:
                if dep not in tasks:
                    raise PlanError(
                        plan=self.name,
                        reason=f"task {task.name!r} runs after {dep!r}, which is not in the plan",
                    )
        # Kahn's algorithm: whatever never becomes free of dependencies is on a cycle.
        waiting = {t.name: set(t.after) for t in plan}
        while True:
            free = [n for n, deps in waiting.items() if not deps]
            if not free:
                break
            for n in free:
                del waiting[n]
            for deps in waiting.values():
                deps.difference_update(free)
        if waiting:
            raise PlanError(plan=self.name, reason=f"tasks {sorted(waiting)} depend on each other")
        return tasks

    @staticmethod
    def _fold(recorded: Operation, progress: Mapping[str, _Progress]) -> None:
        for event in recorded.events:
            task = event.data.get("task")
            if isinstance(task, str) and task in progress:
                progress[task].apply(event.type, event.data)

    def _result(
        self, tasks: Mapping[str, PlanTask], progress: Mapping[str, _Progress]
    ) -> PlanResult:
        assignments = {name: _final(progress[name]) for name in tasks}
        return PlanResult(self.name, assignments, _ctx=self._ctx)


def _final(progress: _Progress) -> Assignment:
    """A task's final outcome, which the caller knows it has."""
    assert progress.outcome is not None, "the task has not ended"
    return progress.outcome


def _ended(progress: _Progress) -> bool:
    return progress.outcome is not None


def _ok(progress: _Progress) -> bool:
    return progress.outcome is not None and progress.outcome.ok


def _assignment(made: Mapping[str, Any], outcome: RunOutcome, duration: float) -> Assignment:
    """The assignment an attempt's child-run outcome makes."""
    task, agent, attempt = str(made["task"]), str(made["agent"]), int(made["attempt"])
    run_id = outcome.run_id
    if outcome.status == "completed":
        return Assignment(task, agent, "completed", outcome.result, None, run_id, attempt, duration)
    error = outcome.error or {}
    message = str(error.get("message", ""))
    status: AssignmentStatus = "failed"
    if outcome.status == "cancelled":
        status = "timed_out" if message == "deadline exceeded" else "cancelled"
    text = f"{str(error.get('type', 'Error')).rsplit('.', 1)[-1]}: {message}"
    return Assignment(task, agent, status, None, text, run_id, attempt, duration)
