"""The orchestrated saga: a durable coordinator that runs steps and, on failure, undoes them.

A `Saga` runs inside a workflow, built on `durable.lowlevel` alone. It claims one
operation (kind `saga`), journals its declaration (`SagaStarted`: every step with its
compensation, before any step runs), then runs the steps one at a time in a
topological order of their dependencies (a pipeline by default). Each step's action is
a durable step named after the step (`StepStarted` / `StepCompleted` / `StepFailed`,
tagged with the saga's id), retried by its own policy. When a step fails for good:

1. forward recovery, if the step declares it (`ForwardRecovery`): an earlier step runs again
   with the failure as input, and the steps after it follow, at most `max_rounds`
   rounds (`SagaRecovering`);
2. otherwise the saga compensates (`SagaCompensating`): the completed steps'
   compensations run in reverse order of completion (or all at once, `parallel`), each
   durable, idempotent and retried (see `_saga_undo`); a compensation that keeps
   failing goes to the dead-letter queue and the saga waits (`stop`) or finishes the
   others first (`continue`).

Compensation is shielded (`lowlevel.run_shielded`): cancelling the run or its deadline
passing while it compensates does not cut the compensation short; a cancel during the
forward steps starts the compensation, and the run ends cancelled once it is done.
`SagaEnded` records the outcome. The saga's state is a fold of these events
(`_saga_state`), which `phalanx show` prints.

Example::

    publish = Saga("publish", [
        SagaStep("reserve", reserve, compensation=release),
        SagaStep("charge", charge, compensation=refund, retry=RetryPolicy(max_attempts=3)),
        SagaStep("ship", ship, compensation=recall),
    ])

    @phalanx.workflow
    async def order(ctx, sku: str) -> dict:
        return (await publish.run(ctx, {"sku": sku})).to_json()
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import NonDeterminismError, StoreError
from ..durable import WorkflowContext, lowlevel
from ..durable.lowlevel import Operation
from ._saga_def import (
    CompensationOrder,
    OnCompensationFailure,
    SagaPlan,
    SagaState,
    SagaStep,
    plan_saga,
)
from ._saga_state import StepStatus
from ._saga_undo import Compensator, compensation_tool, error_summary

SagaOutcome = Literal["completed", "compensated", "failed"]


@dataclass(frozen=True)
class SagaResult:
    """How a saga ended: `completed`, `compensated` (rolled back) or `failed`.

    `failed` means a compensation was abandoned (its dead-letter entry discarded): some
    step stays done and nothing undid it, which the saga says instead of hiding.
    `steps` maps every step to `completed`, `failed`, `compensated` or `not_run`;
    `compensations` lists the steps in the order they were compensated.
    """

    saga_id: str
    name: str
    status: SagaOutcome
    steps: dict[str, StepStatus]
    compensations: list[str]
    results: dict[str, Any]
    failed_step: str | None = None
    error: dict[str, str] | None = None
    abandoned: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every step completed."""
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        """JSON form, to return from a workflow."""
        return {
            "saga_id": self.saga_id,
            "name": self.name,
            "status": self.status,
            "steps": dict(self.steps),
            "compensations": list(self.compensations),
            "results": dict(self.results),
            "failed_step": self.failed_step,
            "error": self.error,
            "abandoned": list(self.abandoned),
        }


class _Once:
    """Journals a saga-level event unless the journal already holds that occurrence."""

    def __init__(self, ctx: WorkflowContext, recorded: Operation | None) -> None:
        self._ctx = ctx
        self._seen: dict[str, int] = {}
        self._recorded: dict[str, int] = {}
        for event in [] if recorded is None else recorded.events:
            self._recorded[event.type] = self._recorded.get(event.type, 0) + 1

    async def record(self, event_type: str, data: Mapping[str, Any]) -> None:
        count = self._seen.get(event_type, 0)
        self._seen[event_type] = count + 1
        if count >= self._recorded.get(event_type, 0):
            await lowlevel.record(self._ctx, event_type, data)


