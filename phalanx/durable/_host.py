"""The narrow interfaces between a runner and what it runs on.

A runner does not see the `Runtime`: it sees a `RunHost` (the store, the seams, the
runtime's settings, and the one way to start a child run), and hands patterns a
`RunControl` (reading, listing and cancelling other runs). The runtime implements both
with a private adapter, so child runs never go through the public `Runtime.run`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._clock import Clock
    from .._entropy import Entropy
    from ..journal import EventStore
    from ._history import RunHistory, RunStatus, RunSummary
    from ._runner import Runner, RunOutcome


class RunControl(Protocol):
    """What a pattern may do to runs other than its own (see `lowlevel.runs`).

    Nothing done through it is journaled in the calling run: a pattern that uses it
    (the hierarchy cancelling or adopting a dead node's children) journals its own
    decisions and keeps each action idempotent.
    """

    async def history(self, run_id: str) -> RunHistory:
        """The run's folded journal (raises `UnknownRunError` for no such run)."""
        ...

    async def runs(self, *, status: RunStatus | None = None) -> list[RunSummary]:
        """Every run with its status, oldest first."""
        ...

    async def cancel(self, run_id: str, *, reason: str = "cancel requested") -> bool:
        """Ask a run to cancel; False if it had already ended."""
        ...


class RunHost(RunControl, Protocol):
    """What a runner needs from whatever executes it."""

    store: EventStore
    clock: Clock
    entropy: Entropy
    lease_ttl: float
    inbox_poll: float
    crash_limit: int
    start_hold: float
    #: The runners executing on this host now, by run id (a worker watches them).
    executing: dict[str, Runner]

    async def run_child(
        self,
        child_id: str,
        workflow: Callable[..., Awaitable[Any]],
        inputs: dict[str, Any],
        *,
        parent: Runner,
        force: bool,
        deadline_at: float | None,
    ) -> RunOutcome:
        """Start child run `child_id` of `parent`, or resume it if it was started before."""
        ...

    async def end_cancelled(self, run_id: str, *, reason: str, force: bool) -> None:
        """Cancel run `run_id` and resume it here, so it journals `RunCancelled` itself."""
        ...
