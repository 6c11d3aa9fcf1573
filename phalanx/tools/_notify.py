"""Escalation: telling people when a call is dead-lettered, a breaker opens or a vote splits.

A notifier is anything with `async def notify(escalation)`. Two are built in: the log
(always on by default) and an HTTP webhook (a JSON POST, retried with back-off). A
notifier's own failure never loses what it reports: the dead-letter entry or the
breaker's state change is in the store before anyone is notified, and a notifier
that raises is logged and skipped.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .._clock import Clock, SystemClock
from .._errors import EscalationError
from .._executor import run_sync

logger = logging.getLogger("phalanx")

#: The environment variable naming a webhook every tool notifies by default.
WEBHOOK_ENV = "PHALANX_ESCALATION_WEBHOOK"

#: `vote_escalated`: a vote found no answer to accept and waits for a person
#: (`phalanx.patterns.vote`; `tool` is then `vote:NAME`, the signal that answers it).
EscalationKind = Literal["dead_lettered", "breaker_opened", "vote_escalated"]


@dataclass(frozen=True)
class Escalation:
    """Something a person should know about: a dead-lettered call or an open breaker.

    `data` is the dead-letter entry (arguments already redacted) or the breaker's
    `BreakerOpened` event data.
    """

    kind: EscalationKind
    tool: str
    summary: str
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)
    dead_letter_id: str | None = None
    run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {
            "kind": self.kind,
            "tool": self.tool,
            "summary": self.summary,
            "at": self.at,
            "dead_letter_id": self.dead_letter_id,
            "run_id": self.run_id,
            "data": dict(self.data),
        }


@runtime_checkable
class Notifier(Protocol):
    """Receives escalations. May raise: the caller logs it and carries on."""

    async def notify(self, escalation: Escalation) -> None:
        """Deliver one escalation."""
        ...


class LogNotifier:
    """Logs escalations as warnings on the `phalanx` logger."""

    def __init__(self, logger_name: str = "phalanx") -> None:
        self._logger = logging.getLogger(logger_name)

    def __repr__(self) -> str:
        return "LogNotifier()"

    async def notify(self, escalation: Escalation) -> None:
        """Log one line saying what happened and what to do."""
        self._logger.warning("escalation (%s): %s", escalation.kind, escalation.summary)


class WebhookNotifier:
    """POSTs each escalation as JSON to `url`, retrying failures with back-off.

    Example::

        @phalanx.tool(notifiers=[LogNotifier(), WebhookNotifier("https://ops.example/hook")])
        async def charge(order: str) -> str: ...

    Any 2xx answer is success; connection errors, timeouts and other statuses are
    retried up to `attempts` times, `backoff * 2**n` seconds apart (on `clock`).
    """

    def __init__(
        self,
        url: str,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.url = url
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url!r})"

    def _post(self, body: bytes) -> int:
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **self.headers},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return int(response.status)

    async def notify(self, escalation: Escalation) -> None:
        """POST the escalation.

        Raises:
            EscalationError: no attempt got a 2xx answer.
        """
        body = json.dumps(escalation.to_json(), ensure_ascii=False, default=str).encode()
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                # urllib blocks: a worker thread keeps the event loop (and the run) going.
                status = await run_sync(self._post, body)
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                exc.close()
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                if 200 <= status < 300:
                    return
                last = f"HTTP {status}"
            if attempt < self.attempts:
                await self.clock.sleep(self.backoff * 2 ** (attempt - 1))
        raise EscalationError(notifier=repr(self), attempts=self.attempts, reason=last)


def default_notifiers() -> tuple[Notifier, ...]:
    """The log, plus a webhook if `PHALANX_ESCALATION_WEBHOOK` names one."""
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if url:
        return (LogNotifier(), WebhookNotifier(url))
    return (LogNotifier(),)


@dataclass(frozen=True)
class Delivery:
    """How one notifier fared with one escalation."""

    notifier: str
    ok: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form, journaled with the dead-letter entry."""
        return {"notifier": self.notifier, "ok": self.ok, "error": self.error}


async def escalate(notifiers: Sequence[Notifier] | None, escalation: Escalation) -> list[Delivery]:
    """Tell every notifier (the defaults if None); never raises for their failures."""
    chosen = default_notifiers() if notifiers is None else tuple(notifiers)
    deliveries = []
    for notifier in chosen:
        try:
            await notifier.notify(escalation)
        except Exception as exc:  # a notifier's failure must never lose the escalation
            logger.error(
                "could not notify %r of %s for tool %s: %s",
                notifier,
                escalation.kind,
                escalation.tool,
                exc,
            )
            deliveries.append(Delivery(repr(notifier), False, f"{type(exc).__name__}: {exc}"))
        else:
            deliveries.append(Delivery(repr(notifier), True))
    return deliveries
