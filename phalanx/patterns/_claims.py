"""Claims: a task is claimed in the store before work on it starts, so no two peers do it.

A `TaskBoard` is one stream, `claims:{board}`, that every claimant appends to with
compare-and-set (`expected_version`): read the board, decide, append at the version
read; if another claimant appended first the store refuses, and the claimant reads
again and decides again. So the board's history is one linear order of claims, and
two runs can never both be granted the same free task.

A claim belongs to a *run*, not to a process, and lives as long as the run's lease:
a claim whose holder's run is not live (its runner died and the lease expired, or
the run ended without finishing the task) is released, and the next claimant takes
it over. Tying claims to the run lease, which every runner already renews, costs no
extra renewal traffic, and a holder that is resumed in time keeps its claims (the
same run id) and does not redo anything. Rejected: a lease per task (a renewal loop
per claimed task, and a holder resumed under a new owner would lose all its claims).

The one race this leaves, a holder resumed just as someone else takes its claim over,
is closed by the resumed holder re-affirming the claim with compare-and-set before it
starts the work: of the two appends, one loses and that run backs off
(`ClaimLostError`). Completion (`TaskDone`) is compare-and-set too, so a task is
recorded done once, by its holder. The work's external effect is a step: if a holder
dies in the middle of it and its claim is taken over, the new holder does it again,
under its own idempotency key; an effect that must not happen twice should
deduplicate on the task id.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import ClaimLostError, ConcurrencyError
from .._executor import run_sync
from ..durable import WorkflowContext, lowlevel
from ..journal import Event, EventStore, Metadata, NewEvent

ClaimStatus = Literal["done", "refused", "lost"]


@dataclass(frozen=True)
class TaskState:
    """A task as the board records it: who holds it, whether it is done."""

    task: str
    holder: str | None
    done: bool = False
    result: Any = None


@dataclass(frozen=True)
class Claim:
    """The answer to a claim: granted to this run, or refused (held or done by `holder`).

    `replayed` says the answer came from the journal: the run was resumed, and may have
    been down long enough for the claim to be taken over, so it is re-affirmed before
    any work.
    """

    board: str
    task: str
    granted: bool
    holder: str | None
    reason: str = ""
    replayed: bool = False


@dataclass(frozen=True)
class ClaimResult:
    """What `TaskBoard.run` did with a task.

    - `done`: this run claimed it and did it; `value` is the work's result.
    - `refused`: another run holds it (and is live) or did it already: `holder`.
    - `lost`: this run held it but was down long enough for `holder` to take it over;
      it did not do the work (or its result was not recorded).
    """

    task: str
    status: ClaimStatus
    value: Any = None
    holder: str | None = None


def fold(events: Sequence[Event]) -> dict[str, TaskState]:
    """The board's tasks after `events` (its stream, in order)."""
    tasks: dict[str, TaskState] = {}
    for event in events:
        task = str(event.data.get("task"))
        holder = event.data.get("holder")
        if event.type == "TaskClaimed":
            tasks[task] = TaskState(task, holder)
        elif event.type == "TaskDone":
            tasks[task] = TaskState(task, holder, True, event.data.get("result"))
        elif event.type == "TaskReleased":
            tasks[task] = TaskState(task, None)
    return tasks


