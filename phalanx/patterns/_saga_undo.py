"""Running a saga's compensations: durable, idempotent, retried, dead-lettered, awaited.

Each compensation is one operation of kind `compensation` named after its step, whose
idempotency key (`RUN:OP`) is fixed when it is first claimed: the key survives a crash,
so a compensation that was in flight runs again with the same key and its target can
deduplicate. The call itself is a reliable tool call (`tools.reliable_call`) of a tool
made from the compensation: its retry policy paces the attempts, each journaled, and
one that fails for good goes to the dead-letter queue. The saga then journals
`CompensationFailed` and waits for a person (`phalanx dlq resolve` / `retry` /
`discard`): the run's status is `waiting` meanwhile, and the outcome is journaled as
`CompensationCompleted` (resolved) or `CompensationAbandoned` (discarded).

`phalanx dlq retry` cannot re-import a compensation (its tool is made here, around
the saga's function), and says so: a person resolves the entry instead, by hand or
after undoing the step themselves.

`CompensationStarted` and a successful `CompensationCompleted` are written with the
run's next write rather than one of their own (`record_later`): undoing N steps then
costs what running N durable steps costs. If a crash loses the deferred completion,
the replay finds the compensation's step completed and journals it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._executor import run_sync
from ..durable import WorkflowContext, lowlevel
from ..durable.lowlevel import Operation
from ._saga_def import IDEMPOTENCY_PARAMETER, SagaPlan, SagaStep

if TYPE_CHECKING:
    # `phalanx.tools` needs pydantic (a tenth of a second to import): `import phalanx`
    # must not pay for it, so it is imported where a saga is defined or compensates.
    from ..tools import Tool, ToolCallReport


def compensation_tool(plan: SagaPlan, step: SagaStep) -> Tool:
    """The tool through which a step's compensation is called reliably."""
    fn = step.compensation
    assert fn is not None  # only steps with a compensation get a tool
    keyed = plan.takes_key[step.name]
    threaded = not inspect.iscoroutinefunction(fn)

    async def compensate(result: Any, key: str) -> Any:
        kwargs = {IDEMPOTENCY_PARAMETER: key} if keyed else {}
        if threaded:
            # A sync compensation runs in a thread so it cannot stall the run.
            value = await run_sync(fn, result, **kwargs)
        else:
            value = fn(result, **kwargs)
        if inspect.isawaitable(value):  # an async function, or a lambda returning a coroutine
            value = await value
        return value

    # Every compensation tool takes the same arguments: one schema (pydantic builds a
    # model per tool, ~2 ms each) serves them all.
    return dataclasses.replace(
        _template(),
        name=f"compensate:{step.name}",
        description=f"Undo step {step.name!r} of saga {plan.name!r}.",
        fn=compensate,
        retry=step.compensation_retry,
        timeout=step.compensation_timeout,
    )


@functools.cache
def _template() -> Tool:
    from ..tools import tool

    async def compensate(result: Any, key: str) -> Any:
        """The signature every compensation tool shares."""

    # Never half-done silently: a compensation that keeps failing waits for a person.
    return tool(dead_letter="wait")(compensate)


def error_summary(error: BaseException) -> dict[str, str]:
    """An error as saga events carry it."""
    return {"type": type(error).__name__, "message": str(error)}


def _has(recorded: Operation | None, event_type: str) -> bool:
    return recorded is not None and recorded.last(event_type) is not None


@dataclass
class _Undo:
    """One compensation under way: its operation, key and (once called) its report."""

    name: str
    op: int
    key: str
    recorded: Operation | None
    report: ToolCallReport | None = None


@dataclass(frozen=True)
class UndoOutcome:
    """How the compensations went: the steps undone (in order) and those abandoned."""

    compensated: list[str]
    abandoned: list[str]


