"""Hard limits on what one agent may send another, checked at the sender.

A verbose agent must not be able to flood the next one's context: a message over its
limit (in bytes of JSON, or in estimated tokens) is refused before it leaves, with
`MessageTooLargeError`, and never cut to fit (a truncated message is a silently wrong
one). The sender decides what to do instead: summarise and send again, split, or
fail. `check_payload` journals each refusal as `PayloadRejected` (data: `sender`,
`recipient`, `unit`, `size`, `limit`) in the sender's run, once, so a replay raises
the same refusal without measuring again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError, MessageTooLargeError
from ..durable import lowlevel
from ._tokens import estimate_json

if TYPE_CHECKING:
    from ..durable import WorkflowContext


@dataclass(frozen=True, kw_only=True)
class PayloadLimit:
    """The largest message allowed: `max_bytes` of JSON and/or `max_tokens` (estimated).

    Raises:
        ConfigError: a limit of 0 or less, or neither limit given.
    """

    max_bytes: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_bytes is None and self.max_tokens is None:
            raise ConfigError(setting="PayloadLimit", reason="give max_bytes, max_tokens or both")
        for name in ("max_bytes", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(
                    setting=f"PayloadLimit.{name}", value=value, reason="must be more than 0"
                )

    def refusal(self, payload: Any, *, sender: str, recipient: str) -> MessageTooLargeError | None:
        """The error `payload` earns, or None when it fits."""
        size, tokens = estimate_json(payload)
        if self.max_bytes is not None and size > self.max_bytes:
            return MessageTooLargeError(
                sender=sender, recipient=recipient, unit="bytes", size=size, limit=self.max_bytes
            )
        if self.max_tokens is not None and tokens > self.max_tokens:
            return MessageTooLargeError(
                sender=sender,
                recipient=recipient,
                unit="tokens",
                size=tokens,
                limit=self.max_tokens,
            )
        return None


async def check_payload(
    ctx: WorkflowContext, limit: PayloadLimit, payload: Any, *, sender: str, recipient: str
) -> None:
    """Refuse `payload` at the sender if it is over `limit`; journal the refusal once.

    Raises:
        MessageTooLargeError: it is over the limit (nothing was sent).
    """
    error = limit.refusal(payload, sender=sender, recipient=recipient)
    if error is None:
        return
    name = f"{sender}->{recipient}"
    op, recorded = lowlevel.claim(ctx, "payload", name)
    if recorded is None:
        await lowlevel.record(
            ctx,
            "PayloadRejected",
            {
                "op": op,
                "name": name,
                "sender": sender,
                "recipient": recipient,
                "unit": error.unit,
                "size": error.size,
                "limit": error.limit,
            },
        )
    raise error
