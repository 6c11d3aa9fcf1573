"""Folding a run's journal: what replay needs, what `show` and `runs` print.

A run's stream records operations (steps, timers, signals, child runs, recorded
values), each numbered by `op` in the order the workflow asked for them. Replay looks
operations up by that number, so concurrent steps that completed in any order still
replay exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..journal import Event

RunStatus = Literal["running", "waiting", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

# The first event of an operation says what kind of operation it is; replay matches
# that kind against the one the code claims. The core's own operations are known by
# their opening event's type. Any other operation (a pattern's, see `lowlevel.claim`)
# carries its kind in its opening event's data, so this layer lists no pattern.
_CORE_KIND = {
    "StepStarted": "step",
    "ValueRecorded": "value",
    "TimerStarted": "sleep",
    "SignalWaiting": "signal",
    "ChildStarted": "child",
    "DecisionRecorded": "decision",
}

#: The kind of an operation journaled before operations carried their kind (a pattern's
#: event written by an older phalanx): replay then matches it by name alone.
UNKNOWN_KIND = ""

#: Event types that change a run's status; `runs` reads only these (by type index).
STATUS_EVENTS: dict[str, RunStatus] = {
    "RunStarted": "running",
    "SignalWaiting": "waiting",
    "SignalReceived": "running",
    "SignalTimedOut": "running",
    "RunCompleted": "completed",
    "RunFailed": "failed",
    "RunCancelled": "cancelled",
}


def occurred_at(event: Event) -> float:
    """When what `event` records happened (Unix seconds).

    That is when it was recorded, except for an event held back to share a later
    commit (a quick step's `StepStarted` rides in its `StepCompleted`'s transaction):
    such an event carries the time it happened in `data["started_at"]`.
    """
    at = event.data.get("started_at")
    return float(at) if isinstance(at, int | float) else event.recorded_at


def run_stream(run_id: str) -> str:
    """The stream holding a run's journal (leased by its runner)."""
    return f"run:{run_id}"


def inbox_stream(run_id: str) -> str:
    """The unleased stream where others send a run signals and cancel requests."""
    return f"run:{run_id}:inbox"


def run_id_of(stream_id: str) -> str | None:
    """The run id of a run stream, None for any other stream."""
    if stream_id.startswith("run:") and not stream_id.endswith(":inbox"):
        return stream_id[4:]
    return None


@dataclass(slots=True)
class Operation:
    """Everything the journal holds about one operation of a run."""

    op: int
    kind: str
    name: str
    events: list[Event] = field(default_factory=list)

    def last(self, *types: str) -> Event | None:
        """The latest event of one of `types`, if any."""
        for event in reversed(self.events):
            if event.type in types:
                return event
        return None

    def describe(self) -> str:
        """Say what this is, for error messages: `step 'fetch'`."""
        return f"{self.kind or self.events[0].type} {self.name!r}"

    def holds(self, kind: str, name: str) -> bool:
        """Whether this is the operation the code asks for: a `kind` called `name`."""
        return self.name == name and self.kind in (kind, UNKNOWN_KIND)


@dataclass
class RunHistory:
    """A run's journal, folded."""

    run_id: str
    workflow: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None
    deadline_at: float | None = None
    #: The work queue the run was submitted to (None: started in a process, not queued).
    queue: str | None = None
    priority: int = 0
    status: RunStatus = "running"
    result: Any = None
    error: dict[str, Any] | None = None
    operations: dict[int, Operation] = field(default_factory=dict)
    started_at: float | None = None
    ended_at: float | None = None
    version: int = 0
    events: list[Event] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        """Whether the run was ever started."""
        return self.started_at is not None

    @property
    def terminal(self) -> bool:
        """Whether the run has ended (completed, failed or cancelled)."""
        return self.status in TERMINAL

    def apply(self, event: Event) -> None:
        """Fold one more event of the run's stream."""
        self.events.append(event)
        self.version = event.seq
        data = event.data
        status = STATUS_EVENTS.get(event.type)
        if status is not None and not self.terminal:
            self.status = status
        if event.type == "RunStarted":
            self.workflow = data.get("workflow", "")
            self.inputs = data.get("inputs", {})
            self.parent_run_id = data.get("parent_run_id")
            self.deadline_at = data.get("deadline_at")
            self.queue = data.get("queue")
            self.priority = int(data.get("priority") or 0)
            self.started_at = event.recorded_at
        elif event.type == "RunCompleted":
            self.result = data.get("result")
            self.ended_at = event.recorded_at
        elif event.type in ("RunFailed", "RunCancelled"):
            self.error = data.get("error")
            self.ended_at = event.recorded_at
        op = data.get("op")
        if isinstance(op, int):
            operation = self.operations.get(op)
            if operation is None:
                kind = _CORE_KIND.get(event.type) or data.get("op_kind") or UNKNOWN_KIND
                operation = self.operations[op] = Operation(
                    op, str(kind), str(data.get("name", ""))
                )
            operation.events.append(event)

    @classmethod
    def fold(cls, run_id: str, events: Iterable[Event]) -> RunHistory:
        """Fold a whole stream."""
        history = cls(run_id)
        for event in events:
            history.apply(event)
        return history


@dataclass(frozen=True)
class RunSummary:
    """One line of `phalanx runs`."""

    run_id: str
    status: RunStatus
    workflow: str
    parent_run_id: str | None
    started_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        """The `phalanx runs --json` form."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "workflow": self.workflow,
            "parent_run_id": self.parent_run_id,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
        }


def summarize(events: Iterable[Event]) -> list[RunSummary]:
    """Fold status-changing events of many runs into one summary per run."""
    runs: dict[str, dict[str, Any]] = {}
    for event in events:
        run_id = run_id_of(event.stream_id)
        if run_id is None:
            continue
        if event.type == "RunStarted":
            runs[run_id] = {
                "run_id": run_id,
                "status": "running",
                "workflow": event.data.get("workflow", ""),
                "parent_run_id": event.data.get("parent_run_id"),
                "started_at": event.recorded_at,
                "updated_at": event.recorded_at,
            }
            continue
        row = runs.get(run_id)
        if row is None or row["status"] in TERMINAL:
            continue
        row["status"] = STATUS_EVENTS[event.type]
        row["updated_at"] = event.recorded_at
    return [RunSummary(**row) for row in runs.values()]
