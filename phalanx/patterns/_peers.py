"""Peers: agents that message each other directly, with explicit termination detection.

`converse` runs each peer as a child run of the calling (coordinator) run, sends the
kickoff messages and then only watches: peers talk to each other with `send` /
`receive` (see `_messaging`), and the coordinator learns, from the credit the peers
return, the moment no peer is busy and no message is in flight. It then tells every
peer to stop (their `receive` returns None, their workflows return) and reports each
peer's outcome. It never decides "done" from a timeout or from silence, so a message
still in flight, or a peer still thinking, keeps the conversation alive.

Everything the coordinator decides is journaled under one operation of its run
(`ConversationStarted`, `ConversationStopping` with the reason, `ConversationEnded`
with every peer's outcome), so a resumed coordinator resumes its peers, finds the
credit already returned in its inbox (an immutable stream, re-read from the start)
and carries on without re-deciding anything. A conversation that cannot go quiet ends
with a typed error instead: `RoundLimitError` (a chain of messages longer than
`max_rounds`), `PeerFailedError`, `ConversationTimeoutError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .._errors import (
    ConversationTimeoutError,
    PeerFailedError,
    RoundLimitError,
    UserError,
)
from ..durable import RunOutcome, RunStatus, WorkflowContext, lowlevel
from ..journal import Event
from ._messaging import envelope, peer_run_id

logger = logging.getLogger("phalanx")

#: The default bound on a chain of messages (the kickoff is round 1).
DEFAULT_MAX_ROUNDS = 32


@dataclass(frozen=True)
class Peer:
    """One peer of a conversation: a workflow looping on `receive`, with its inputs."""

    workflow: Callable[..., Awaitable[Any]]
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PeerOutcome:
    """How one peer's run ended: its status, and its result or error."""

    name: str
    status: RunStatus
    value: Any = None
    error: str | None = None
    run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (as journaled in `ConversationEnded`)."""
        return {
            "status": self.status,
            "value": self.value,
            "error": self.error,
            "run_id": self.run_id,
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> PeerOutcome:
        """Rebuild from `to_json`."""
        return cls(name, data["status"], data.get("value"), data.get("error"), data.get("run_id"))


@dataclass(frozen=True)
class ConversationResult:
    """A conversation that went quiet: every peer's outcome, and how much was said.

    `messages` counts the messages peers handled (kickoffs included); `rounds` is the
    longest chain of messages (the kickoff is round 1).
    """

    name: str
    conversation: str
    peers: dict[str, PeerOutcome]
    messages: int
    rounds: int

    @property
    def values(self) -> dict[str, Any]:
        """Each peer's return value, by peer name."""
        return {n: o.value for n, o in self.peers.items()}

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "conversation": self.conversation,
            "messages": self.messages,
            "rounds": self.rounds,
            "peers": {n: o.to_json() for n, o in self.peers.items()},
        }


@dataclass
class _Tally:
    """What the coordinator's inbox says about one conversation (deduplicated by id)."""

    conversation: str
    returned: Fraction = Fraction(0)
    messages: int = 0
    rounds: int = 0
    limit: dict[str, Any] | None = None
    seen: set[str] = field(default_factory=set)
    cursor: int = 0

    def update(self, inbox: Sequence[Event]) -> None:
        for event in inbox[self.cursor :]:
            data = event.data
            if event.type != "MessageSent" or data.get("conversation") != self.conversation:
                continue
            message_id = str(data.get("message_id"))
            if message_id in self.seen:
                continue  # a sender that died before marking it delivered sent it again
            self.seen.add(message_id)
            self.returned += Fraction(data.get("weight", "0"))
            if data.get("kind") == "credit":
                self.messages += 1
                self.rounds = max(self.rounds, int(data.get("round", 0)))
            elif data.get("kind") == "limit" and self.limit is None:
                self.limit = {"peer": data.get("sender"), "to": (data.get("body") or {}).get("to")}
        self.cursor = len(inbox)


def _outcome(name: str, outcome: RunOutcome) -> PeerOutcome:
    error = None
    if outcome.error is not None:
        kind = str(outcome.error.get("type", "Error")).rsplit(".", 1)[-1]
        error = f"{kind}: {outcome.error.get('message', '')}"
    return PeerOutcome(name, outcome.status, outcome.result, error, outcome.run_id)