class Compensator:
    """Undoes a saga's completed steps under its declared order and failure policy."""

    def __init__(
        self,
        ctx: WorkflowContext,
        plan: SagaPlan,
        tools: Mapping[str, Tool],
        saga_id: str,
    ) -> None:
        self._ctx = ctx
        self._plan = plan
        self._tools = tools
        self._saga_id = saga_id
        self._compensated: list[str] = []
        self._abandoned: list[str] = []

    def _start(self, name: str) -> _Undo:
        ctx = self._ctx
        op, recorded = lowlevel.claim(ctx, "compensation", name)
        key = f"{ctx.run_id}:{op}"
        if recorded is None:
            data = {"op": op, "name": name, "saga_id": self._saga_id, "idempotency_key": key}
            lowlevel.record_later(ctx, "CompensationStarted", data)
        return _Undo(name, op, key, recorded)

    async def _call(self, undo: _Undo, result: Any) -> None:
        from ..tools import reliable_call

        undo.report = await reliable_call(
            self._ctx,
            self._tools[undo.name],
            {"result": result, "key": undo.key},
            step=f"compensate/{undo.name}",
            tags={"saga": self._saga_id, "compensation_of": undo.name},
            defer_wait=True,
        )

    def _event(self, undo: _Undo, **extra: Any) -> dict[str, Any]:
        return {"op": undo.op, "name": undo.name, "saga_id": self._saga_id, **extra}

    async def _settle(self, undo: _Undo) -> bool:
        """Journal how the call went; True if it is done, False if it waits for a person."""
        report = undo.report
        assert report is not None
        if report.outcome == "ok":
            self._done(undo)
            return True
        if not _has(undo.recorded, "CompensationFailed"):
            await lowlevel.record(
                self._ctx,
                "CompensationFailed",
                self._event(
                    undo,
                    dead_letter_id=report.dead_letter_id,
                    attempts=report.attempts,
                    error=report.error,
                ),
            )
        return False

    def _done(self, undo: _Undo, **extra: Any) -> None:
        if not _has(undo.recorded, "CompensationCompleted"):
            lowlevel.record_later(self._ctx, "CompensationCompleted", self._event(undo, **extra))
        self._compensated.append(undo.name)

    async def _wait(self, undo: _Undo) -> None:
        """Wait for a person to act on the failed compensation's dead-letter entry."""
        from ..tools import await_dead_letter

        assert undo.report is not None
        final = await await_dead_letter(self._ctx, undo.report)
        if final.outcome == "resolved":
            self._done(undo, resolved_by=final.resolved_by, dead_letter_id=final.dead_letter_id)
            return
        if not _has(undo.recorded, "CompensationAbandoned"):
            await lowlevel.record(
                self._ctx,
                "CompensationAbandoned",
                self._event(
                    undo,
                    dead_letter_id=final.dead_letter_id,
                    by=final.resolved_by,
                    reason=getattr(final.value, "message", None),
                ),
            )
        self._abandoned.append(undo.name)

    async def run(self, names: Sequence[str], results: Mapping[str, Any]) -> UndoOutcome:
        """Compensate `names` (already in the order to undo them)."""
        if self._plan.compensation_order == "parallel":
            undos = await self._parallel(names, results)
        else:
            undos = []
            for name in names:
                undo = self._start(name)
                await self._call(undo, results.get(name))
                undos.append(undo)
                if await self._settle(undo):
                    continue
                if self._plan.on_compensation_failure == "stop":
                    await self._wait(undo)
                    if self._abandoned:
                        break  # stop: what is left stays as it is, visibly
        # `continue` (and parallel compensation, whose retries ran one after another):
        # now wait for every compensation that failed, in order.
        for undo in undos:
            if undo.name not in self._compensated and undo.name not in self._abandoned:
                await self._wait(undo)
        return UndoOutcome(list(self._compensated), list(self._abandoned))

    async def _parallel(self, names: Sequence[str], results: Mapping[str, Any]) -> list[_Undo]:
        """Every first attempt at once in one step; failures retried one by one."""
        undos = [self._start(name) for name in names]
        calls = {u.name: (self._tools[u.name], results.get(u.name), u.key) for u in undos}
        first = await lowlevel.step(
            self._ctx,
            "compensate/parallel",
            _all_at_once,
            calls,
            tags={"saga": self._saga_id, "compensation_of": list(names)},
        )
        by_name = {u.name: u for u in undos}
        for name in first["completed"]:
            self._done(by_name[name])
        for undo in undos:
            if undo.name in first["completed"]:
                continue
            await self._call(undo, results.get(undo.name))
            await self._settle(undo)
        return undos


async def _all_at_once(calls: Mapping[str, tuple[Tool, Any, str]]) -> dict[str, Any]:
    """Run every compensation once, concurrently; report which completed, in order."""
    completed: list[str] = []
    failed: dict[str, str] = {}

    async def one(name: str, undo: Tool, result: Any, key: str) -> None:
        try:
            await undo.invoke({"result": result, "key": key})
        except Exception as exc:  # retried one by one (journaled) after this step
            failed[name] = f"{type(exc).__name__}: {exc}"
        else:
            completed.append(name)

    async with asyncio.TaskGroup() as group:
        for name, (undo, result, key) in calls.items():
            group.create_task(one(name, undo, result, key))
    return {"completed": completed, "failed": failed}