class TaskBoard:
    """Tasks that runs claim before working on them; no two runs work on one task.

    Example (each peer of a conversation tries every task; each is done once)::

        board = TaskBoard("chapters")

        @phalanx.workflow
        async def writer(ctx, chapters: list[str]) -> list[str]:
            done = []
            for chapter in chapters:
                result = await board.run(ctx, chapter, write_chapter, chapter)
                if result.status == "done":
                    done.append(chapter)
            return done

    Every operation (`claim`, `complete`, `release`, the work step of `run`) is
    journaled in the calling run, so a resumed run replays its claims' answers instead
    of asking again.
    """

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("a task board needs a name")
        self.name = name

    @property
    def stream(self) -> str:
        """The stream holding the board: every claim, completion and release."""
        return f"claims:{self.name}"

    async def tasks(self, store: EventStore) -> dict[str, TaskState]:
        """Every task the board has seen, as it stands now (for inspection)."""
        return fold(await store.read_stream(self.stream))

    async def _read(self, ctx: WorkflowContext) -> tuple[dict[str, TaskState], int]:
        events = await lowlevel.store(ctx).read_stream(self.stream)
        return fold(events), (events[-1].seq if events else 0)

    async def _append(
        self, ctx: WorkflowContext, event_type: str, data: dict[str, Any], version: int
    ) -> bool:
        """Append at `version`; False if another claimant appended first (read again)."""
        event = NewEvent(event_type, data, Metadata(run_id=ctx.run_id))
        try:
            await lowlevel.store(ctx).append(self.stream, [event], expected_version=version)
        except ConcurrencyError:
            return False
        return True

    async def claim(self, ctx: WorkflowContext, task: str) -> Claim:
        """Claim `task` for this run: granted if free, or held by a run that is not live."""
        op, recorded = lowlevel.claim(ctx, "claim", f"claim:{self.name}:{task}")
        if recorded is not None:
            data = recorded.events[0].data
            granted = recorded.events[0].type == "ClaimGranted"
            return Claim(self.name, task, granted, data.get("holder"), data["reason"], True)
        me = ctx.run_id
        while True:
            tasks, version = await self._read(ctx)
            state = tasks.get(task)
            previous = None if state is None else state.holder
            if state is not None and state.done:
                granted, holder, reason = False, state.holder, "done"
            elif state is not None and state.holder == me:
                # Ours already: the run died between the board's append and its journal's.
                granted, holder, reason = True, me, "claimed"
            elif previous is not None and await lowlevel.run_is_live(ctx, previous):
                granted, holder, reason = False, previous, "held"
            else:
                claimed = {"task": task, "holder": me, "previous": previous}
                if not await self._append(ctx, "TaskClaimed", claimed, version):
                    continue
                granted, holder = True, me
                reason = "claimed" if previous is None else "taken over from a run not running"
            break
        await lowlevel.record(
            ctx,
            "ClaimGranted" if granted else "ClaimRefused",
            {
                "op": op,
                "name": f"claim:{self.name}:{task}",
                "board": self.name,
                "task": task,
                "holder": holder,
                "previous": previous,
                "reason": reason,
            },
        )
        return Claim(self.name, task, granted, holder, reason)

    async def reaffirm(self, ctx: WorkflowContext, claim: Claim) -> None:
        """Make sure this run still holds `claim`, by an append nobody can race.

        Raises:
            ClaimLostError: another run took the claim over meanwhile.
        """
        me = ctx.run_id
        while True:
            tasks, version = await self._read(ctx)
            state = tasks.get(claim.task)
            if state is None or state.holder != me:
                holder = "nobody" if state is None or state.holder is None else state.holder
                raise ClaimLostError(board=self.name, task=claim.task, holder=holder, claimant=me)
            if state.done:
                return
            reaffirmed = {"task": claim.task, "holder": me}
            if await self._append(ctx, "ClaimReaffirmed", reaffirmed, version):
                return

    async def complete(self, ctx: WorkflowContext, claim: Claim, result: Any = None) -> bool:
        """Record `claim`'s task as done by this run, with `result`; False if it was lost."""
        name = f"complete:{self.name}:{claim.task}"
        op, recorded = lowlevel.claim(ctx, "claim", name)
        if recorded is not None:
            return recorded.events[0].type == "ClaimCompleted"
        me = ctx.run_id
        while True:
            tasks, version = await self._read(ctx)
            state = tasks.get(claim.task)
            if state is not None and state.done and state.holder == me:
                done = True  # recorded before a crash that the journal did not see
            elif state is None or state.holder != me or state.done:
                done = False
            else:
                finished = {"task": claim.task, "holder": me, "result": result}
                if not await self._append(ctx, "TaskDone", finished, version):
                    continue
                done = True
            holder = None if state is None else state.holder
            break
        await lowlevel.record(
            ctx,
            "ClaimCompleted" if done else "ClaimLost",
            {"op": op, "name": name, "board": self.name, "task": claim.task, "holder": holder},
        )
        return done

    async def release(self, ctx: WorkflowContext, claim: Claim) -> None:
        """Give `claim`'s task back undone, so another run can claim it at once."""
        name = f"release:{self.name}:{claim.task}"
        op, recorded = lowlevel.claim(ctx, "claim", name)
        if recorded is not None:
            return
        while True:
            tasks, version = await self._read(ctx)
            state = tasks.get(claim.task)
            if state is None or state.holder != ctx.run_id or state.done:
                break
            released = {"task": claim.task, "holder": ctx.run_id}
            if await self._append(ctx, "TaskReleased", released, version):
                break
        await lowlevel.record(
            ctx, "ClaimReleased", {"op": op, "name": name, "board": self.name, "task": claim.task}
        )

    async def run(
        self, ctx: WorkflowContext, task: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> ClaimResult:
        """Claim `task`; if granted, run `fn(*args, **kwargs)` as a step and record it done.

        If `fn` fails, the claim is released (so another run may try) and the error
        re-raised. Inside `fn`, `ctx.idempotency_key` is the step's key.
        """
        claim = await self.claim(ctx, task)
        if not claim.granted:
            return ClaimResult(task, "refused", None, claim.holder)

        async def work() -> Any:
            if claim.replayed:
                # Resumed: the claim may have been taken over while this run was down.
                await self.reaffirm(ctx, claim)
            if inspect.iscoroutinefunction(fn):
                return await fn(*args, **kwargs)
            return await run_sync(fn, *args, **kwargs)

        try:
            value = await ctx.step(f"{self.name}:{task}", work)
        except ClaimLostError as exc:
            return ClaimResult(task, "lost", None, exc.holder)
        except Exception:
            await self.release(ctx, claim)
            raise
        if await self.complete(ctx, claim, value):
            return ClaimResult(task, "done", value, ctx.run_id)
        return ClaimResult(task, "lost", None, None)