class Saga:
    """A saga: steps with compensating actions, run durably by a coordinator.

    Args:
        name: The saga's name (its operation's name in the journal).
        steps: The steps, in the order they run unless `after` says otherwise.
        compensation_order: `reverse` (one at a time, last completed first) or
            `parallel` (every first attempt at once).
        on_compensation_failure: `stop` (wait for a person before going on) or
            `continue` (undo the rest first, then wait).
        require_compensation: Refuse a step without a compensation (the default).

    Raises:
        SagaDefinitionError: from the constructor; see `_saga_def`.
    """

    def __init__(
        self,
        name: str,
        steps: Sequence[SagaStep],
        *,
        compensation_order: CompensationOrder = "reverse",
        on_compensation_failure: OnCompensationFailure = "stop",
        require_compensation: bool = True,
    ) -> None:
        self.plan: SagaPlan = plan_saga(
            name,
            steps,
            compensation_order=compensation_order,
            on_compensation_failure=on_compensation_failure,
            require_compensation=require_compensation,
        )
        self.name = name
        self._tools = {
            s.name: compensation_tool(self.plan, s) for s in steps if s.compensation is not None
        }

    async def run(
        self, ctx: WorkflowContext, inputs: Mapping[str, Any] | None = None
    ) -> SagaResult:
        """Run the saga in this workflow; return how it ended (never raises for a rollback).

        Raises:
            asyncio.CancelledError: the run was cancelled (or its deadline passed); the
                compensation finished first.
        """
        op, recorded = lowlevel.claim(ctx, "saga", self.name)
        saga_id = f"{ctx.run_id}:{op}"
        once = _Once(ctx, recorded)
        stamp = {"op": op, "name": self.name, "saga_id": saga_id}
        await once.record(
            "SagaStarted", {**stamp, "style": "orchestrated", **self.plan.declaration()}
        )
        forward = _Forward(ctx, self.plan, saga_id, dict(inputs or {}), once, stamp)
        cancelled: asyncio.CancelledError | None = None
        try:
            await forward.run()
        except asyncio.CancelledError as exc:
            cancelled = exc
            forward.error = {"type": "Cancelled", "message": str(exc) or "the run was cancelled"}
        if forward.failed is None and cancelled is None:
            result = forward.result("completed", [], ())
            await once.record("SagaEnded", {**stamp, **_ended(result)})
            return result
        result = await lowlevel.run_shielded(
            ctx, lambda: self._compensate(ctx, forward, once, stamp)
        )
        if cancelled is not None:
            raise cancelled
        return result

    async def _compensate(
        self, ctx: WorkflowContext, forward: _Forward, once: _Once, stamp: Mapping[str, Any]
    ) -> SagaResult:
        plan = self.plan
        names = [n for n in reversed(forward.completed) if plan.steps[n].compensation is not None]
        failed = forward.failed
        if failed is not None and plan.steps[failed].compensate_failed and failed not in names:
            names.insert(0, failed)  # declared safe to undo a half-done step: undo it first
        await once.record(
            "SagaCompensating",
            {**stamp, "step": failed, "error": forward.error, "compensating": names},
        )
        undone = await Compensator(ctx, plan, self._tools, stamp["saga_id"]).run(
            names, forward.results
        )
        status: SagaOutcome = "failed" if undone.abandoned else "compensated"
        result = forward.result(status, undone.compensated, tuple(undone.abandoned))
        await once.record("SagaEnded", {**stamp, **_ended(result)})
        return result


def _ended(result: SagaResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "steps": dict(result.steps),
        "compensations": list(result.compensations),
        "abandoned": list(result.abandoned),
    }


class _Forward:
    """The forward half of a saga: run the steps, recover forward, note what failed."""

    def __init__(
        self,
        ctx: WorkflowContext,
        plan: SagaPlan,
        saga_id: str,
        inputs: dict[str, Any],
        once: _Once,
        stamp: Mapping[str, Any],
    ) -> None:
        self._ctx = ctx
        self._plan = plan
        self._saga_id = saga_id
        self._inputs = inputs
        self._once = once
        self._stamp = stamp
        self.results: dict[str, Any] = {}
        #: Steps completed, in order of (latest) completion: compensation reverses it.
        self.completed: list[str] = []
        self.failed: str | None = None
        self.error: dict[str, str] | None = None

    async def run(self) -> None:
        plan = self._plan
        order = plan.order
        position = {n: i for i, n in enumerate(order)}
        rounds: dict[str, int] = {}
        failure: dict[str, Any] | None = None
        i = 0
        while i < len(order):
            name = order[i]
            step = plan.steps[name]
            state = SagaState(self._inputs, dict(self.results), failure)
            try:
                value = await lowlevel.step(
                    self._ctx,
                    name,
                    step.action,
                    state,
                    retry=step.retry,
                    tags={"saga_id": self._saga_id},
                )
            except asyncio.CancelledError:
                self.failed = name  # interrupted half-way
                raise
            except (NonDeterminismError, StoreError):
                raise  # the journal's trouble, not the step's: no compensation for it
            except Exception as exc:
                recover = step.recover
                done = rounds.get(name, 0)
                if recover is not None and done < recover.max_rounds:
                    rounds[name] = done + 1
                    failure = {"step": name, "error": error_summary(exc), "round": done + 1}
                    await self._once.record(
                        "SagaRecovering", {**self._stamp, **failure, "rerun": recover.rerun}
                    )
                    i = position[recover.rerun]
                    continue
                self.failed, self.error = name, error_summary(exc)
                return
            if failure is not None and failure["step"] == name:
                failure = None  # the failure was every re-run step's input until now
            self.results[name] = value
            if name in self.completed:
                self.completed.remove(name)
            self.completed.append(name)
            i += 1

    def result(
        self, status: SagaOutcome, compensations: list[str], abandoned: tuple[str, ...]
    ) -> SagaResult:
        steps: dict[str, StepStatus] = {}
        for name in self._plan.order:
            if name in compensations:
                steps[name] = "compensated"
            elif name == self.failed:
                steps[name] = "failed"
            elif name in self.results:
                steps[name] = "completed"
            else:
                steps[name] = "not_run"
        return SagaResult(
            self._saga_id,
            self._plan.name,
            status,
            steps,
            compensations,
            dict(self.results),
            self.failed,
            self.error,
            abandoned,
        )
