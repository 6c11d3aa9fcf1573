"""One run's execution state, and the closed set of ways a workflow call can end.

A runner executes one run. What changes while it does (whether it is being cancelled
or was stopped, its lease and so its epoch, the cancel still to deliver, its children)
lives in one `RunState` that only the runner changes; the context and the lowlevel
API read it. The journal, the runner's pen, keeps only what concerns writing: whether
the store refused it (fenced), an outage outlasted the lease, or the runner closed it.
How the workflow call ended is one of five `Ending` types, which the runner turns into
the journaled outcome (or, for `Stopped`, into no write).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import NonDeterminismError

if TYPE_CHECKING:
    from ..journal import Lease
    from ._runner import Runner


class Phase(enum.Enum):
    """Where a run's execution stands; it only ever leaves `RUNNING`, never returns."""

    #: Executing normally.
    RUNNING = "running"
    #: A cancel was requested (inbox, parent, deadline): cleanup runs, then
    #: `RunCancelled` is journaled and the children are cancelled too.
    CANCELLING = "cancelling"
    #: Fenced out or the lease lost: not an outcome; nothing more is written.
    STOPPED = "stopped"
    #: Cancelled from outside the run (Ctrl-C, a worker shutting down): nothing more is
    #: written, and the run stays resumable where it was.
    DETACHED = "detached"


@dataclass
class RunState:
    """A run's execution state while a runner holds it; changed by that runner only."""

    lease: Lease
    phase: Phase = Phase.RUNNING
    #: Why the phase left RUNNING (the cancel reason, or what stopped the runner).
    reason: str | None = None
    #: The error a STOPPED runner raises (`FencedError`, `LeaseLostError`).
    error: BaseException | None = None
    #: A cancel requested before the workflow could see it (while no runner ran the
    #: run, or past its deadline at start): raised by the first operation the journal
    #: cannot answer, or once replay is over.
    pending_cancel: str | None = None
    #: Child runs executing in this process now, by run id (for cancels and silence).
    children: dict[str, Runner] = field(default_factory=dict)
    #: Child runs started or resumed by this run and not finished, by run id.
    open_children: set[str] = field(default_factory=set)
    #: Cancels for children that are not executing here yet, by run id.
    child_cancels: dict[str, str] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """The lease epoch this runner writes under: its fencing token."""
        return self.lease.epoch

    @property
    def cancelling(self) -> str | None:
        """The reason a requested cancel is under way, if one is."""
        return self.reason if self.phase is Phase.CANCELLING else None


# -- how a workflow call ended ------------------------------------------------------------


@dataclass(frozen=True)
class Completed:
    """The workflow returned `result`."""

    result: Any


@dataclass(frozen=True)
class Failed:
    """The workflow raised `error`."""

    error: Exception


@dataclass(frozen=True)
class Cancelled:
    """A requested cancel ended the workflow; its cleanup ran."""

    reason: str


@dataclass(frozen=True)
class Diverged:
    """Replay found code that no longer matches the journal."""

    error: NonDeterminismError


@dataclass(frozen=True)
class Stopped:
    """The runner was fenced out or lost its lease: it raises `error`, writing nothing."""

    error: BaseException


Ending = Completed | Failed | Cancelled | Diverged | Stopped
