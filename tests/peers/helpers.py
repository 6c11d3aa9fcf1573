"""Reading what a conversation left in the store, and crashing runtimes in-process."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import pytest

import phalanx
from phalanx.journal import NewEvent, store_from_url
from phalanx.testing import FaultyStore
from tests.peers.conftest import INBOX_POLL, LEASE_TTL
from tests.peers.workflows import Crash

TERMINAL = ("completed", "failed", "cancelled")


def crash() -> None:
    """What the faulty stores of these tests do instead of SIGKILL: raise `Crash`."""
    raise Crash("simulated crash")


class FaultyInboxStore(FaultyStore):
    """A `FaultyStore` that counts the messages posted to inboxes instead of run appends."""

    def _counts(self, stream_id: str, events: Sequence[NewEvent]) -> bool:
        return stream_id.endswith(":inbox") and any(e.type == "MessageSent" for e in events)


@contextlib.asynccontextmanager
async def faulty_runtime(
    url: str, store_type: type[FaultyStore] = FaultyStore, **faults: Any
) -> AsyncIterator[phalanx.Runtime]:
    """A runtime whose store raises `Crash` at the chosen append."""
    store = store_type(store_from_url(url), crash=crash, **faults)
    await store.open()
    try:
        yield phalanx.Runtime(store, lease_ttl=LEASE_TTL, inbox_poll=INBOX_POLL)
    finally:
        await store.close()


def _holds(error: BaseException, cls: type[BaseException]) -> bool:
    if isinstance(error, cls):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_holds(inner, cls) for inner in error.exceptions)
    return False


async def crashes(awaitable: Awaitable[Any]) -> None:
    """Await a run that must die of a simulated `Crash` (bare or in an exception group)."""
    with pytest.raises(BaseException) as info:
        await awaitable
    assert _holds(info.value, Crash), f"expected a Crash, got {info.value!r}"


async def stream(runtime: phalanx.Runtime, stream_id: str) -> list[phalanx.Event]:
    """Every event of one stream."""
    return await runtime.store.read_stream(stream_id)


async def journal(runtime: phalanx.Runtime, run_id: str) -> list[phalanx.Event]:
    """Every event of a run's own stream."""
    return await stream(runtime, f"run:{run_id}")


def received_ids(events: Sequence[phalanx.Event]) -> list[str]:
    """Ids of the peer messages (not stops) a run journaled as received, in order."""
    return [
        e.data["message"]["message_id"]
        for e in events
        if e.type == "MessageReceived" and e.data["message"]["kind"] == "message"
    ]


async def statuses(runtime: phalanx.Runtime) -> dict[str, str]:
    """Every run's status, by run id."""
    return {r.run_id: r.status for r in await runtime.runs()}


async def assert_all_terminal(runtime: phalanx.Runtime) -> None:
    """No run (coordinator or peer) is left running or waiting."""
    left = {r: s for r, s in (await statuses(runtime)).items() if s not in TERMINAL}
    assert left == {}, f"runs left unfinished: {left}"


def assert_handled_once(handled: Sequence[tuple[str, str, str]]) -> None:
    """Each message reached each agent's logic once: one handler execution per message."""
    counts = Counter((agent, message_id) for agent, message_id, _ in handled)
    assert all(n == 1 for n in counts.values()), f"handled more than once: {counts}"