async def converse(
    ctx: WorkflowContext,
    name: str,
    peers: Mapping[str, Peer],
    *,
    start: Mapping[str, Any],
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    deadline: float | None = None,
) -> ConversationResult:
    """Run a conversation between `peers` until it goes quiet; return every outcome.

    Example::

        @phalanx.workflow
        async def volley(ctx, other: str, limit: int) -> int:
            count = 0
            async for message in messages(ctx):
                count += 1
                if message.body < limit:
                    await send(ctx, other, message.body + 1)
            return count

        @phalanx.workflow
        async def match(ctx) -> dict:
            result = await converse(
                ctx,
                "ping-pong",
                {"ping": Peer(volley, {"other": "pong", "limit": 9}),
                 "pong": Peer(volley, {"other": "ping", "limit": 9})},
                start={"ping": 0},
            )
            return result.values  # {"ping": 5, "pong": 5}

    Args:
        ctx: The coordinator's workflow context.
        name: The conversation's name (unique within the run; it names the events).
        peers: Peer name to `Peer`; each runs as a child run `{run}.{op}.{name}`.
        start: The kickoff: peer name to the body of its first message (round 1).
        max_rounds: The longest chain of messages allowed (see `RoundLimitError`).
        deadline: Seconds from the first start (kept across a resume); the peers are
            child runs with that deadline too.

    Raises:
        RoundLimitError: a peer sent past `max_rounds`; every peer was stopped.
        PeerFailedError: a peer failed, was cancelled, or returned before the end.
        ConversationTimeoutError: not quiet by the deadline; the peers were cancelled.
        UserError: no kickoff, a kickoff to an unknown peer, or max_rounds < 1.
    """
    if not peers or not all(isinstance(p, str) and p for p in peers):
        raise UserError(f"conversation {name!r} needs peers, each with a non-empty name")
    if not start:
        raise UserError(f"conversation {name!r} needs at least one kickoff message (start=...)")
    unknown = sorted(set(start) - set(peers))
    if unknown:
        raise UserError(
            f"conversation {name!r}: kickoff to {', '.join(unknown)}, not among its peers "
            f"({', '.join(peers)})"
        )
    if max_rounds < 1:
        raise UserError(f"conversation {name!r}: max_rounds must be at least 1, not {max_rounds}")
    op, recorded = lowlevel.claim(ctx, "conversation", name)
    clock = ctx.clock
    if recorded is None:
        conversation = f"{ctx.run_id}.{op}"
        run_ids = {p: peer_run_id(conversation, p) for p in peers}
        first_start = clock.now()
        deadline_at = None if deadline is None else first_start + deadline
        if ctx.deadline_at is not None:
            deadline_at = (
                ctx.deadline_at if deadline_at is None else min(deadline_at, ctx.deadline_at)
            )
        share = Fraction(1, len(start))
        kickoffs = {
            p: envelope(
                kind="message",
                message_id=f"{conversation}:start:{p}",
                conversation=conversation,
                coordinator=ctx.run_id,
                peers=list(peers),
                sender=None,
                to=p,
                body=body,
                round=1,
                max_rounds=max_rounds,
                weight=share,
            )
            for p, body in start.items()
        }
        started: dict[str, Any] = {
            "op": op,
            "name": name,
            "conversation": conversation,
            "peers": run_ids,
            "kickoffs": kickoffs,
            "max_rounds": max_rounds,
            "deadline_at": deadline_at,
            "started_at": first_start,
        }
        await lowlevel.record(ctx, "ConversationStarted", started)
        events: list[Event] = []
    else:
        started = recorded.events[0].data
        events = recorded.events
        if set(started["peers"]) != set(peers):
            lowlevel.diverge(
                ctx, op, recorded.describe(), f"conversation {name!r} of {sorted(peers)}"
            )
    conversation = str(started["conversation"])
    run_ids = dict(started["peers"])
    deadline_at = started.get("deadline_at")
    ended = next((e for e in events if e.type == "ConversationEnded"), None)
    if ended is not None:
        return _conclude(name, conversation, started, ended.data)
    stopping = next((e.data for e in events if e.type == "ConversationStopping"), None)
    if not any(e.type == "ConversationKickedOff" for e in events):
        # Posted again after a crash before the marker: each peer drops a copy by its id.
        for p, kickoff in started["kickoffs"].items():
            await lowlevel.post(ctx, run_ids[p], "MessageSent", kickoff)
        lowlevel.record_later(ctx, "ConversationKickedOff", {"op": op, "name": name})

    async def run_peer(p: str) -> PeerOutcome:
        spec = peers[p]
        outcome = await lowlevel.run_child(
            ctx, run_ids[p], spec.workflow, dict(spec.inputs), deadline_at=deadline_at
        )
        return _outcome(p, outcome)

    async with asyncio.TaskGroup() as group:
        tasks = {p: group.create_task(run_peer(p)) for p in peers}
        for task in tasks.values():
            # A peer ending on its own must wake the watch below as a message does.
            task.add_done_callback(lambda _: lowlevel.wake(ctx))
        if stopping is None:
            stopping = await _watch(ctx, op, name, conversation, tasks, deadline_at)
        if stopping["reason"] == "timed_out":
            for p, task in tasks.items():
                if not task.done():
                    lowlevel.cancel_child(
                        ctx, run_ids[p], f"conversation {name!r} deadline exceeded"
                    )
        else:
            for p in peers:
                stop = envelope(
                    kind="stop",
                    message_id=f"{conversation}:stop:{p}",
                    conversation=conversation,
                    coordinator=ctx.run_id,
                    peers=list(peers),
                    sender=None,
                    to=p,
                    body={"reason": stopping["reason"]},
                    round=0,
                    max_rounds=int(started["max_rounds"]),
                    weight=Fraction(0),
                )
                await lowlevel.post(ctx, run_ids[p], "MessageSent", stop)
    outcomes = {p: tasks[p].result() for p in peers}
    end = {
        "op": op,
        "name": name,
        "reason": stopping["reason"],
        "messages": stopping["messages"],
        "rounds": stopping["rounds"],
        "peers": {p: o.to_json() for p, o in outcomes.items()},
        "cause": {k: v for k, v in stopping.items() if k not in ("op", "name")},
    }
    await lowlevel.record(ctx, "ConversationEnded", end)
    return _conclude(name, conversation, started, end)


