"""Supervision as in OTP: restart strategies, restart intensity and escalation.

Every parent (the system's root, or an actor with children) has one `Supervisor`
with its own task, so a child's failure is handled even while the parent is busy in
a long `receive` (an orchestrator waiting on that very child, say). The supervisor
owns its children's tasks through a `Nursery` and handles their exits one at a time:

- `one_for_one`: restart only the failed child;
- `one_for_all`: stop every other child (in reverse start order), restart them all
  (in start order) — for children that only make sense together;
- `rest_for_one`: stop and restart the failed child and those started after it —
  for children that depend on the ones started before them.

A restart builds a fresh actor from the child's factory; its `ActorRef`, mailbox and
message-id memory stay, its own children do not (the new incarnation spawns its own).

Restart intensity bounds a crash loop: more than `max_restarts` restarts within
`within` seconds (on the system's clock) and the supervisor gives up, stops all its
children and escalates: the parent actor fails with `SupervisorEscalationError` (and
its own supervisor applies its strategy), or, at the root, `open_actor_system`
raises it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .._errors import (
    ActorConfigError,
    ActorNameTakenError,
    ActorSpawnError,
    SupervisorEscalationError,
)
from ._actor import Actor
from ._cell import FINAL, Cell, Outcome, Restart
from ._deadline import Deadline, current_deadline, earliest
from ._mailbox import MailboxPolicy
from ._nursery import Nursery, wait_through_cancellation

if TYPE_CHECKING:
    from ._heartbeat import HeartbeatPolicy
    from ._ref import ActorRef
    from ._system import ActorSystem

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]

_DEFAULT_MAILBOX = MailboxPolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisionPolicy:
    """How a parent treats its children when one of them fails.

    Args:
        strategy: `one_for_one`, `one_for_all` or `rest_for_one` (see the module).
        max_restarts: Restarts allowed within `within` seconds; one more and the
            supervisor gives up and escalates. 0 escalates the first failure.
        within: The sliding window for `max_restarts`, in seconds.

    Raises:
        ActorConfigError: An unknown strategy, negative restarts or a non-positive window.
    """

    strategy: Strategy = "one_for_one"
    max_restarts: int = 3
    within: float = 5.0

    def __post_init__(self) -> None:
        if self.strategy not in ("one_for_one", "one_for_all", "rest_for_one"):
            raise ActorConfigError(
                setting="SupervisionPolicy.strategy",
                value=self.strategy,
                reason="use 'one_for_one', 'one_for_all' or 'rest_for_one'",
            )
        if self.max_restarts < 0:
            raise ActorConfigError(
                setting="SupervisionPolicy.max_restarts",
                value=self.max_restarts,
                reason="use 0 to escalate the first failure, or a positive count",
            )
        if not self.within > 0:
            raise ActorConfigError(
                setting="SupervisionPolicy.within",
                value=self.within,
                reason="the restart window must be a positive number of seconds",
            )


_Notice = tuple[Cell, int, Outcome, BaseException | None]


class Supervisor:
    """Owns and supervises the children of one parent (internal)."""

    __slots__ = (
        "_closing",
        "_notices",
        "_restarts",
        "_task",
        "_wake",
        "children",
        "nursery",
        "owner",
        "path",
        "policy",
        "system",
    )

    def __init__(self, system: ActorSystem, owner: Cell | None, policy: SupervisionPolicy) -> None:
        self.system = system
        self.owner = owner
        self.policy = policy
        self.path = owner.path if owner is not None else "/"
        self.nursery = Nursery(self.path)
        #: Children by name, in start order (a restart keeps a child's place).
        self.children: dict[str, Cell] = {}
        self._notices: deque[_Notice] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._restarts: deque[float] = deque()
        self._closing = False
        self._task = self.nursery.start(self._supervise(), name=f"supervisor {self.path}")

    # -- spawning --------------------------------------------------------------------

    async def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None,
        mailbox: MailboxPolicy | None,
        restart: Restart,
        deadline: float | None,
        heartbeat: HeartbeatPolicy | None,
        supervision: SupervisionPolicy | None,
    ) -> ActorRef:
        """Start a child and wait until its `on_start` is done; see `ActorSystem.spawn`."""
        system = self.system
        if name is None:
            name = system.auto_name(factory)
        prefix = "" if self.owner is None else self.owner.path
        path = f"{prefix}/{name}"
        if not name or "/" in name:
            raise ActorConfigError(
                setting="name", value=name, reason="a name must be non-empty and contain no '/'"
            )
        if restart not in ("permanent", "transient", "temporary"):
            raise ActorConfigError(
                setting="restart",
                value=restart,
                reason="use 'permanent', 'transient' or 'temporary'",
            )
        if deadline is not None and not deadline > 0:
            raise ActorConfigError(
                setting="deadline",
                value=deadline,
                reason="a deadline is a positive number of seconds from now",
            )
        system.check_can_spawn(path)
        if self._closing or self.nursery.closed:
            raise ActorSpawnError(path=path, reason=f"its parent {self.path} is stopping")
        if name in self.children:
            raise ActorNameTakenError(path=path)
        clock = system.clock
        own = None if deadline is None else Deadline.after(deadline, clock)
        parent_deadline = None if self.owner is None else self.owner.deadline
        effective = earliest(earliest(own, parent_deadline), current_deadline())
        if effective is not None:
            effective = effective.on(clock)
        cell = Cell(
            system=system,
            parent=self,
            name=name,
            path=path,
            factory=factory,
            restart=restart,
            mailbox=mailbox or _DEFAULT_MAILBOX,
            deadline=effective,
            heartbeat=heartbeat,
            supervision=supervision or system.supervision,
        )
        self.children[name] = cell
        system.actor_spawned(cell)
        started: asyncio.Future[None] = system.loop.create_future()
        cell.started = started
        cell.start_incarnation(self.nursery)
        cell.arm_deadline()
        await started
        return cell.ref

    def forget(self, cell: Cell) -> None:
        """Drop a child that stopped for good (its name is free again)."""
        if self.children.get(cell.name) is cell:
            del self.children[cell.name]

    # -- supervising -------------------------------------------------------------------

    def child_exited(
        self, cell: Cell, incarnation: int, outcome: Outcome, error: BaseException | None
    ) -> None:
        """A child's incarnation ended by itself (stopped itself, or failed)."""
        if self._closing:
            return  # closing: `aclose` finalizes every child it finds
        self._notices.append((cell, incarnation, outcome, error))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _supervise(self) -> None:
        notices = self._notices
        loop = asyncio.get_running_loop()
        while not self._closing:
            if not notices:
                self._wake = loop.create_future()
                await self._wake
                continue
            await self._handle(*notices.popleft())

    async def _handle(
        self, cell: Cell, incarnation: int, outcome: Outcome, error: BaseException | None
    ) -> None:
        if cell.final or cell.incarnation != incarnation or cell.task is not None:
            return  # stale: restarted meanwhile with its siblings, or already gone
        if cell.interrupt in FINAL:
            cell.finalize(cell.interrupt or "stopped")
            return
        if cell.restart == "temporary" or (cell.restart == "transient" and outcome == "normal"):
            cell.finalize("failed" if outcome == "crash" else "stopped")
            return
        if self._over_intensity():
            await self._escalate(cell, error)
            return
        strategy = self.policy.strategy
        siblings = list(self.children.values())
        if strategy == "one_for_one":
            victims = [cell]
        elif strategy == "one_for_all":
            victims = siblings
        else:
            victims = siblings[siblings.index(cell) :]
        others = [victim for victim in victims if victim is not cell]
        for victim in reversed(others):
            victim.interrupt_with("restart")
        running = [victim.task for victim in others if victim.task is not None]
        if await wait_through_cancellation(running):
            raise asyncio.CancelledError  # closing: restart nothing more
        what = "failed" if outcome == "crash" else "stopped itself"
        reason = f"{strategy}: {cell.path} {what}"
        for victim in victims:
            if victim.final or victim.task is not None:
                continue
            if victim.interrupt in FINAL:
                victim.finalize(victim.interrupt or "stopped")
            elif victim is not cell and victim.restart == "temporary":
                victim.finalize("stopped")
            else:
                self.system.emit("restarted", victim, reason=reason)
                victim.start_incarnation(self.nursery)

    def _over_intensity(self) -> bool:
        now = self.system.clock.monotonic()
        recent = self._restarts
        while recent and recent[0] <= now - self.policy.within:
            recent.popleft()
        if len(recent) >= self.policy.max_restarts:
            return True
        recent.append(now)
        return False

    async def _escalate(self, cell: Cell, error: BaseException | None) -> None:
        self._closing = True
        escalation = SupervisorEscalationError(
            supervisor=self.path,
            child=cell.path,
            restarts=self.policy.max_restarts,
            within=self.policy.within,
            error_type=type(error).__name__ if error is not None else "normal exit",
            error_message=str(error) if error is not None else "it stopped itself",
        )
        self.system.emit_escalated(self.path, escalation)
        if self.owner is not None:
            self.owner.interrupt_with("crash", escalation)
        else:
            self.system.fail(escalation)
        if await self.stop_children("escalated"):
            raise asyncio.CancelledError

    # -- closing -----------------------------------------------------------------------

    async def stop_children(self, reason: str) -> bool:
        """Stop every child for good (interrupts in reverse start order), and wait.

        Returns:
            Whether the caller was cancelled while waiting (re-raise it).
        """
        cells = list(self.children.values())
        for cell in reversed(cells):
            cell.interrupt_with(reason)
        swallowed = await wait_through_cancellation(
            [cell.task for cell in cells if cell.task is not None]
        )
        for cell in cells:
            cell.finalize(reason)  # no-op for those already final
        return swallowed

    async def aclose(self, reason: str) -> bool:
        """Stop supervising, stop every child, and wait for every owned task.

        Returns:
            Whether the caller was cancelled while waiting (re-raise it).
        """
        self._closing = True
        task = self._task
        if not task.done():
            task.cancel()
        swallowed = await wait_through_cancellation([task])
        swallowed |= await self.stop_children(reason)
        swallowed |= await self.nursery.aclose()
        return swallowed
