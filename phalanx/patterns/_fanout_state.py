"""A fan-out's state machine, without I/O: its values, its replay and its decisions.

`gather` (in `_gather.py`) is split in two. This module is the pure half: the policy,
what a branch ended with, and `FanOutState`, which folds the fan-out's journaled events
(`replay`) and says whether the fan-out can stop (`decide`). The live run and a replay
go through the same fold, so a resumed fan-out reaches the state the crashed one had.
The effectful half, `_fanout_drive.py`, runs the branches and journals what this module
hands it; nothing here reads a clock, touches the store or awaits anything.

A fan-out's events (in its run's stream, each with `op`, `name`):

- `GatherStarted`: `policy`, `branches` (branch name to child run id), `deadline_at`,
  `started_at`;
- `BranchStalled`: `branch`, `silent_for`;
- `BranchLate`: `branch`, `value` (an answer that came after the deadline, not used);
- `BranchFinished`: `branch` and the fields of `BranchOutcome.to_json()`;
- `GatherCompleted`: `satisfied`, `partial`, `elapsed_s`, `statuses`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

BranchStatus = Literal["succeeded", "failed", "timed_out", "cancelled"]
PolicyKind = Literal["all", "any", "quorum", "best_effort"]
#: How a branch runs: as a child run of its own, or as a step of the fan-out's run.
BranchMode = Literal["run", "step"]


class Verdict(enum.Enum):
    """Where a fan-out stands under its policy (`Policy.verdict`)."""

    #: The policy is neither met nor out of reach: keep waiting (until the deadline).
    OPEN = "open"
    #: The policy is met: stop, cancelling the branches still running.
    MET = "met"
    #: The policy can no longer be met: stop, cancelling the branches still running.
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Policy:
    """When a fan-out is complete.

    - `all`: every branch must succeed; the first branch that does not makes it
      unreachable, and the branches still running are cancelled then.
    - `any`: the first success completes it; the rest are cancelled.
    - `quorum(k)`: k successes complete it; the rest are cancelled; it fails early
      once k successes are impossible.
    - `best_effort`: take whatever succeeded by the deadline; satisfied by one success.

    Every policy also ends at the fan-out's deadline: branches still running then are
    `timed_out`.
    """

    kind: PolicyKind
    k: int | None = None

    @classmethod
    def all(cls) -> Policy:
        """Every branch must succeed."""
        return cls("all")

    @classmethod
    def any(cls) -> Policy:
        """One success is enough."""
        return cls("any")

    @classmethod
    def quorum(cls, k: int) -> Policy:
        """`k` successes are enough."""
        if k < 1:
            raise ValueError("a quorum needs k >= 1")
        return cls("quorum", k)

    @classmethod
    def best_effort(cls) -> Policy:
        """Whatever succeeded before the deadline."""
        return cls("best_effort")

    def needed(self, total: int) -> int:
        """Successes that satisfy the policy out of `total` branches."""
        if self.kind == "all":
            return total
        if self.kind == "quorum":
            return min(self.k or total, total)
        return 1

    def describe(self, total: int) -> str:
        """A short human form, e.g. `quorum(2 of 3)`."""
        if self.kind == "quorum":
            return f"quorum({self.needed(total)} of {total})"
        return self.kind

    def verdict(self, succeeded: int, finished: int, total: int) -> Verdict:
        """Whether `succeeded` successes out of `finished` ended branches settle it.

        `best_effort` waits for every branch (or its deadline) whatever happened so
        far; every other policy stops as soon as the branches still running can no
        longer change whether it is met.
        """
        needed = self.needed(total)
        if self.kind == "best_effort" and finished < total:
            return Verdict.OPEN
        if succeeded >= needed:
            return Verdict.MET
        if succeeded + (total - finished) < needed or finished == total:
            return Verdict.UNREACHABLE
        return Verdict.OPEN

    def done(self, succeeded: int, finished: int, total: int) -> bool:
        """Whether the fan-out can stop now (its verdict is no longer open)."""
        return self.verdict(succeeded, finished, total) is not Verdict.OPEN


@dataclass(frozen=True)
class Branch:
    """One branch of a fan-out: a workflow to run as a child run, with its inputs.

    `Branch.step(fn, **inputs)` makes a step branch instead (see `gather`'s module).
    """

    workflow: Callable[..., Awaitable[Any]]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    mode: BranchMode = "run"

    @classmethod
    def step(cls, fn: Callable[..., Awaitable[Any]], /, **inputs: Any) -> Branch:
        """A branch that awaits `fn(**inputs)` inside the parent run, journaled like a step."""
        return cls(fn, inputs, "step")


@dataclass(frozen=True, kw_only=True)
class BranchOutcome:
    """How one branch ended."""

    name: str
    status: BranchStatus
    value: Any = None
    error: str | None = None
    duration_s: float = 0.0
    run_id: str | None = None
    stalled: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form (the demo's `branches` entries)."""
        return {
            "status": self.status,
            "value": self.value,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "run_id": self.run_id,
            "stalled": self.stalled,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BranchOutcome:
        """The outcome a `BranchFinished` event's data holds."""
        return cls(
            name=data["branch"],
            status=data["status"],
            value=data.get("value"),
            error=data.get("error"),
            duration_s=float(data.get("duration_s", 0.0)),
            run_id=data.get("run_id"),
            stalled=bool(data.get("stalled", False)),
        )


class Recorded(Protocol):
    """What replay reads of a journaled event (`phalanx.Event` is one)."""

    @property
    def type(self) -> str:
        """The event's type."""
        ...

    @property
    def data(self) -> dict[str, Any]:
        """The event's data."""
        ...

    @property
    def recorded_at(self) -> float:
        """When it was recorded (Unix seconds)."""
        ...


#: An event for the drive loop to journal: (type, data).
Pending = tuple[str, dict[str, Any]]

#: Says, from the outcomes journaled so far (branch name to outcome), that a fan-out
#: may stop before its policy would: a vote whose quorum already agrees, say. It must
#: be pure: a replay asks it again about the same outcomes.
StopWhen = Callable[[Mapping[str, "BranchOutcome"]], bool]


@dataclass(kw_only=True)
class FanOutState:
    """One fan-out's state, folded from its events; only `apply_finished` and `stall` change it.

    Build it with `start` (a new fan-out) or `replay` (one the journal holds); ask it
    `decide()`; turn a branch's raw ending into its journaled events with `conclude`.
    """

    op: int
    name: str
    policy: Policy
    #: Branch names, in declaration order.
    branches: tuple[str, ...]
    #: Branch name to the id of its child run.
    run_ids: dict[str, str]
    #: Wall time of the first start (kept across a resume).
    started_at: float
    deadline_at: float | None
    finished: dict[str, BranchOutcome] = field(default_factory=dict)
    #: Branches reported stalled (journaled once each, also across a resume).
    stalled: set[str] = field(default_factory=set)
    #: `satisfied` as `GatherCompleted` recorded it; None while the fan-out is open.
    completed: bool | None = None
    #: Successes among `finished`, counted as they arrive: `decide` is then O(1).
    successes: int = 0
    #: The caller's early stop (see `StopWhen`), asked while the policy is open.
    stop_when: StopWhen | None = None

    @classmethod
    def start(
        cls,
        *,
        op: int,
        name: str,
        policy: Policy,
        branches: Iterable[str],
        run_id: str,
        now: float,
        deadline: float | None,
        run_deadline_at: float | None,
    ) -> FanOutState:
        """A new fan-out started at `now`; its deadline is the earlier of the two."""
        names = tuple(branches)
        deadline_at = None if deadline is None else now + deadline
        if run_deadline_at is not None and (deadline_at is None or run_deadline_at < deadline_at):
            deadline_at = run_deadline_at
        return cls(
            op=op,
            name=name,
            policy=policy,
            branches=names,
            run_ids={b: f"{run_id}.{op}.{b}" for b in names},
            started_at=now,
            deadline_at=deadline_at,
        )

    def started_event(self) -> dict[str, Any]:
        """The data of this fan-out's `GatherStarted`."""
        return {
            "op": self.op,
            "name": self.name,
            "policy": self.describe(),
            "branches": self.run_ids,
            "deadline_at": self.deadline_at,
            "started_at": self.started_at,
        }

    @classmethod
    def replay(
        cls, *, op: int, name: str, policy: Policy, branches: Iterable[str], events: list[Recorded]
    ) -> FanOutState:
        """The state the journaled `events` (the first one `GatherStarted`) leave.

        `branches` are the code's; `run_ids` the journal's: the caller checks that
        they name the same branches before going on.
        """
        started = events[0].data
        state = cls(
            op=op,
            name=name,
            policy=policy,
            branches=tuple(branches),
            run_ids=dict(started["branches"]),
            # Journals written before `started_at` existed: the event's own time.
            started_at=float(started.get("started_at", events[0].recorded_at)),
            deadline_at=started.get("deadline_at"),
        )
        for event in events[1:]:
            if event.type == "BranchStalled":
                state.stalled.add(event.data["branch"])
            elif event.type == "BranchFinished":
                state.apply_finished(BranchOutcome.from_json(event.data))
            elif event.type == "GatherCompleted":
                state.completed = bool(event.data["satisfied"])
        return state

    # -- decisions ---------------------------------------------------------------------

    @property
    def total(self) -> int:
        """How many branches the fan-out has."""
        return len(self.branches)

    def describe(self) -> str:
        """The policy's human form for this many branches."""
        return self.policy.describe(self.total)

    def decide(self) -> Verdict:
        """Whether the outcomes journaled so far settle the fan-out under its policy.

        An open verdict is `MET` early when `stop_when` says the outcomes so far suffice.
        """
        verdict = self.policy.verdict(self.successes, len(self.finished), self.total)
        if verdict is Verdict.OPEN and self.stop_when is not None and self.stop_when(self.finished):
            return Verdict.MET
        return verdict

    @property
    def satisfied(self) -> bool:
        """Whether enough branches succeeded."""
        return self.successes >= self.policy.needed(self.total)

    def stop_reason(self, verdict: Verdict) -> str:
        """Why the branches still running are cancelled (their `error` says it)."""
        if verdict is Verdict.MET:
            return f"fan-out {self.name!r} complete ({self.policy.kind})"
        return f"fan-out {self.name!r} can no longer meet its policy ({self.describe()})"

    def running(self) -> list[str]:
        """Branches without a journaled outcome, in declaration order."""
        return [b for b in self.branches if b not in self.finished]

    def outcomes(self) -> dict[str, BranchOutcome]:
        """Every branch's outcome in declaration order (all must have ended)."""
        return {b: self.finished[b] for b in self.branches}

    # -- transitions -------------------------------------------------------------------

    def apply_finished(self, outcome: BranchOutcome) -> None:
        """Fold a journaled `BranchFinished` in."""
        self.finished[outcome.name] = outcome
        if outcome.status == "succeeded":
            self.successes += 1

    def stall(self, branch: str, silent_for: float) -> dict[str, Any]:
        """Mark `branch` stalled; returns the data of its `BranchStalled`."""
        self.stalled.add(branch)
        return {"op": self.op, "name": self.name, "branch": branch, "silent_for": silent_for}

    def conclude(self, raw: BranchOutcome, *, now: float) -> tuple[BranchOutcome, list[Pending]]:
        """The outcome to journal for a branch that ended at wall time `now` as `raw`.

        At or after the deadline it is `timed_out` whatever it says, and an answer is
        kept only as `BranchLate` (seen, not used). Returns the outcome, rounded as the
        journal keeps it so a replay rebuilds an equal one, and the events to journal.
        """
        events: list[Pending] = []
        status, value, error = raw.status, raw.value, raw.error
        duration_s = raw.duration_s
        if self.deadline_at is not None and now >= self.deadline_at:
            if status == "succeeded":
                late = {"op": self.op, "name": self.name, "branch": raw.name, "value": value}
                events.append(("BranchLate", late))
            status, value = "timed_out", None
            error = f"no answer within the deadline ({self.deadline_at - self.started_at:.1f}s)"
            # It ran until the deadline, not until we noticed: a fan-out resumed after
            # its deadline concludes late, but the branch was out of time at the deadline.
            duration_s = min(duration_s, self.deadline_at - self.started_at)
        outcome = BranchOutcome(
            name=raw.name,
            status=status,
            value=value,
            error=error,
            duration_s=round(duration_s, 3),
            run_id=raw.run_id,
            stalled=raw.name in self.stalled,
        )
        # `outcome.to_json()`'s fields, written out: this runs once per branch.
        finished = {
            "op": self.op,
            "name": self.name,
            "branch": raw.name,
            "status": status,
            "value": value,
            "error": error,
            "duration_s": outcome.duration_s,
            "run_id": outcome.run_id,
            "stalled": outcome.stalled,
        }
        events.append(("BranchFinished", finished))
        return outcome, events

    def completed_event(self, elapsed_s: float) -> dict[str, Any]:
        """The data of this fan-out's `GatherCompleted` (every branch has ended)."""
        statuses = {b: self.finished[b].status for b in self.branches}
        return {
            "op": self.op,
            "name": self.name,
            "satisfied": self.satisfied,
            "partial": any(s != "succeeded" for s in statuses.values()),
            "elapsed_s": elapsed_s,
            "statuses": statuses,
        }
