"""Message hooks: where a durable layer plugs in to journal what actors send and see.

Durable actors (DESIGN.md, "Agents are actors") record the messages an agent sent
and received so a crashed agent can be rebuilt by replaying its stream. The runtime
does not journal anything itself; it calls these hooks at the three points that
matter, awaiting each one, so a journal append finishes before the runtime goes on:

- `sent`: before a message is put into the target's mailbox (tell and ask);
- `received`: after the actor took the message, before `receive` runs;
- `processed`: after `receive` returned (`error` None) or raised.

A message interrupted by a stop or restart gets `received` but no `processed`: it
was not processed, and a replaying layer should deliver it again (same message id;
the receiver's deduplication makes that safe). Hooks cost nothing when not set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._envelope import Envelope
    from ._ref import ActorRef


class MessageHooks(Protocol):
    """Callbacks around every message; pass one to `open_actor_system(hooks=...)`."""

    async def sent(self, target: ActorRef, envelope: Envelope) -> None:
        """A message is about to enter `target`'s mailbox."""
        ...

    async def received(self, target: ActorRef, envelope: Envelope) -> None:
        """`target` took the message and is about to process it."""
        ...

    async def processed(
        self, target: ActorRef, envelope: Envelope, error: BaseException | None
    ) -> None:
        """`target` finished processing the message (`error` if `receive` raised)."""
        ...
