"""The cell: one actor's place in the tree, and the task that runs each incarnation.

A cell outlives incarnations. It holds what must survive a restart (the name and
path, the mailbox, the message-id memory, the `ActorRef`, the deadline) and runs one
task per incarnation: build the actor from its factory, `on_start`, then take
messages one at a time until it is interrupted or stops itself; then clean up
(cancel the current message, stop the children, `on_stop`) and tell the supervisor
how it ended.

Interrupts are how anyone else ends an incarnation: a reason is recorded and the task
is cancelled once. The task tells its own cancellation from a foreign one by that
record (and `Task.uncancel`), so a stop, a restart, a deadline or an escalation each
end the incarnation with the right outcome, while a cancellation from outside (the
system's host task being cancelled) still propagates after cleanup.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .._errors import (
    ActorSpawnError,
    ActorStalledError,
    ActorStoppedError,
    MailboxFullError,
)
from ._actor import Actor
from ._deadline import CURRENT_DEADLINE, Deadline
from ._envelope import Envelope
from ._heartbeat import HeartbeatPolicy, Watchdog
from ._local import CURRENT_CELL
from ._mailbox import Mailbox, MailboxPolicy
from ._nursery import Nursery
from ._ref import ActorRef
from ._timers import CURRENT_TIMERS, TimerHandle

if TYPE_CHECKING:
    from ._supervisor import SupervisionPolicy, Supervisor
    from ._system import ActorSystem

logger = logging.getLogger("phalanx")

#: OTP restart types: `permanent` is always restarted (even after stopping itself),
#: `transient` only after a failure, `temporary` never.
Restart = Literal["permanent", "transient", "temporary"]

#: How an incarnation ended, as the supervisor sees it.
Outcome = Literal["normal", "crash", "restart", "final", "start_failed", "cancelled"]

#: Interrupt reasons that end the actor for good (also `ActorStoppedError.reason`).
FINAL = frozenset({"stopped", "deadline", "shutdown", "escalated", "failed"})


class Cell:
    """Runtime state of one actor across its incarnations (internal)."""

    __slots__ = (
        "_cancel_sent",
        "_deadline_handle",
        "_final_waiter",
        "_running",
        "actor",
        "children",
        "context",
        "current",
        "deadline",
        "error",
        "factory",
        "final",
        "final_reason",
        "heartbeat",
        "incarnation",
        "interrupt",
        "interrupt_error",
        "mailbox",
        "name",
        "outcome",
        "parent",
        "path",
        "progress",
        "ref",
        "restart",
        "started",
        "stop_after",
        "supervision",
        "system",
        "task",
        "watchdog",
    )

    def __init__(
        self,
        *,
        system: ActorSystem,
        parent: Supervisor,
        name: str,
        path: str,
        factory: Callable[[], Actor],
        restart: Restart,
        mailbox: MailboxPolicy,
        deadline: Deadline | None,
        heartbeat: HeartbeatPolicy | None,
        supervision: SupervisionPolicy,
    ) -> None:
        self.system = system
        self.parent = parent
        self.name = name
        self.path = path
        self.factory = factory
        self.restart = restart
        self.mailbox = Mailbox(mailbox)
        self.deadline = deadline
        self.heartbeat = heartbeat
        self.supervision = supervision
        self.ref = ActorRef(self)
        # Each incarnation runs in a fresh copy of the spawner's context, so a
        # restart does not inherit contextvars set by the incarnation that failed.
        self.context = contextvars.copy_context()
        # ...minus the spawning actor (each incarnation sets its own), so a dead
        # parent is not kept alive through its children's contexts.
        if CURRENT_CELL.get() is not None:
            self.context.run(CURRENT_CELL.set, None)
        self.watchdog = (
            None
            if heartbeat is None
            else Watchdog(
                heartbeat.timeout,
                system.timers,
                on_stall=self._stalled,
                on_recover=self._recovered,
            )
        )
        self.children: Supervisor | None = None
        self.incarnation = 0
        self.task: asyncio.Task[None] | None = None
        self.actor: Actor | None = None
        self.current: Envelope | None = None
        self.interrupt: str | None = None
        self.interrupt_error: BaseException | None = None
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.stop_after = False
        self.final = False
        self.final_reason = ""
        self.started: asyncio.Future[None] | None = None
        self.progress: Any = None
        self._final_waiter: asyncio.Future[None] | None = None
        self._deadline_handle: TimerHandle | None = None
        self._running = False
        self._cancel_sent = False

    # -- delivery (runs in the sender's task) ------------------------------------------

    def post(self, envelope: Envelope, fresh: bool) -> bool:
        """Deliver `envelope` now if possible.

        Returns:
            True if it was delivered (or was a duplicate, answered or dropped);
            False if the mailbox is full and the sender should wait for room.

        Raises:
            ActorStoppedError: The actor is stopping or stopped.
            MailboxFullError: Full, and the policy is `fail_fast`.
        """
        mailbox = self.mailbox
        if mailbox.closed:
            reason = self.final_reason or self.interrupt or "stopped"
            self.system.emit(
                "message_rejected",
                self,
                reason=f"actor {reason}",
                message_id=envelope.message_id,
            )
            raise ActorStoppedError(path=self.path, reason=reason)
        if mailbox.offer(envelope, fresh):
            return True
        if mailbox.fail_fast:
            self.system.emit(
                "message_rejected", self, reason="mailbox full", message_id=envelope.message_id
            )
            raise MailboxFullError(
                path=self.path, capacity=mailbox.capacity, message_id=envelope.message_id
            )
        return False

    # -- one incarnation (runs in the actor's own task) ----------------------------------

    def start_incarnation(self, nursery: Nursery) -> None:
        """Start the next incarnation as a task owned by `nursery` (the parent's)."""
        self.incarnation += 1
        self.interrupt = None
        self.interrupt_error = None
        self.outcome = None
        self.error = None
        self.stop_after = False
        self.current = None
        self._cancel_sent = False
        self._running = True
        if self.watchdog is not None:
            self.watchdog.reset()
        task = nursery.start(self._run(), name=f"actor {self.path}", context=self.context.copy())
        self.task = task
        task.add_done_callback(self._on_done)

    async def _run(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        CURRENT_CELL.set(self)
        # Set only what differs from the inherited context: every set allocates.
        if CURRENT_DEADLINE.get() is not self.deadline:
            CURRENT_DEADLINE.set(self.deadline)
        if CURRENT_TIMERS.get() is not self.system.timers:
            CURRENT_TIMERS.set(self.system.timers)
        actor: Actor | None = None
        swallowed = False
        try:
            try:
                actor = self._instantiate()
                await self._start(actor)
                await self._process(actor)
                self._ended_in_body(task)
            except asyncio.CancelledError:
                if not self._cancel_sent:
                    self.outcome = "cancelled"
                    raise
                self._cancel_sent = False
                self._take_interrupt()
                if task.uncancel() > 0:
                    raise  # cancelled from outside as well: propagate after cleanup
            except Exception as error:
                self._crashed(error)
        finally:
            self._running = False
            swallowed = await self._cleanup(actor)
        if swallowed:
            raise asyncio.CancelledError

    def _instantiate(self) -> Actor:
        actor = self.factory()
        if not isinstance(actor, Actor):
            raise ActorSpawnError(
                path=self.path,
                reason=f"its factory returned {type(actor).__name__}, not an Actor instance",
            )
        actor._cell = self
        self.actor = actor
        return actor

    async def _start(self, actor: Actor) -> None:
        if type(actor).on_start is not Actor.on_start:
            watchdog = self.watchdog
            if watchdog is not None:
                watchdog.begin()
            await actor.on_start()
            if watchdog is not None:
                watchdog.end()
        started = self.started
        if started is not None:
            self.started = None
            if not started.done():
                started.set_result(None)
        self.system.emit("started", self)

    async def _process(self, actor: Actor) -> None:
        # The hot loop: locals for everything, no allocation but the waiter future
        # when the mailbox runs dry, no task per message.
        mailbox = self.mailbox
        queue = mailbox.queue
        receive = actor.receive
        hooks = self.system.hooks
        watchdog = self.watchdog
        ref = self.ref
        while self.interrupt is None and not self.stop_after:
            if not queue:
                await mailbox.mail()
                continue
            envelope = mailbox.take()
            reply = envelope.reply
            if reply is not None and not envelope.wanted():
                # The asker gave up (timeout, cancellation) before this message was
                # taken: skip the work, and forget the id so a retry is accepted.
                mailbox.forget(envelope.message_id)
                continue
            self.current = envelope
            if watchdog is not None:
                watchdog.begin()
            if hooks is not None:
                await hooks.received(ref, envelope)
            try:
                result = await receive(envelope.message)
            except Exception as error:
                self.current = None
                envelope.finish(None, error)
                if hooks is not None:
                    await hooks.processed(ref, envelope, error)
                raise
            self.current = None
            if reply is not None:
                envelope.finish(result, None)
            if watchdog is not None:
                watchdog.end()
            if hooks is not None:
                await hooks.processed(ref, envelope, None)

    def _ended_in_body(self, task: asyncio.Task[None]) -> None:
        if self._cancel_sent:
            # Our cancellation was swallowed by user code; the loop saw the interrupt.
            self._cancel_sent = False
            task.uncancel()
        if self.interrupt is not None:
            self._take_interrupt()
        else:
            self.outcome = "normal"

    def _take_interrupt(self) -> None:
        reason = self.interrupt
        if reason == "restart":
            self.outcome = "restart"
        elif reason == "crash":
            assert self.interrupt_error is not None
            self._crashed(self.interrupt_error)
        else:
            self.outcome = "final"

    def _crashed(self, error: BaseException) -> None:
        self.error = error
        # If the first incarnation never started, the actor is not restarted (a failed
        # init, as in OTP) and the spawner gets the error, once the actor is finalized.
        self.outcome = "crash" if self.started is None else "start_failed"
        logger.info("actor %s failed: %r", self.path, error)
        self.system.emit("failed", self, error=error)

    async def _cleanup(self, actor: Actor | None) -> bool:
        swallowed = False
        current = self.current
        if current is not None:
            # Interrupted mid-message: it was not processed, so its id is forgotten
            # (a redelivery is accepted) and its askers are told why.
            self.current = None
            self.mailbox.forget(current.message_id)
            current.abandon(self._abandon_error())
        if self.watchdog is not None:
            self.watchdog.close()  # a stall of this incarnation ends with it, unrecovered
        children = self.children
        if children is not None:
            self.children = None
            reason = self.interrupt if self.interrupt in FINAL else "stopped"
            assert reason is not None
            swallowed = await children.aclose(reason)
        if actor is not None and type(actor).on_stop is not Actor.on_stop:
            try:
                await actor.on_stop()
            except asyncio.CancelledError:
                swallowed = True
            except Exception:
                logger.exception("on_stop of actor %s failed", self.path)
        self.actor = None
        return swallowed

    def _abandon_error(self) -> BaseException:
        if self.interrupt_error is not None:
            return self.interrupt_error
        reason = self.interrupt
        if reason in FINAL:
            assert reason is not None
            return ActorStoppedError(path=self.path, reason=reason)
        if reason == "restart":
            return ActorStoppedError(path=self.path, reason="restarting")
        return ActorStoppedError(path=self.path, reason="shutdown")

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self.task = None
        reason = self.interrupt
        if reason in FINAL:
            assert reason is not None
            self.finalize(reason)
            return
        outcome = self.outcome
        if outcome is None and reason == "crash" and self.interrupt_error is not None:
            # Interrupted before the task ever ran: count it as the failure it carries.
            self._crashed(self.interrupt_error)
            outcome = self.outcome
        if outcome == "restart" or (outcome is None and reason == "restart"):
            return  # the supervisor restarting us is waiting for this task
        if outcome is None or outcome == "cancelled" or outcome == "final":
            self.finalize("shutdown")
        elif outcome == "start_failed":
            self.finalize("failed")
        else:
            self.parent.child_exited(self, self.incarnation, outcome, self.error)

    # -- control (runs in any task, or in a timer callback) ------------------------------

    def interrupt_with(self, reason: str, error: BaseException | None = None) -> None:
        """End the current incarnation for `reason` (a FINAL one ends the actor).

        A final reason wins over a pending restart or crash, and the first final
        reason wins over later ones; the task is cancelled at most once.
        """
        if self.final:
            return
        current = self.interrupt
        if current in FINAL or (current is not None and reason not in FINAL):
            return
        self.interrupt = reason
        self.interrupt_error = error
        if reason in FINAL:
            self.mailbox.closed = True  # refuse new messages from now on
            if self.task is None:
                # Between incarnations (its supervisor has not restarted it yet).
                self.finalize(reason)
                return
        task = self.task
        if task is not None and self._running and not self._cancel_sent:
            self._cancel_sent = True
            task.cancel(msg=f"actor {self.path}: {reason}")

    def finalize(self, reason: str) -> None:
        """Mark the actor stopped for good: fail what waits on it, tell who watches."""
        if self.final:
            return
        self.final = True
        self.final_reason = reason
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None
        if self.watchdog is not None:
            self.watchdog.close()
        for envelope in self.mailbox.close():
            if envelope.reply is not None:
                envelope.abandon(ActorStoppedError(path=self.path, reason=reason))
        started = self.started
        if started is not None:
            self.started = None
            if not started.done():
                failed = self.error if reason == "failed" and self.error is not None else None
                started.set_exception(failed or ActorStoppedError(path=self.path, reason=reason))
        waiter = self._final_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.parent.forget(self)
        self.system.actor_finalized(self)

    def final_waiter(self) -> asyncio.Future[None]:
        """A future that completes when the actor has stopped for good."""
        waiter = self._final_waiter
        if waiter is None:
            waiter = self._final_waiter = self.system.loop.create_future()
            if self.final:
                waiter.set_result(None)
        return waiter

    def arm_deadline(self) -> None:
        """Stop the actor when its deadline passes."""
        if self.deadline is not None:
            self._deadline_handle = self.system.timers.call_at(
                self.deadline.at, self._deadline_passed
            )

    def _deadline_passed(self) -> None:
        self._deadline_handle = None
        if self.final:
            return
        self.system.emit("deadline_exceeded", self, reason="deadline passed")
        self.interrupt_with("deadline")

    def beat(self, progress: Any) -> None:
        """A heartbeat from the actor (see `Actor.heartbeat`)."""
        self.progress = progress
        if self.watchdog is not None:
            self.watchdog.beat()

    def _stalled(self, silent_for: float) -> None:
        heartbeat = self.heartbeat
        assert heartbeat is not None
        self.system.emit(
            "stalled",
            self,
            reason=f"no heartbeat for {silent_for:g}s (timeout {heartbeat.timeout:g}s)",
            progress=self.progress,
        )
        if heartbeat.on_stall == "restart":
            self.interrupt_with(
                "crash",
                ActorStalledError(path=self.path, silent_for=silent_for, timeout=heartbeat.timeout),
            )
        elif heartbeat.on_stall == "stop":
            self.interrupt_with("stopped")

    def _recovered(self) -> None:
        self.system.emit(
            "recovered", self, reason="heartbeat after a stall", progress=self.progress
        )

    # -- children ------------------------------------------------------------------------

    async def spawn_child(
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
        """Spawn a child supervised by this actor's current incarnation."""
        if self.final or not self._running or self.interrupt in FINAL:
            raise ActorSpawnError(
                path=f"{self.path}/{name or '?'}",
                reason=f"its parent {self.path} is stopping or stopped",
            )
        children = self.children
        if children is None:
            children = self.children = self.system.open_supervisor(self)
        return await children.spawn(
            factory,
            name=name,
            mailbox=mailbox,
            restart=restart,
            deadline=deadline,
            heartbeat=heartbeat,
            supervision=supervision,
        )
