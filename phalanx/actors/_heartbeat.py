"""Heartbeats: noticing a busy actor that has gone silent, before its deadline does.

A sub-agent that hangs (a model call that never returns, a tool stuck on a socket)
looks exactly like one that is working, until the deadline fires and the whole
fan-out has already waited for nothing. So a long-running actor reports progress with
`self.heartbeat(progress=...)`, and a watchdog raises the alarm when a busy actor has
been silent for longer than its heartbeat timeout: a `stalled` event, then the
declared policy (just report, restart the actor, or stop it).

Only a *busy* actor can stall: an idle actor waiting for mail is silent by design.
Starting a message counts as a heartbeat. The watchdog costs one timer per actor at
most (re-armed from the last beat when it fires, never per message), and nothing for
actors without a `HeartbeatPolicy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .._errors import ActorConfigError
from ._timers import TimerHandle, Timers

OnStall = Literal["report", "restart", "stop"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatPolicy:
    """How long a busy actor may go without a heartbeat, and what happens then.

    Args:
        timeout: Seconds (on the system's clock) of silence while busy that make
            the actor `stalled`; keep it well below the deadline, so the stall is
            seen while there is still time to act on it.
        on_stall: `report` (a `stalled` event only; the actor carries on), `restart`
            (the actor fails with `ActorStalledError` and its supervisor applies its
            strategy), or `stop` (the actor is stopped for good).

    Raises:
        ActorConfigError: A timeout that is not positive, or an unknown policy.
    """

    timeout: float
    on_stall: OnStall = "report"

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ActorConfigError(
                setting="HeartbeatPolicy.timeout",
                value=self.timeout,
                reason="a heartbeat timeout must be a positive number of seconds",
            )
        if self.on_stall not in ("report", "restart", "stop"):
            raise ActorConfigError(
                setting="HeartbeatPolicy.on_stall",
                value=self.on_stall,
                reason="use 'report', 'restart' or 'stop'",
            )


class Watchdog:
    """Watches one actor's heartbeats while it is busy; calls back on stall and recovery."""

    __slots__ = (
        "_handle",
        "_on_recover",
        "_on_stall",
        "_timers",
        "beat_at",
        "busy",
        "stalled",
        "timeout",
    )

    def __init__(
        self,
        timeout: float,
        timers: Timers,
        *,
        on_stall: Callable[[float], None],
        on_recover: Callable[[], None],
    ) -> None:
        self.timeout = timeout
        self._timers = timers
        self._on_stall = on_stall
        self._on_recover = on_recover
        self._handle: TimerHandle | None = None
        self.beat_at = 0.0
        self.busy = False
        self.stalled = False

    def begin(self) -> None:
        """The actor took up work (a message, or `on_start`): that counts as a beat."""
        self.busy = True
        self.beat()

    def end(self) -> None:
        """The actor finished its work and is idle again (which ends a stall too)."""
        self.busy = False
        if self.stalled:
            self.stalled = False
            self._on_recover()

    def beat(self) -> None:
        """A sign of life: note the time, end a stall, make sure a check is pending."""
        now = self._timers.clock.monotonic()
        self.beat_at = now
        if self.stalled:
            self.stalled = False
            self._on_recover()
        if self._handle is None and self.busy:
            self._handle = self._timers.call_at(now + self.timeout, self._check)

    def _check(self) -> None:
        self._handle = None
        if not self.busy or self.stalled:
            return
        silent = self._timers.clock.monotonic() - self.beat_at
        if silent >= self.timeout:
            # Report once per stall; the next beat (or message) re-arms the check.
            self.stalled = True
            self._on_stall(silent)
        else:
            self._handle = self._timers.call_at(self.beat_at + self.timeout, self._check)

    def reset(self) -> None:
        """Forget the last incarnation (it ended): not busy, not stalled, no check."""
        self.close()
        self.stalled = False

    def close(self) -> None:
        """Stop watching (the incarnation or the actor ended)."""
        self.busy = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
