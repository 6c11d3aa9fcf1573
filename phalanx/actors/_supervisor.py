"""A durable supervisor: OTP restart strategies and intensity applied to child runs.

`Supervisor(ctx, name, ...)` is a scope in a workflow. Each child it spawns is a
durable actor at a stable address (`{run}.{op}.{name}`) whose incarnations are child
runs of the supervising run, `{address}#1`, `{address}#2`, ...: a restarted child is
a new run with a fresh journal, and its mailbox (keyed by the address) keeps every
message not yet taken. When an incarnation fails, the supervisor decides with the
pure rules of `_supervision` (which children restart; whether the restart intensity
is exceeded) and journals the decision (`ChildrenRestarted`, or `SupervisorEscalated`)
before acting on it. So a supervisor that is killed and resumed folds the decisions
it already made and makes only the ones still to make, on the same history: the same
incarnations, the same restart count, the same escalation.

Lifecycle: leaving the scope normally asks every child to stop (after the messages
already in its mailbox) and waits for them; leaving it with an error cancels them.
An escalation cancels the children and the scope's body, and the scope raises
`SupervisorEscalationError`. A child that returns, or is cancelled from outside,
stays stopped (OTP's `transient`): only failures restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .._errors import SupervisorEscalationError, UserError
from ..durable import RunOutcome, WorkflowContext, lowlevel
from ._deadline import current_deadline
from ._mailbox import Mailbox, incarnation_run_id, publish, stop
from ._supervision import Strategy, SupervisionPolicy, over_intensity, victims


@dataclass(frozen=True)
class Actor:
    """A durable actor's behaviour (a workflow looping over `mailbox(ctx)`) and mailbox.

    Example::

        worker = Actor(handle_jobs, mailbox=Mailbox(capacity=100, when_full="block"))
    """

    behaviour: Callable[..., Awaitable[Any]]
    mailbox: Mailbox = field(default_factory=Mailbox)


@dataclass
class _Child:
    name: str
    address: str
    actor: Actor
    inputs: dict[str, Any]
    incarnation: int
    #: The deadline of the scopes it was spawned in (Unix seconds), kept on restarts.
    deadline_at: float | None = None
    task: asyncio.Task[None] | None = None
    #: Returned or cancelled from outside: not restarted, not stopped again.
    ended: bool = False

    @property
    def run_id(self) -> str:
        return incarnation_run_id(self.address, self.incarnation)


_Notice = tuple[str, int, RunOutcome]


class Supervisor:
    """Supervises the durable actors spawned in its scope, as an OTP supervisor would.

    Example::

        @phalanx.workflow
        async def team(ctx) -> None:
            async with Supervisor(ctx, "team", strategy="one_for_one", max_restarts=3,
                                  within=60) as team:
                counter = await team.spawn("counter", Actor(count))
                await tell(ctx, counter, 5)

    Args:
        ctx: The supervising run's context.
        name: The supervisor's name (unique within the run).
        strategy: `one_for_one`, `one_for_all` or `rest_for_one`.
        max_restarts: Restarts allowed within `within` seconds before escalating.
        within: The sliding window of the intensity limit, in seconds.

    Raises:
        SupervisorEscalationError: (leaving the scope) the intensity limit was hit;
            every child was cancelled.
        ConfigError: (constructing) a policy out of range.
    """

    def __init__(
        self,
        ctx: WorkflowContext,
        name: str,
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        within: float = 60.0,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.policy = SupervisionPolicy(strategy=strategy, max_restarts=max_restarts, within=within)
        self._op = 0
        self._children: dict[str, _Child] = {}
        self._incarnations: dict[str, int] = {}
        self._restarts: list[float] = []
        self._escalated: dict[str, Any] | None = None
        #: Whether the escalation happened in this process (not found in the journal).
        self._escalated_live = False
        self._closing = False
        self._notices: asyncio.Queue[_Notice | None] = asyncio.Queue()
        self._group = asyncio.TaskGroup()
        self._body: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> Supervisor:
        ctx = self.ctx
        op, recorded = lowlevel.claim(ctx, "supervisor", self.name)
        self._op = op
        if recorded is None:
            await lowlevel.record(
                ctx,
                "SupervisorStarted",
                {
                    "op": op,
                    "name": self.name,
                    "strategy": self.policy.strategy,
                    "max_restarts": self.policy.max_restarts,
                    "within": self.policy.within,
                },
            )
        else:
            for event in recorded.events:  # the decisions made before a crash
                if event.type == "ChildrenRestarted":
                    self._incarnations.update(event.data["restart"])
                    self._restarts.append(float(event.data["at"]))
                elif event.type == "SupervisorEscalated":
                    self._escalated = event.data
        self._body = asyncio.current_task()
        await self._group.__aenter__()
        if self._escalated is not None:
            # Escalated before the crash: replay the body up to its first new
            # operation, and stop it there as it was stopped then.
            assert self._body is not None
            self._body.cancel("supervisor escalated")
        else:
            self._group.create_task(self._supervise())
        return self

    def address(self, name: str) -> str:
        """The address of child `name` (stable across its restarts)."""
        return f"{self.ctx.run_id}.{self._op}.{name}"

    async def spawn(self, name: str, actor: Actor, /, **inputs: Any) -> str:
        """Start child `name` running `actor` with `inputs`; return its address.

        Its first incarnation is the child run `{address}#1`. The mailbox policy is
        published before it starts, so senders are bounded from the start.

        Raises:
            UserError: a child of that name was already spawned here.
        """
        ctx = self.ctx
        if name in self._children or not name:
            raise UserError(f"supervisor {self.name!r} already has a child named {name!r}")
        op, recorded = lowlevel.claim(ctx, "spawn", name)
        address = self.address(name)
        if recorded is None:
            await lowlevel.record(
                ctx,
                "ChildSpawned",
                {"op": op, "name": name, "supervisor": self.name, "address": address},
            )
            await publish(lowlevel.store(ctx), address, 0, actor.mailbox)
        incarnation = int(self._incarnations.get(name, 1))
        child = _Child(name, address, actor, dict(inputs), incarnation, current_deadline())
        self._children[name] = child
        if self._escalated is None:
            if recorded is not None and incarnation > 1:
                # Resumed: the previous incarnation may have been left running by a
                # crash between the decision and the stop. Finish it, cancelled.
                previous = incarnation_run_id(address, incarnation - 1)
                self._group.create_task(self._finish(child, previous))
            child.task = self._group.create_task(self._run(child, incarnation))
        return address

    async def _run(self, child: _Child, incarnation: int) -> None:
        run_id = incarnation_run_id(child.address, incarnation)
        outcome = await lowlevel.run_child(
            self.ctx,
            run_id,
            child.actor.behaviour,
            dict(child.inputs),
            deadline_at=child.deadline_at,
        )
        self._notices.put_nowait((child.name, incarnation, outcome))

    async def _finish(self, child: _Child, run_id: str) -> None:
        if (await lowlevel.runs(self.ctx).history(run_id)).terminal:
            return
        lowlevel.cancel_child(
            self.ctx, run_id, f"supervisor {self.name!r} restarted {child.name!r}"
        )
        await lowlevel.run_child(self.ctx, run_id, child.actor.behaviour, dict(child.inputs))

    async def _supervise(self) -> None:
        while (notice := await self._notices.get()) is not None:
            name, incarnation, outcome = notice
            child = self._children[name]
            if self._closing or incarnation != child.incarnation:
                continue  # stopped by us, or an incarnation already replaced
            if outcome.status != "failed":
                child.ended = True
                continue
            await self._decide(child, outcome)

    async def _decide(self, child: _Child, outcome: RunOutcome) -> None:
        ctx = self.ctx
        error = outcome.error or {}
        error_type = str(error.get("type", "Error")).rsplit(".", 1)[-1]
        error_message = str(error.get("message", ""))
        now = ctx.clock.now()
        if over_intensity(self._restarts, now, self.policy):
            escalated = {
                "op": self._op,
                "name": self.name,
                "child": child.name,
                "run_id": child.run_id,
                "error_type": error_type,
                "error_message": error_message,
                "at": now,
            }
            await lowlevel.record(ctx, "SupervisorEscalated", escalated)
            self._escalated = escalated
            self._escalated_live = True
            await self._cancel_all(f"supervisor {self.name!r} escalated")
            raise self._escalation()
        live = [n for n, c in self._children.items() if not c.ended or n == child.name]
        plan = {
            n: self._children[n].incarnation + 1
            for n in victims(self.policy.strategy, live, child.name)
        }
        await lowlevel.record(
            ctx,
            "ChildrenRestarted",
            {
                "op": self._op,
                "name": self.name,
                "failed": child.name,
                "run_id": child.run_id,
                "error_type": error_type,
                "error_message": error_message,
                "strategy": self.policy.strategy,
                "restart": plan,
                "at": now,
            },
        )
        self._restarts.append(now)
        stopping = []
        for name in reversed(plan):  # siblings stop in reverse start order, as in OTP
            victim = self._children[name]
            if name != child.name and victim.task is not None and not victim.task.done():
                lowlevel.cancel_child(
                    ctx, victim.run_id, f"{self.policy.strategy}: {child.name} failed"
                )
                stopping.append(victim.task)
            victim.incarnation = plan[name]  # its old incarnation's notice is now stale
        if stopping:
            await asyncio.wait(stopping)
        for name, incarnation in plan.items():
            victim = self._children[name]
            victim.ended = False
            victim.task = self._group.create_task(self._run(victim, incarnation))

    async def _cancel_all(self, reason: str) -> None:
        running = []
        for child in reversed(self._children.values()):
            if child.task is not None and not child.task.done():
                lowlevel.cancel_child(self.ctx, child.run_id, reason)
                running.append(child.task)
        if running:
            await asyncio.wait(running)

    def _escalation(self) -> SupervisorEscalationError:
        data = self._escalated or {}
        return SupervisorEscalationError(
            supervisor=self.name,
            child=str(data.get("child")),
            restarts=self.policy.max_restarts,
            within=self.policy.within,
            error_type=str(data.get("error_type")),
            error_message=str(data.get("error_message")),
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        replayed = self._escalated is not None and not self._escalated_live
        try:
            if exc is None and self._escalated is None:
                # The body is done: each child drains its mailbox and returns.
                for child in self._children.values():
                    if not child.ended:
                        await stop(self.ctx, child.address, f"supervisor {self.name!r} closing")
                pending = [c.task for c in self._children.values() if c.task is not None]
                if pending:
                    await asyncio.wait(pending)
            elif self._escalated is None:
                await self._cancel_all(f"supervisor {self.name!r} closing: {exc_type}")
        except asyncio.CancelledError as cancelled:
            exc = cancelled  # an escalation (or a cancel) while the children finished
        self._closing = True
        self._notices.put_nowait(None)
        # Only a cancellation goes to the task group: given the body's own error it
        # would wrap it in an ExceptionGroup, and the caller must see it as raised.
        forward = exc if isinstance(exc, asyncio.CancelledError) else None
        try:
            await self._group.__aexit__(type(forward) if forward else None, forward, None)
        except BaseExceptionGroup as group:
            escalation = group.subgroup(SupervisorEscalationError)
            if escalation is not None:
                raise escalation.exceptions[0] from None
            raise
        except asyncio.CancelledError:
            if not replayed:
                raise
        if self._escalated is not None:
            if replayed and self._body is not None:
                self._body.uncancel()  # our own cancel, from __aenter__
            raise self._escalation() from None
        return None
