"""Fencing at the receiver: an agent refuses instructions from a runner that was taken over.

The store fences a run's own stream by its lease epoch, so an orchestrator that was
paused (a GC pause, a suspended VM, SIGSTOP) and then taken over cannot write its
journal when it wakes. But an orchestrator also *acts* on other runs: its instructions
land in their inboxes, which nobody leases, and a paused runner that wakes in the
middle of a step finishes that step, effects included, before its next write is
refused. The store cannot refuse those. The fix is the fencing token checked where
the effect happens: every instruction carries its sender's lease epoch (`lowlevel.epoch(ctx)`),
and the receiving agent remembers the highest epoch it has seen per orchestration and
refuses a lower one with an `InstructionRejected` event, acting on nothing it says.

Senders: `send_instruction` is a journaled operation (journal first, then deliver, so
a stale runner cannot send what its journal does not hold); `deliver_instruction` is
the plain delivery a step or tool makes, the case receiver fencing exists for. The
receiver's memory is its journal: each verdict is an operation of the agent's run, so
after the agent's own crash replay rebuilds the same highest epochs and the same set
of instruction ids already taken (delivered at least once, taken once).

Fencing tokens have one inherent limit: a receiver can refuse a stale epoch only once
it has heard of a newer one. `announce_epoch` narrows that window at a takeover:
called at the top of the orchestrator's workflow, it runs again in every runner that
executes the run (a replay starts from the top), so the runner that takes over tells
its agents its epoch before it replays or sends anything, and whatever the old runner
delivers after that is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..durable import WorkflowContext, lowlevel

#: The signal name instructions travel under unless told otherwise.
DEFAULT_CHANNEL = "instruction"

Verdict = Literal["accepted", "rejected", "duplicate"]

_VERDICT_EVENTS: dict[str, Verdict] = {
    "InstructionAccepted": "accepted",
    "InstructionRejected": "rejected",
    "InstructionDuplicate": "duplicate",
}


@dataclass(frozen=True)
class Instruction:
    """An instruction an agent accepted: who sent it, under which epoch, and what it says.

    `id` is the same on every delivery of one send (it names the sender's operation),
    which is how the receiver takes a redelivered instruction once.
    """

    id: str
    orchestration: str
    epoch: int
    sender: str
    payload: Any

    def to_json(self) -> dict[str, Any]:
        """JSON form (what travels in the inbox)."""
        return {
            "id": self.id,
            "orchestration": self.orchestration,
            "epoch": self.epoch,
            "sender": self.sender,
            "payload": self.payload,
        }


async def send_instruction(
    ctx: WorkflowContext,
    to: str,
    payload: Any,
    *,
    channel: str = DEFAULT_CHANNEL,
    orchestration: str | None = None,
) -> str:
    """Send `payload` to run `to` as a journaled operation, stamped with this run's epoch.

    Journal first, inbox second (as the peers' messages do): `InstructionSent` records
    the instruction under the sender's lease, then it is delivered, then marked
    `InstructionDelivered` with the sender's next write. So an instruction reaches an
    agent only after its sender's journal accepted it, and a runner that was taken over
    cannot send anything its journal does not hold. A crash before the marker makes the
    replayed send deliver the journaled instruction again, same id, stamped with the
    epoch of the runner that now vouches for it; the receiver takes it once. A send
    whose delivery was marked delivers nothing on replay. Returns the instruction id.

    Args:
        ctx: The sending (orchestrator's) workflow context.
        to: The receiving agent's run id.
        payload: Any JSON value: what to do.
        channel: The signal name the receiver listens on.
        orchestration: Whose epochs these are; the sending run by default. Runs that
            take turns driving the same agents may share one name.
    """
    op, recorded = lowlevel.claim(ctx, "instruction", channel)
    if recorded is not None:
        sent = recorded.events[0].data
        if recorded.last("InstructionDelivered") is None:
            await _deliver(ctx, str(sent["to"]), channel, _restamp(ctx, sent))
            lowlevel.record_later(ctx, "InstructionDelivered", {"op": op, "name": channel})
        return str(sent["id"])
    instruction = Instruction(
        id=f"{ctx.run_id}:{op}",
        orchestration=orchestration or ctx.run_id,
        epoch=lowlevel.epoch(ctx),
        sender=ctx.run_id,
        payload=payload,
    )
    await lowlevel.record(
        ctx, "InstructionSent", {"op": op, "name": channel, "to": to, **instruction.to_json()}
    )
    await _deliver(ctx, to, channel, instruction.to_json())
    # Its loss is harmless (the send is repeated, the copy dropped by id): no write of its own.
    lowlevel.record_later(ctx, "InstructionDelivered", {"op": op, "name": channel})
    return instruction.id


async def deliver_instruction(
    ctx: WorkflowContext,
    to: str,
    payload: Any,
    *,
    instruction_id: str | None = None,
    channel: str = DEFAULT_CHANNEL,
    orchestration: str | None = None,
) -> str:
    """Deliver `payload` to run `to` now, stamped with this runner's epoch; not journaled.

    For instructions given from inside a step, like any other call a step makes to the
    outside: the step is what the journal records. This is where receiver-side fencing
    earns its keep. A runner paused in the middle of a step (between its
    `StepStarted` and `StepCompleted`) and taken over meanwhile still finishes the step
    when it wakes, and whatever the step delivers then goes out before the runner's
    next write is refused: stamped with the old epoch, it is refused by the agent.

    Args:
        ctx: The sending workflow's context.
        to: The receiving agent's run id.
        payload: Any JSON value.
        instruction_id: The id the receiver deduplicates by; by default the running
            step's idempotency key, the same on every attempt and after a takeover.
        channel: The signal name the receiver listens on.
        orchestration: Whose epochs these are; the sending run by default.

    Raises:
        UserError: no `instruction_id` given outside a running step.
    """
    instruction = Instruction(
        id=instruction_id or ctx.idempotency_key,
        orchestration=orchestration or ctx.run_id,
        epoch=lowlevel.epoch(ctx),
        sender=ctx.run_id,
        payload=payload,
    )
    await _deliver(ctx, to, channel, instruction.to_json())
    return instruction.id


def _restamp(ctx: WorkflowContext, sent: Mapping[str, Any]) -> dict[str, Any]:
    """A journaled instruction, stamped with the epoch of the runner delivering it now."""
    keys = ("id", "orchestration", "sender", "payload")
    return {**{k: sent.get(k) for k in keys}, "epoch": lowlevel.epoch(ctx)}


async def announce_epoch(
    ctx: WorkflowContext,
    agents: Iterable[str],
    *,
    channel: str = DEFAULT_CHANNEL,
    orchestration: str | None = None,
) -> None:
    """Tell `agents` this runner's epoch, so they refuse any older runner from now on.

    Call it at the top of an orchestrator's workflow. It is deliberately not an
    operation of the run: it is not journaled and it runs again in every runner that
    executes the run, which is the point (each takeover announces its new epoch before
    replaying). The receiver journals the announcement as an accepted instruction of
    kind `announcement` and does not hand it to the agent's code.
    """
    orchestration = orchestration or ctx.run_id
    for agent in agents:
        message = {
            "id": f"{ctx.run_id}@{lowlevel.epoch(ctx)}",
            "orchestration": orchestration,
            "epoch": lowlevel.epoch(ctx),
            "sender": ctx.run_id,
            "payload": None,
            "announcement": True,
        }
        await _deliver(ctx, agent, channel, message)


async def _deliver(ctx: WorkflowContext, to: str, channel: str, message: dict[str, Any]) -> None:
    # A signal, so the receiver waits for it with `wait_for_signal`: durably, with its
    # status `waiting` meanwhile, each signal consumed once and replayed identically.
    await lowlevel.post(ctx, to, "SignalSent", {"name": channel, "data": message})


class FencedInbox:
    """An agent's inbox of instructions that refuses runners that were taken over.

    Example::

        @phalanx.workflow
        async def worker(ctx):
            inbox = FencedInbox(ctx)
            while True:
                instruction = await inbox.receive()
                if instruction.payload == "stop":
                    return
                await ctx.step("work", work, instruction.payload)

    Each `receive` waits for the next instruction on the channel and journals a verdict
    for it: `InstructionAccepted` (returned to the caller), `InstructionRejected` (its
    epoch is lower than the highest seen for its orchestration: a runner that was taken
    over; or it is malformed) or `InstructionDuplicate` (an id already taken: a
    redelivery). Only accepted ones are returned. Create one inbox per channel, at the
    same point of the workflow on every execution, so replay rebuilds its memory.
    """

    def __init__(self, ctx: WorkflowContext, *, channel: str = DEFAULT_CHANNEL) -> None:
        self._ctx = ctx
        self._channel = channel
        self._highest: dict[str, int] = {}
        self._taken: set[str] = set()

    def highest_epoch(self, orchestration: str) -> int | None:
        """The highest epoch accepted from `orchestration` so far (None if none)."""
        return self._highest.get(orchestration)

    async def receive(self, *, timeout: float | None = None) -> Instruction:
        """Wait for the next instruction this agent should act on.

        Refused and duplicate instructions are journaled and skipped; the wait goes on.

        Raises:
            SignalTimeoutError: nothing acceptable arrived within `timeout` seconds
                (the wait in progress when it ran out is journaled as timed out).
        """
        clock = self._ctx.clock
        # Live waits only: a replayed wait answers from the journal and ignores it.
        deadline = None if timeout is None else clock.now() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - clock.now())
            data = await self._ctx.wait_for_signal(self._channel, timeout=remaining)
            verdict, instruction = await self._judge(data)
            if verdict == "accepted" and instruction is not None:
                return instruction

    async def _judge(self, data: Any) -> tuple[Verdict, Instruction | None]:
        op, recorded = lowlevel.claim(self._ctx, "fence", self._channel)
        instruction = _parse(data)
        announcement = isinstance(data, dict) and bool(data.get("announcement"))
        if recorded is not None:
            verdict = _VERDICT_EVENTS[recorded.events[0].type]
        else:
            verdict, event = self._verdict(op, instruction, announcement, data)
            await lowlevel.record(self._ctx, event[0], event[1])
        if instruction is not None and verdict != "rejected":
            # A duplicate at a higher epoch still proves that epoch exists.
            previous = self._highest.get(instruction.orchestration, instruction.epoch)
            self._highest[instruction.orchestration] = max(previous, instruction.epoch)
            self._taken.add(instruction.id)
        if announcement or verdict != "accepted":
            return verdict, None
        return verdict, instruction

    def _verdict(
        self, op: int, instruction: Instruction | None, announcement: bool, data: Any
    ) -> tuple[Verdict, tuple[str, dict[str, Any]]]:
        base: dict[str, Any] = {"op": op, "name": self._channel}
        if instruction is None:
            reason = (
                "malformed: an instruction needs a string id and orchestration and an "
                f"integer epoch, got {str(data)[:200]}"
            )
            return "rejected", ("InstructionRejected", {**base, "reason": reason})
        base.update(
            id=instruction.id,
            orchestration=instruction.orchestration,
            epoch=instruction.epoch,
            sender=instruction.sender,
            kind="announcement" if announcement else "instruction",
        )
        highest = self._highest.get(instruction.orchestration)
        if highest is not None and instruction.epoch < highest:
            reason = (
                f"epoch {instruction.epoch} is older than {highest}, the highest seen for "
                f"{instruction.orchestration!r}: its sender was taken over"
            )
            return "rejected", (
                "InstructionRejected",
                {**base, "highest": highest, "reason": reason},
            )
        if instruction.id in self._taken:
            return "duplicate", ("InstructionDuplicate", base)
        return "accepted", ("InstructionAccepted", {**base, "highest": highest})


def _parse(data: Any) -> Instruction | None:
    """The instruction a signal carries, or None if it is not one."""
    if not isinstance(data, dict):
        return None
    epoch = data.get("epoch")
    ids = (data.get("id"), data.get("orchestration"))
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return None
    if not all(isinstance(v, str) and v for v in ids):
        return None
    return Instruction(
        id=str(data["id"]),
        orchestration=str(data["orchestration"]),
        epoch=epoch,
        sender=str(data.get("sender", "")),
        payload=data.get("payload"),
    )