async def _watch(
    ctx: WorkflowContext,
    op: int,
    name: str,
    conversation: str,
    tasks: Mapping[str, asyncio.Task[PeerOutcome]],
    deadline_at: float | None,
) -> dict[str, Any]:
    """Wait until the conversation must stop, journal why (`ConversationStopping`), return it."""
    tally = _Tally(conversation)
    clock = ctx.clock
    while True:
        tally.update(lowlevel.inbox(ctx))
        ended = {p: t.result() for p, t in tasks.items() if t.done()}
        cause: dict[str, Any] | None = None
        if tally.limit is not None:
            cause = {"reason": "round_limit", **tally.limit}
        elif not ended and tally.returned == 1:
            cause = {"reason": "quiescent"}
        elif deadline_at is not None and clock.now() >= deadline_at:
            cause = {"reason": "timed_out"}
        elif ended:
            first = next(iter(ended.values()))
            cause = {"reason": "peer_failed", "peer": first.name, **first.to_json()}
        if cause is not None:
            stopping = {
                "op": op,
                "name": name,
                **cause,
                "messages": tally.messages,
                "rounds": tally.rounds,
            }
            await lowlevel.record(ctx, "ConversationStopping", stopping)
            if cause["reason"] != "quiescent":
                # Live only: a replay finds the decision in the journal and never gets here.
                logger.warning(
                    "run %s: stopping conversation %r (%s) after %d messages",
                    ctx.run_id,
                    name,
                    cause["reason"],
                    tally.messages,
                )
            return stopping
        remaining = None if deadline_at is None else max(0.0, deadline_at - clock.now())
        await lowlevel.wait_inbox(ctx, remaining)


def _conclude(
    name: str, conversation: str, started: Mapping[str, Any], end: Mapping[str, Any]
) -> ConversationResult:
    """The result a journaled `ConversationEnded` stands for, or the error it records."""
    outcomes = {p: PeerOutcome.from_json(p, o) for p, o in end["peers"].items()}
    cause = end.get("cause", {})
    reason = end["reason"]
    if reason == "round_limit":
        raise RoundLimitError(
            conversation=name,
            max_rounds=int(started["max_rounds"]),
            peer=str(cause.get("peer")),
            to=str(cause.get("to")),
        )
    if reason == "timed_out":
        deadline_at = started.get("deadline_at")
        first = started.get("started_at")
        timeout = 0.0 if deadline_at is None or first is None else deadline_at - first
        raise ConversationTimeoutError(conversation=name, timeout=timeout)
    if reason == "peer_failed":
        peer = str(cause.get("peer"))
        outcome = outcomes[peer]  # every peer's outcome is journaled with the end
        error_type, _, message = (outcome.error or "").partition(": ")
        if outcome.status == "completed":
            error_type = "LeftEarly"
            message = (
                "it returned before receive() gave None; a peer must keep receiving until "
                "the conversation ends, or messages sent to it are never taken"
            )
        raise PeerFailedError(
            conversation=name,
            peer=peer,
            run_id=str(outcome.run_id or started["peers"].get(peer, "")),
            status=outcome.status,
            error_type=error_type or "Error",
            message=message,
        )
    return ConversationResult(
        name, conversation, outcomes, int(end["messages"]), int(end["rounds"])
    )
